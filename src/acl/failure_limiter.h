// FailureLimiter: counts failed authentications per remote address and refuses an address
// that failed too often (after `max_failures` within `window`, every request from it gets 429
// until the oldest of those failures is `window` old), and budgets the log lines failures
// produce (at most `max_log_lines` per window, then one line saying how many were dropped).
// Time comes from the injected Clock, so tests advance it instead of sleeping.
// Thread-safety: every method may be called from any thread (one mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace berth::acl {

class FailureLimiter {
 public:
  struct Options {
    int max_failures = 10;  // 0: never refuse an address
    Duration window = std::chrono::seconds(10);
    size_t max_addresses = 10000;  // addresses remembered at once (memory bound)
    int max_log_lines = 20;        // per window, over all addresses
  };

  FailureLimiter(ClockPtr clock, Options options);

  // How long `address` must still wait; zero when it may try now.
  Duration Blocked(const std::string& address);
  // Records one failed authentication from `address`.
  void RecordFailure(const std::string& address);
  // Whether one more failure line may be logged now. When a new window starts after lines were
  // dropped, *dropped is set to how many (log that first), else 0.
  bool MayLog(int64_t* dropped);

 private:
  void Prune(TimePoint now);  // requires mu_

  ClockPtr clock_;
  Options opts_;
  std::mutex mu_;
  std::unordered_map<std::string, std::deque<TimePoint>> failures_;  // guarded by mu_
  TimePoint log_window_start_{};                                     // guarded by mu_
  int log_lines_ = 0;                                                // guarded by mu_
  int64_t log_dropped_ = 0;                                          // guarded by mu_
};

}  // namespace berth::acl
