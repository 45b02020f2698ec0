#include "runtime/restart_tracker.h"

#include <gtest/gtest.h>

#include <chrono>

#include "common/clock.h"
#include "spec/job.h"

namespace berth::runtime {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using Kind = RestartDecision::Kind;

spec::RestartPolicy Policy(spec::RestartMode mode) {
  spec::RestartPolicy p;
  p.attempts = 3;
  p.interval = minutes(5);
  p.delay = seconds(1);
  p.max_delay = seconds(4);
  p.mode = mode;
  return p;
}

class RestartTrackerTest : public ::testing::Test {
 protected:
  // Exits the task, then lets the decided delay pass, as the supervisor would.
  RestartDecision ExitAndWait(RestartTracker& t, int code) {
    RestartDecision d = t.OnExit(code, clock_.Now());
    if (d.kind == Kind::kRestart) clock_.Advance(d.delay);
    return d;
  }
  ManualClock clock_;
};

TEST_F(RestartTrackerTest, BackOffDoublesAndCountsAttempts) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kService);
  EXPECT_EQ(t.restart_count(), 0);
  EXPECT_EQ(t.message(), "");
  t.OnStarted(clock_.Now());

  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.delay, seconds(1));
  EXPECT_EQ(d.restart_at, clock_.Now() + seconds(1));
  EXPECT_EQ(d.message, "restarting in 1s (attempt 1 of 3 within 5m)");
  clock_.Advance(d.delay);

  d = ExitAndWait(t, 1);
  EXPECT_EQ(d.delay, seconds(2));
  EXPECT_EQ(d.message, "restarting in 2s (attempt 2 of 3 within 5m)");

  d = ExitAndWait(t, 137);
  EXPECT_EQ(d.delay, seconds(4));
  EXPECT_EQ(d.message, "restarting in 4s (attempt 3 of 3 within 5m)");
  EXPECT_EQ(t.message(), d.message);
  EXPECT_EQ(t.restart_count(), 3);
  EXPECT_FALSE(t.failed());
}

TEST_F(RestartTrackerTest, BackOffIsCappedAtMaxDelay) {
  spec::RestartPolicy p = Policy(spec::RestartMode::kFail);
  p.attempts = 10;
  p.max_delay = seconds(5);
  RestartTracker t(p, spec::JobType::kService);
  const milliseconds want[] = {seconds(1), seconds(2), seconds(4), seconds(5), seconds(5)};
  for (milliseconds w : want) {
    RestartDecision d = ExitAndWait(t, 1);
    ASSERT_EQ(d.kind, Kind::kRestart);
    EXPECT_EQ(d.delay, w);
  }
}

TEST_F(RestartTrackerTest, FailModeFailsWhenAttemptsUsedUpAndStaysFailed) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kService);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);

  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kFailed);
  EXPECT_EQ(d.message, "failed: 3 restarts within 5m");
  EXPECT_TRUE(t.failed());
  EXPECT_FALSE(t.completed());
  EXPECT_EQ(t.restart_count(), 3);

  // Final: even after the window has long passed.
  clock_.Advance(minutes(60));
  EXPECT_EQ(t.OnExit(1, clock_.Now()).kind, Kind::kFailed);
  EXPECT_EQ(t.restart_count(), 3);
}

TEST_F(RestartTrackerTest, WindowSlidesSoOldRestartsStopCounting) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kService);
  ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);  // restart at T0+1s
  clock_.Advance(seconds(200));
  t.OnStarted(clock_.Now());
  ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);
  ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);
  // Three restarts within 5m: the next exit now would fail...
  // ...but once the first restart is 5m old, an attempt is free again.
  clock_.Advance(minutes(5) - seconds(200) - seconds(2) - seconds(4) + milliseconds(1));
  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.message, "restarting in 4s (attempt 3 of 3 within 5m)");
}

TEST_F(RestartTrackerTest, ExactlyAtWindowEdgeTheOldRestartStillCounts) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kService);
  const TimePoint first = clock_.Now() + seconds(1);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);
  // now - first = 6s; advance so that first == now - interval + 1ms: still inside.
  clock_.Advance(minutes(5) - (clock_.Now() - first) - milliseconds(1));
  EXPECT_EQ(t.OnExit(1, clock_.Now()).kind, Kind::kFailed);
}

TEST_F(RestartTrackerTest, DelayModeWaitsForTheWindowThenRestarts) {
  RestartTracker t(Policy(spec::RestartMode::kDelay), spec::JobType::kService);
  const TimePoint first_restart = clock_.Now() + seconds(1);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);
  // Restarts at +1s, +3s, +7s; exit at +7s: the first frees at +1s+5m.
  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.restart_at, first_restart + minutes(5));
  EXPECT_EQ(d.delay, minutes(5) - seconds(6));
  EXPECT_EQ(d.message, "restarting in 294s (3 restarts within 5m used up; waiting for the window)");
  EXPECT_FALSE(t.failed());
  EXPECT_EQ(t.restart_count(), 4);

  // Right after that restart, the window again holds 3 restarts (+3s, +7s, +5m1s). The next
  // slot frees at +5m3s, 2s away, but the back-off (capped at 4s) is longer and wins.
  clock_.Advance(d.delay);
  d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.delay, seconds(4));
  // Three exits later the back-off is still 4s, while the window frees only at +5m1s+5m.
  clock_.Advance(d.delay);
  EXPECT_EQ(ExitAndWait(t, 1).delay, seconds(4));
  d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.restart_at, first_restart + minutes(10));
}

