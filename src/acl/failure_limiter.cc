#include "acl/failure_limiter.h"

namespace berth::acl {

FailureLimiter::FailureLimiter(ClockPtr clock, Options options)
    : clock_(clock ? std::move(clock) : SystemClock::Shared()), opts_(options) {
  log_window_start_ = clock_->Now();
}

Duration FailureLimiter::Blocked(const std::string& address) {
  if (opts_.max_failures <= 0) return Duration::zero();
  TimePoint now = clock_->Now();
  std::lock_guard lock(mu_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return Duration::zero();
  auto& times = it->second;
  while (!times.empty() && now - times.front() >= opts_.window) times.pop_front();
  if (times.empty()) {
    failures_.erase(it);
    return Duration::zero();
  }
  if (static_cast<int>(times.size()) < opts_.max_failures) return Duration::zero();
  return times.front() + opts_.window - now;
}

void FailureLimiter::RecordFailure(const std::string& address) {
  if (opts_.max_failures <= 0) return;
  TimePoint now = clock_->Now();
  std::lock_guard lock(mu_);
  if (failures_.size() >= opts_.max_addresses && !failures_.count(address)) Prune(now);
  auto& times = failures_[address];
  times.push_back(now);
  while (static_cast<int>(times.size()) > opts_.max_failures) times.pop_front();
}

void FailureLimiter::Prune(TimePoint now) {
  for (auto it = failures_.begin(); it != failures_.end();) {
    if (it->second.empty() || now - it->second.back() >= opts_.window) {
      it = failures_.erase(it);
    } else {
      ++it;
    }
  }
  // Still full of recent failures (many addresses at once): forget some rather than grow.
  while (failures_.size() >= opts_.max_addresses) failures_.erase(failures_.begin());
}

bool FailureLimiter::MayLog(int64_t* dropped) {
  *dropped = 0;
  TimePoint now = clock_->Now();
  std::lock_guard lock(mu_);
  if (now - log_window_start_ >= opts_.window) {
    log_window_start_ = now;
    log_lines_ = 0;
    *dropped = log_dropped_;
    log_dropped_ = 0;
  }
  if (log_lines_ >= opts_.max_log_lines) {
    ++log_dropped_;
    return false;
  }
  ++log_lines_;
  return true;
}

}  // namespace berth::acl
