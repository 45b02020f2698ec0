#include "common/status.h"

#include <gtest/gtest.h>

#include "common/clock.h"

namespace berth {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  BERTH_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, OkAndError) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFound("job web");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(), "not found: job web");
  EXPECT_EQ(s.Annotate("get").message(), "get: job web");
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.value_or(-1), -1);
}

TEST(ClockTest, ManualClockMovesOnlyWhenAdvanced) {
  ManualClock c;
  auto t0 = c.Now();
  EXPECT_EQ(c.Now(), t0);
  c.Advance(std::chrono::seconds(5));
  EXPECT_EQ(c.Now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace berth