TEST_F(RestartTrackerTest, DelayModeNeverWaitsLessThanTheBackOff) {
  spec::RestartPolicy p = Policy(spec::RestartMode::kDelay);
  p.attempts = 1;
  p.interval = seconds(2);
  p.delay = seconds(10);
  p.max_delay = seconds(10);
  RestartTracker t(p, spec::JobType::kService);
  // Restart at +10s; exit immediately after: window frees at +12s, but back-off is 10s.
  ASSERT_EQ(ExitAndWait(t, 1).kind, Kind::kRestart);
  clock_.Advance(seconds(1));
  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.delay, seconds(10));
}

TEST_F(RestartTrackerTest, ZeroAttempts) {
  spec::RestartPolicy p = Policy(spec::RestartMode::kFail);
  p.attempts = 0;
  RestartTracker fail(p, spec::JobType::kService);
  RestartDecision d = fail.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kFailed);
  EXPECT_EQ(d.message, "failed: 0 restarts within 5m");

  p.mode = spec::RestartMode::kDelay;
  RestartTracker delay(p, spec::JobType::kService);
  d = delay.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.delay, minutes(5));  // a whole interval
  clock_.Advance(d.delay + seconds(1));
  d = delay.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.delay, minutes(5) - seconds(1));  // an interval after the last restart
}

TEST_F(RestartTrackerTest, LongUptimeResetsBackOff) {
  spec::RestartPolicy p = Policy(spec::RestartMode::kFail);
  p.interval = seconds(30);
  RestartTracker t(p, spec::JobType::kService);
  EXPECT_EQ(ExitAndWait(t, 1).delay, seconds(1));
  EXPECT_EQ(ExitAndWait(t, 1).delay, seconds(2));
  // Up for one interval since the restart: back to `delay`, without an OnStarted call.
  clock_.Advance(seconds(30));
  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kRestart);
  EXPECT_EQ(d.delay, seconds(1));
  EXPECT_EQ(d.message, "restarting in 1s (attempt 1 of 3 within 30s)");
}

TEST_F(RestartTrackerTest, ShortUptimeKeepsBackOff) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kService);
  EXPECT_EQ(ExitAndWait(t, 1).delay, seconds(1));
  // Started late (OnStarted overrides the assumed start), ran 4m59s: not long enough.
  clock_.Advance(seconds(3));
  t.OnStarted(clock_.Now());
  clock_.Advance(minutes(5) - seconds(1));
  EXPECT_EQ(t.OnExit(1, clock_.Now()).delay, seconds(2));
}

TEST_F(RestartTrackerTest, OnStableResetsBackOffButNotTheWindow) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kService);
  EXPECT_EQ(ExitAndWait(t, 1).delay, seconds(1));
  EXPECT_EQ(ExitAndWait(t, 1).delay, seconds(2));
  t.OnStable(clock_.Now());
  RestartDecision d = ExitAndWait(t, 1);
  EXPECT_EQ(d.delay, seconds(1));
  EXPECT_EQ(d.message, "restarting in 1s (attempt 3 of 3 within 5m)");
  EXPECT_EQ(t.OnExit(1, clock_.Now()).kind, Kind::kFailed);
}

TEST_F(RestartTrackerTest, BatchExitZeroCompletes) {
  RestartTracker t(Policy(spec::RestartMode::kFail), spec::JobType::kBatch);
  ASSERT_EQ(ExitAndWait(t, 2).kind, Kind::kRestart);  // a failed batch run is retried
  RestartDecision d = t.OnExit(0, clock_.Now());
  EXPECT_EQ(d.kind, Kind::kComplete);
  EXPECT_EQ(d.message, "completed");
  EXPECT_TRUE(t.completed());
  EXPECT_FALSE(t.failed());
  EXPECT_EQ(t.restart_count(), 1);
  EXPECT_EQ(t.OnExit(1, clock_.Now()).kind, Kind::kComplete);  // final
}

TEST_F(RestartTrackerTest, ServiceAndSystemExitZeroRestart) {
  for (spec::JobType type : {spec::JobType::kService, spec::JobType::kSystem}) {
    RestartTracker t(Policy(spec::RestartMode::kFail), type);
    RestartDecision d = t.OnExit(0, clock_.Now());
    EXPECT_EQ(d.kind, Kind::kRestart);
    EXPECT_FALSE(t.completed());
  }
}

TEST_F(RestartTrackerTest, ZeroDelayRestartsAtOnce) {
  spec::RestartPolicy p = Policy(spec::RestartMode::kFail);
  p.delay = milliseconds(0);
  p.max_delay = milliseconds(0);
  RestartTracker t(p, spec::JobType::kService);
  RestartDecision d = t.OnExit(1, clock_.Now());
  EXPECT_EQ(d.delay, milliseconds(0));
  EXPECT_EQ(d.message, "restarting in 0s (attempt 1 of 3 within 5m)");
}

}  // namespace
}  // namespace berth::runtime
