// pool_policy_test.cc: the spare-pool rule and the crash throttle, without
// forking.
#include "farm/pool_policy.h"

#include <gtest/gtest.h>

namespace farm {
namespace {

PoolLimits Limits(int min_spare, int max_spare, int max_children) {
  return PoolLimits{min_spare, max_spare, max_children};
}

TEST(DecidePoolTest, SpawnRateDoublesWhileShortAndCapsAt32) {
  PoolLimits limits = Limits(100, 200, 1000);
  int rate = 1;
  std::vector<int> spawned;
  PoolCounts counts;
  for (int tick = 0; tick < 8; ++tick) {
    PoolDecision d = DecidePool(counts, limits, rate);
    spawned.push_back(d.spawn);
    counts.idle += d.spawn;  // they became idle by the next tick
    counts.total += d.spawn;
    rate = d.next_spawn_rate;
  }
  EXPECT_EQ(spawned, (std::vector<int>{1, 2, 4, 8, 16, 32, 32, 32}));
}

TEST(DecidePoolTest, StartingChildrenCountAsIdle) {
  PoolCounts counts{.idle = 0, .starting = 2, .busy = 5, .total = 7};
  PoolDecision d = DecidePool(counts, Limits(2, 4, 32), 1);
  EXPECT_EQ(d.spawn, 0);
  EXPECT_FALSE(d.kill_idle);
}

TEST(DecidePoolTest, RateResetsWhenSparesAreEnough) {
  PoolCounts counts{.idle = 3, .starting = 0, .busy = 0, .total = 3};
  PoolDecision d = DecidePool(counts, Limits(2, 4, 32), 16);
  EXPECT_EQ(d.spawn, 0);
  EXPECT_EQ(d.next_spawn_rate, 1);
}

TEST(DecidePoolTest, NeverExceedsMaxChildren) {
  PoolCounts counts{.idle = 0, .starting = 0, .busy = 9, .total = 9};
  PoolDecision d = DecidePool(counts, Limits(5, 10, 10), 8);
  EXPECT_EQ(d.spawn, 1);
  counts.total = 10;
  d = DecidePool(counts, Limits(5, 10, 10), 8);
  EXPECT_EQ(d.spawn, 0);
  EXPECT_EQ(d.next_spawn_rate, 1);
}

TEST(DecidePoolTest, KillsOneIdleChildPerTickAboveMaxSpare) {
  PoolCounts counts{.idle = 9, .starting = 0, .busy = 0, .total = 9};
  PoolDecision d = DecidePool(counts, Limits(1, 4, 32), 4);
  EXPECT_TRUE(d.kill_idle);
  EXPECT_EQ(d.spawn, 0);
  EXPECT_EQ(d.next_spawn_rate, 1);
}

TEST(DecidePoolTest, BusyChildrenAreNotSpares) {
  PoolCounts counts{.idle = 0, .starting = 0, .busy = 20, .total = 20};
  PoolDecision d = DecidePool(counts, Limits(2, 4, 32), 1);
  EXPECT_EQ(d.spawn, 1);
  EXPECT_EQ(d.next_spawn_rate, 2);
}

TEST(CrashThrottleTest, ThrottlesAfterConsecutiveEarlyDeaths) {
  CrashThrottle throttle(3, 10'000);
  EXPECT_FALSE(throttle.RecordExit(false, 0));
  EXPECT_FALSE(throttle.RecordExit(false, 10));
  EXPECT_TRUE(throttle.RecordExit(false, 20));  // starts the pause; logged once
  EXPECT_TRUE(throttle.Throttled(5'000));
  EXPECT_FALSE(
      throttle.RecordExit(false, 30));  // already throttled: no second log
  EXPECT_FALSE(throttle.Throttled(10'020));
}

TEST(CrashThrottleTest, AChildThatFinishedAJobResetsTheCount) {
  CrashThrottle throttle(3, 10'000);
  throttle.RecordExit(false, 0);
  throttle.RecordExit(false, 1);
  throttle.RecordExit(true, 2);
  EXPECT_FALSE(throttle.RecordExit(false, 3));
  EXPECT_FALSE(throttle.RecordExit(false, 4));
  EXPECT_FALSE(throttle.Throttled(5));
}

}  // namespace
}  // namespace farm
