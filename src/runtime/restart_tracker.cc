#include "runtime/restart_tracker.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace berth::runtime {
namespace {

using std::chrono::milliseconds;

// Messages show whole milliseconds, rounded up so "restarting in 1s" never lies early.
std::string Show(Duration d) {
  return spec::FormatDuration(std::chrono::ceil<milliseconds>(std::max(d, Duration(0))));
}

}  // namespace

RestartTracker::RestartTracker(spec::RestartPolicy policy, spec::JobType job_type)
    : policy_(std::move(policy)), job_type_(job_type) {}

void RestartTracker::OnStarted(TimePoint now) {
  has_start_ = true;
  started_at_ = now;
}

void RestartTracker::OnStable(TimePoint /*now*/) {
  consecutive_ = 0;
}

Duration RestartTracker::BackOff() const {
  // Doubling by loop rather than shift: the exponent is unbounded and the cap is what matters.
  const Duration cap = std::max<Duration>(policy_.max_delay, policy_.delay);
  Duration d = policy_.delay;
  for (int i = 0; i < consecutive_ && d < cap; ++i) d *= 2;
  return std::min(d, cap);
}

void RestartTracker::DropExpired(TimePoint now) {
  // A restart at r counts while r > now - interval.
  while (!window_.empty() && window_.front() <= now - Duration(policy_.interval)) {
    window_.pop_front();
  }
}

RestartDecision RestartTracker::Restart(TimePoint now, Duration delay, std::string message) {
  RestartDecision d;
  d.kind = RestartDecision::Kind::kRestart;
  d.delay = delay;
  d.restart_at = now + delay;
  d.message = std::move(message);
  window_.push_back(d.restart_at);
  ++consecutive_;
  ++restart_count_;
  // Until OnStarted says otherwise, the task is taken to start when its restart is due.
  has_start_ = true;
  started_at_ = d.restart_at;
  return d;
}

RestartDecision RestartTracker::OnExit(int exit_code, TimePoint now) {
  if (done_) return last_;
  if (job_type_ == spec::JobType::kBatch && exit_code == 0) {
    done_ = true;
    last_ = RestartDecision{RestartDecision::Kind::kComplete, Duration(0), {}, "completed"};
    return last_;
  }
  // A long run is as good as an OnStable: the crash is not part of a crash loop.
  if (has_start_ && now - started_at_ >= Duration(policy_.interval)) consecutive_ = 0;
  DropExpired(now);

  const std::string within = " within " + spec::FormatDuration(policy_.interval);
  const std::string of = std::to_string(policy_.attempts);
  const int used = static_cast<int>(window_.size());
  if (used < policy_.attempts) {
    const Duration delay = BackOff();
    last_ = Restart(now, delay,
                    "restarting in " + Show(delay) + " (attempt " + std::to_string(used + 1) +
                        " of " + of + within + ")");
    return last_;
  }
  if (policy_.mode == spec::RestartMode::kFail) {
    done_ = true;
    last_ = RestartDecision{
        RestartDecision::Kind::kFailed, Duration(0), {}, "failed: " + of + " restarts" + within};
    return last_;
  }
  // Mode delay: wait until the oldest restart leaves the window (with no attempts at all,
  // a whole interval), and never less than the back-off.
  // (window_ is non-empty here unless attempts is 0.)
  const size_t must_leave =
      window_.size() - std::min<size_t>(window_.size(), std::max(policy_.attempts, 1));
  const TimePoint frees = window_.empty() ? now + Duration(policy_.interval)
                                          : window_[must_leave] + Duration(policy_.interval);
  const Duration delay = std::max(frees - now, BackOff());
  last_ = Restart(now, delay,
                  "restarting in " + Show(delay) + " (" + of + " restarts" + within +
                      " used up; waiting for the window)");
  return last_;
}

}  // namespace berth::runtime
