#include "common/clock.h"

namespace berth {

int64_t SystemClock::WallMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ClockPtr SystemClock::Shared() {
  static ClockPtr clock = std::make_shared<SystemClock>();
  return clock;
}

}  // namespace berth
