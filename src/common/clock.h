// Clock: the one seam through which berth reads time, so timer-driven code (lease expiry,
// heartbeats, back-off) can be tested with a paused, advanceable clock instead of sleeps.
// Thread-safety: all implementations are safe to call from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

namespace berth {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time, for deadlines and expiry.
  virtual TimePoint Now() const = 0;
  // Wall-clock milliseconds since the Unix epoch, for timestamps shown to people.
  virtual int64_t WallMillis() const = 0;
};
using ClockPtr = std::shared_ptr<Clock>;

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  int64_t WallMillis() const override;
  static ClockPtr Shared();
};

// Starts at a fixed point and moves only when Advance() is called.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(Duration(now_ns_.load())); }
  int64_t WallMillis() const override { return 1'700'000'000'000 + now_ns_.load() / 1'000'000; }
  void Advance(Duration d) { now_ns_ += d.count(); }

 private:
  std::atomic<int64_t> now_ns_{1'000'000'000'000};
};

}  // namespace berth
