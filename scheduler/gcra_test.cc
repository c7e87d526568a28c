// gcra_test.cc: the GCRA rate limit (scheduler/gcra.h) on a fake clock:
// conformance times, burst, no rounding drift, and the count over a window
// held within 10% of rate x window + burst.
#include "scheduler/gcra.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace mailfarm::scheduler {
namespace {

// Sends whenever the limit allows, stepping `step_ms` over [0, window_ms).
int64_t CountOver(Gcra& g, int64_t window_ms, int64_t step_ms) {
  int64_t sent = 0;
  for (int64_t now = 0; now < window_ms; now += step_ms) {
    while (g.WaitMs(now) == 0) {
      g.Take(now);
      ++sent;
    }
  }
  return sent;
}

TEST(Gcra, UnlimitedByDefaultAndForNonPositiveRates) {
  Gcra g;
  EXPECT_TRUE(g.unlimited());
  for (int i = 0; i < 1000; ++i) g.Take(0);
  EXPECT_EQ(g.WaitMs(0), 0);
  EXPECT_TRUE(g.Idle(0));
  for (double rate : {0.0, -5.0, std::numeric_limits<double>::quiet_NaN(),
                      std::numeric_limits<double>::infinity()}) {
    Gcra h;
    h.Configure(rate, 3);
    EXPECT_TRUE(h.unlimited()) << rate;
    h.Take(0);
    EXPECT_EQ(h.WaitMs(0), 0) << rate;
  }
}

TEST(Gcra, OneEveryIntervalWithoutBurst) {
  Gcra g;
  g.Configure(10, 1);  // one every 100 ms
  EXPECT_FALSE(g.unlimited());
  EXPECT_EQ(g.WaitMs(1000), 0);
  g.Take(1000);
  EXPECT_EQ(g.WaitMs(1000), 100);
  EXPECT_EQ(g.WaitMs(1050), 50);
  EXPECT_EQ(g.WaitMs(1099), 1);
  EXPECT_EQ(g.WaitMs(1100), 0);
  EXPECT_FALSE(g.Idle(1099));
  EXPECT_TRUE(g.Idle(1100));
  EXPECT_EQ(g.IdleAtMs(), 1100);
}

TEST(Gcra, BurstGoesAtOnceThenTheRate) {
  Gcra g;
  g.Configure(10, 3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(g.WaitMs(0), 0) << i;
    g.Take(0);
  }
  EXPECT_EQ(g.WaitMs(0), 100);
  g.Take(100);
  EXPECT_EQ(g.WaitMs(100), 100);
  // Idle for a long time: the burst is available again, but not more.
  int n = 0;
  while (g.WaitMs(10'000) == 0) {
    g.Take(10'000);
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST(Gcra, WaitIsNeverEarly) {
  Gcra g;
  g.Configure(3, 1);  // 333.333 ms: the ms answer must round up
  g.Take(0);
  int64_t wait = g.WaitMs(0);
  EXPECT_EQ(wait, 334);
  EXPECT_GT(g.WaitMs(wait - 1), 0);
  EXPECT_EQ(g.WaitMs(wait), 0);
}

TEST(Gcra, NoDriftAtAwkwardRates) {
  // 3/s over 3000 s is 9000 messages (+1 for the one at time 0), not 9000
  // +- a rounding error that grows with time.
  Gcra g;
  g.Configure(3, 1);
  EXPECT_NEAR(static_cast<double>(CountOver(g, 3'000'000, 1)), 9001, 1);
}

TEST(Gcra, HeldWithinTenPercentOverAMinute) {
  struct Case {
    double rate;
    uint32_t burst;
  };
  for (Case c : {Case{1, 1}, Case{10, 1}, Case{10, 20}, Case{250, 1},
                 Case{1000, 5}, Case{0.5, 2}}) {
    Gcra g;
    g.Configure(c.rate, c.burst);
    double expected = c.rate * 60 + c.burst;
    double got = static_cast<double>(CountOver(g, 60'000, 1));
    EXPECT_NEAR(got, expected, expected * 0.10)
        << "rate " << c.rate << " burst " << c.burst;
    EXPECT_LE(got, expected + 1) << "rate " << c.rate;  // never over
  }
}

TEST(Gcra, ReconfigureKeepsTheDebt) {
  Gcra g;
  g.Configure(1, 1);
  g.Take(0);
  EXPECT_EQ(g.WaitMs(0), 1000);
  g.Configure(2, 1);  // faster now, but the last send still counts
  EXPECT_GT(g.WaitMs(0), 0);
  g.Configure(0, 1);
  EXPECT_EQ(g.WaitMs(0), 0);
}

}  // namespace
}  // namespace mailfarm::scheduler
