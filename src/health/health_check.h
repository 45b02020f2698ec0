// Health checks: the probes a job's `health` block asks for (http, tcp, command) and the
// HealthTracker that turns their outcomes into a healthy/unhealthy state.
//
// A Probe runs one check synchronously and reports a ProbeOutcome; it never throws and never
// waits longer than its timeout (plus the time to kill a command). The agent owns the schedule:
// it asks a HealthTracker when the next check is due (NextCheckAt), runs the probe, and feeds
// the outcome back (Record), which reports whether the state changed. The tracker reads time
// only through the injected Clock, so thresholds and intervals are tested without threads.
// HealthMonitor is the simplest driver: a thread that runs one probe per interval.
// Thread-safety: probes hold only immutable configuration, so Run() may be called from any
// thread, concurrently. A HealthTracker is not synchronized: one owner (one thread or one event
// loop) drives it. HealthMonitor's methods are safe from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "spec/job.h"

namespace berth::health {

// The result of one probe run. `message` is for people: the HTTP status line, the connect
// error, or the command's exit and (truncated) output.
struct ProbeOutcome {
  bool ok = false;
  std::string message;
  Duration duration{};
};

class Probe {
 public:
  virtual ~Probe() = default;
  virtual ProbeOutcome Run() const = 0;
};
using ProbePtr = std::unique_ptr<Probe>;

// GET http://host:port/path; healthy on a 2xx or 3xx status (redirects are not followed). Only
// the status line and headers are read, so a large body costs nothing. `host` is normally an IP
// literal (the agent knows the address); a name is resolved with getaddrinfo, which the timeout
// cannot interrupt, so a slow resolver can make Run() outlast it.
class HttpProbe final : public Probe {
 public:
  HttpProbe(std::string host, int port, std::string path, std::chrono::milliseconds timeout);
  ProbeOutcome Run() const override;

 private:
  const std::string host_;
  const int port_;
  const std::string path_;
  const std::chrono::milliseconds timeout_;
};

// Healthy when a TCP connection to host:port opens within the timeout (same note on names).
class TcpProbe final : public Probe {
 public:
  TcpProbe(std::string host, int port, std::chrono::milliseconds timeout);
  ProbeOutcome Run() const override;

 private:
  const std::string host_;
  const int port_;
  const std::chrono::milliseconds timeout_;
};

// Runs argv on the host (argv[0] is looked up in PATH), stdin from /dev/null, stdout and stderr
// captured together. Healthy on exit 0. The command runs in its own process group, and the
// whole group is killed (SIGKILL) when the timeout passes, so helpers it started die with it.
// A docker "exec" variant will implement the same Probe interface.
class CommandProbe final : public Probe {
 public:
  // Output beyond this many bytes is read and dropped; the message ends with "...".
  static constexpr size_t kMaxOutput = 1024;

  CommandProbe(std::vector<std::string> argv, std::chrono::milliseconds timeout);
  ProbeOutcome Run() const override;

 private:
  const std::vector<std::string> argv_;
  const std::chrono::milliseconds timeout_;
};

// Builds the probe a task's health check describes. `host` and `port` are where the check's
// named port is reachable (the agent resolves the port name); they are unused for command
// checks. Fails with InvalidArgument for a command check without argv or a bad port.
Result<ProbePtr> MakeProbe(const spec::HealthCheck& check, std::string host, int port);

enum class HealthState { kUnknown, kHealthy, kUnhealthy };
std::string_view HealthStateName(HealthState s);  // "unknown", "healthy", "unhealthy"

// Consecutive-outcome state machine: unknown until `healthy_threshold` passes in a row (then
// healthy) or `unhealthy_threshold` failures in a row (then unhealthy). One outcome of the other
// kind resets the streak but not the state, so a healthy task stays healthy through fewer than
// `unhealthy_threshold` failures. Thresholds below 1 count as 1.
class HealthTracker {
 public:
  // The first check is due at once (NextCheckAt() == clock->Now() at construction).
  HealthTracker(const spec::HealthCheck& check, ClockPtr clock);

  // Records one outcome and schedules the next check one interval from now. Returns true when
  // the state changed (the caller publishes the transition).
  bool Record(const ProbeOutcome& outcome);

  HealthState state() const { return state_; }
  TimePoint NextCheckAt() const { return next_check_at_; }
  bool Due() const { return clock_->Now() >= next_check_at_; }
  // The message of the last outcome recorded; empty before the first.
  const std::string& last_message() const { return last_message_; }
  int consecutive_passes() const { return passes_; }
  int consecutive_failures() const { return failures_; }

 private:
  const ClockPtr clock_;
  const Duration interval_;
  const int healthy_threshold_;
  const int unhealthy_threshold_;
  HealthState state_ = HealthState::kUnknown;
  int passes_ = 0;
  int failures_ = 0;
  std::string last_message_;
  TimePoint next_check_at_;
};

// Runs `probe` on its own thread, first at once and then one interval after each run, feeds a
// HealthTracker and calls `on_change` (on that thread) after every state change. Waits use real
// time derived from the clock's Now(); with a ManualClock the tracker logic is better tested
// directly. Stop() (also run by the destructor) waits for a probe in flight, at most its timeout.
class HealthMonitor {
 public:
  using ChangeCallback = std::function<void(HealthState state, const std::string& message)>;

  HealthMonitor(ProbePtr probe, const spec::HealthCheck& check, ClockPtr clock,
                ChangeCallback on_change);
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  void Stop();
  HealthState state() const;
  std::string last_message() const;

 private:
  void Loop();

  const ProbePtr probe_;
  const ClockPtr clock_;
  const ChangeCallback on_change_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  HealthTracker tracker_;  // guarded by mu_
  std::thread thread_;     // started last, joined by Stop()
};

}  // namespace berth::health
