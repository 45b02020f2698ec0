// RestartTracker: decides, for one task instance, what happens when the task exits, following
// its group's RestartPolicy (docs/jobspec.md, "Restart policy").
//
// Each exit either completes the instance (a batch task that exited 0), restarts it after a
// delay, or fails it. The delay is an exponential back-off: `delay`, doubling after each
// consecutive restart, capped at `max_delay`. At most `attempts` restarts may happen within any
// sliding `interval`; once they are used up, mode `fail` fails the instance for good and mode
// `delay` waits until the oldest restart in the window drops out of it. A task that stayed up
// for at least `interval`, or that the caller reports stable (OnStable, e.g. healthy for the
// group's min_healthy_time), starts the back-off again from `delay`.
//
// Pure logic: it never reads a clock; callers pass `now` from the injected berth::Clock, so
// tests drive it with ManualClock.
// Thread-safety: none; one tracker per task instance, used by the one thread that supervises it.
#pragma once

#include <deque>
#include <string>

#include "common/clock.h"
#include "spec/job.h"

namespace berth::runtime {

struct RestartDecision {
  enum class Kind {
    kRestart,   // start the task again at `restart_at`
    kComplete,  // a batch task finished successfully; nothing more to do
    kFailed,    // no more restarts; the instance is failed
  };
  Kind kind = Kind::kRestart;
  Duration delay{0};       // kRestart only: restart_at - now
  TimePoint restart_at{};  // kRestart only
  // For people: "restarting in 4s (attempt 3 of 3 within 5m)", "failed: 3 restarts within 5m",
  // "completed".
  std::string message;
};

class RestartTracker {
 public:
  RestartTracker(spec::RestartPolicy policy, spec::JobType job_type);

  // The task (re)started at `now`; its uptime is measured from here. Optional: without it the
  // tracker assumes the task started when the last restart was due.
  void OnStarted(TimePoint now);
  // The task has proven itself (e.g. healthy long enough): the next restart waits only `delay`.
  // Does not forget restarts already counted in the interval window.
  void OnStable(TimePoint now);
  // The task exited with `exit_code` at `now`. After kFailed or kComplete every later call
  // returns the same decision again.
  RestartDecision OnExit(int exit_code, TimePoint now);

  // Restarts decided so far, over the tracker's whole life.
  int restart_count() const { return restart_count_; }
  // The message of the last decision; empty before the first exit.
  const std::string& message() const { return last_.message; }
  bool failed() const { return done_ && last_.kind == RestartDecision::Kind::kFailed; }
  bool completed() const { return done_ && last_.kind == RestartDecision::Kind::kComplete; }

 private:
  Duration BackOff() const;
  void DropExpired(TimePoint now);
  RestartDecision Restart(TimePoint now, Duration delay, std::string message);

  const spec::RestartPolicy policy_;
  const spec::JobType job_type_;
  // When each restart in the sliding window happens (its restart_at), oldest first.
  std::deque<TimePoint> window_;
  int consecutive_ = 0;  // restarts since the back-off was last reset
  int restart_count_ = 0;
  bool has_start_ = false;
  TimePoint started_at_{};
  bool done_ = false;  // failed or completed: final
  RestartDecision last_;
};

}  // namespace berth::runtime
