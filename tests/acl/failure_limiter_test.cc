#include "acl/failure_limiter.h"

#include <gtest/gtest.h>

namespace berth::acl {
namespace {

using std::chrono::seconds;

class FailureLimiterTest : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
};

TEST_F(FailureLimiterTest, RefusesAnAddressAfterTooManyFailuresUntilTheWindowPasses) {
  FailureLimiter limiter(clock_, {.max_failures = 3, .window = seconds(10)});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter.Blocked("10.0.0.1"), Duration::zero()) << i;
    limiter.RecordFailure("10.0.0.1");
    clock_->Advance(seconds(1));
  }
  // Failures at t=0,1,2; now t=3: blocked until the first is 10 s old (t=10).
  EXPECT_EQ(limiter.Blocked("10.0.0.1"), seconds(7));
  EXPECT_EQ(limiter.Blocked("10.0.0.2"), Duration::zero()) << "other addresses are not affected";
  clock_->Advance(seconds(6));
  EXPECT_EQ(limiter.Blocked("10.0.0.1"), seconds(1));
  clock_->Advance(seconds(1));
  EXPECT_EQ(limiter.Blocked("10.0.0.1"), Duration::zero());
  // One more failure within the window of the other two blocks again.
  limiter.RecordFailure("10.0.0.1");
  EXPECT_GT(limiter.Blocked("10.0.0.1"), Duration::zero());
}

TEST_F(FailureLimiterTest, FailuresSpreadOverTimeNeverBlock) {
  FailureLimiter limiter(clock_, {.max_failures = 3, .window = seconds(10)});
  for (int i = 0; i < 50; ++i) {
    limiter.RecordFailure("10.0.0.1");
    clock_->Advance(seconds(5));
    EXPECT_EQ(limiter.Blocked("10.0.0.1"), Duration::zero()) << i;
  }
}

TEST_F(FailureLimiterTest, ZeroMeansNoLimit) {
  FailureLimiter limiter(clock_, {.max_failures = 0});
  for (int i = 0; i < 100; ++i) limiter.RecordFailure("10.0.0.1");
  EXPECT_EQ(limiter.Blocked("10.0.0.1"), Duration::zero());
}

TEST_F(FailureLimiterTest, RemembersABoundedNumberOfAddresses) {
  FailureLimiter limiter(clock_, {.max_failures = 2, .window = seconds(10), .max_addresses = 4});
  for (int i = 0; i < 1000; ++i) limiter.RecordFailure("10.0.0." + std::to_string(i));
  // Still works for a fresh address after the table was full.
  limiter.RecordFailure("192.168.0.1");
  limiter.RecordFailure("192.168.0.1");
  EXPECT_GT(limiter.Blocked("192.168.0.1"), Duration::zero());
}

TEST_F(FailureLimiterTest, LogLinesAreBudgetedPerWindowAndTheDroppedOnesCounted) {
  FailureLimiter limiter(clock_, {.window = seconds(10), .max_log_lines = 3});
  int64_t dropped = -1;
  int logged = 0;
  for (int i = 0; i < 10; ++i) logged += limiter.MayLog(&dropped) ? 1 : 0;
  EXPECT_EQ(logged, 3);
  EXPECT_EQ(dropped, 0);
  clock_->Advance(seconds(10));
  EXPECT_TRUE(limiter.MayLog(&dropped));
  EXPECT_EQ(dropped, 7);
  EXPECT_TRUE(limiter.MayLog(&dropped));
  EXPECT_EQ(dropped, 0);
}

}  // namespace
}  // namespace berth::acl
