// retry_policy_test.cc: backoff grows, stays within [min, max] with jitter,
// and the job expires at its lifetime; driven by farm::FakeClock, no sleeping.
#include "scheduler/retry_policy.h"

#include <gtest/gtest.h>

#include "farm/clock.h"

namespace mailfarm::scheduler {
namespace {

RetryPolicy Policy() {
  RetryPolicy p;
  p.min_backoff_ms = 300'000;
  p.max_backoff_ms = 4'000'000;
  p.max_lifetime_ms = 5LL * 86'400'000;
  p.jitter = 0.25;
  return p;
}

TEST(RetryPolicy, ExponentialWithoutJitter) {
  farm::FakeClock clock;
  int64_t arrival = clock.NowUnixMs();
  int64_t expected[] = {300'000,   600'000,   1'200'000,
                        2'400'000, 4'000'000, 4'000'000};
  for (uint32_t attempt = 1; attempt <= 6; ++attempt) {
    RetryDecision d =
        NextRetry(Policy(), attempt, arrival, clock.NowUnixMs(), 0.0);
    ASSERT_FALSE(d.expire);
    EXPECT_EQ(d.next_attempt_ms - clock.NowUnixMs(), expected[attempt - 1])
        << attempt;
    clock.Advance(d.next_attempt_ms - clock.NowUnixMs());
  }
}

TEST(RetryPolicy, JitterStaysBetweenMinAndMax) {
  farm::FakeClock clock;
  for (uint32_t attempt = 1; attempt <= 40; ++attempt) {
    for (double u : {0.0, 0.3, 0.6, 0.999}) {
      RetryDecision d =
          NextRetry(Policy(), attempt, clock.NowUnixMs(), clock.NowUnixMs(), u);
      int64_t delay = d.next_attempt_ms - clock.NowUnixMs();
      EXPECT_GE(delay, 300'000);
      EXPECT_LE(delay, 4'000'000);
    }
  }
  RetryDecision early =
      NextRetry(Policy(), 3, clock.NowUnixMs(), clock.NowUnixMs(), 0.999);
  RetryDecision late =
      NextRetry(Policy(), 3, clock.NowUnixMs(), clock.NowUnixMs(), 0.0);
  EXPECT_LT(early.next_attempt_ms, late.next_attempt_ms);
  EXPECT_GE(early.next_attempt_ms - clock.NowUnixMs(), 900'000);  // 1.2M * 0.75
}

TEST(RetryPolicy, LastAttemptAtExpiryThenExpire) {
  farm::FakeClock clock;
  int64_t arrival = clock.NowUnixMs();
  RetryPolicy p = Policy();
  clock.Advance(p.max_lifetime_ms - 60'000);  // one minute before expiry
  RetryDecision d = NextRetry(p, 30, arrival, clock.NowUnixMs(), 0.0);
  ASSERT_FALSE(d.expire);
  EXPECT_EQ(d.next_attempt_ms, arrival + p.max_lifetime_ms);
  clock.Advance(60'000);
  EXPECT_TRUE(NextRetry(p, 31, arrival, clock.NowUnixMs(), 0.0).expire);
}

TEST(RetryPolicy, HugeAttemptCountsDoNotOverflow) {
  RetryDecision d = NextRetry(Policy(), 4'000'000'000u, 0, 1000, 0.5);
  EXPECT_FALSE(d.expire);
  EXPECT_LE(d.next_attempt_ms - 1000, 4'000'000);
}

}  // namespace
}  // namespace mailfarm::scheduler
