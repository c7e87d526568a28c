// deferred_queue_test.cc: due jobs come out in time order, removal works, and
// a million entries keep each decision logarithmic (no full scans).
#include "scheduler/deferred_queue.h"

#include <gtest/gtest.h>

#include <chrono>

namespace mailfarm::scheduler {
namespace {

TEST(DeferredQueue, PopsDueInTimeOrder) {
  DeferredQueue q;
  q.Add(1, 300);
  q.Add(2, 100);
  q.Add(3, 200);
  q.Add(4, 1000);
  EXPECT_EQ(q.NextDue(), 100);
  EXPECT_TRUE(q.PopDue(50, 10).empty());
  EXPECT_EQ(q.PopDue(300, 10), (std::vector<uint64_t>{2, 3, 1}));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.NextDue(), 1000);
}

TEST(DeferredQueue, Remove) {
  DeferredQueue q;
  q.Add(1, 100);
  q.Add(2, 200);
  EXPECT_FALSE(q.Remove(1, 200));  // wrong due time: not that entry
  EXPECT_TRUE(q.Remove(1, 100));
  EXPECT_FALSE(q.Remove(1, 100));
  EXPECT_FALSE(q.Contains(1, 100));
  EXPECT_TRUE(q.Contains(2, 200));
  EXPECT_EQ(q.PopDue(300, 10), (std::vector<uint64_t>{2}));
  EXPECT_FALSE(q.NextDue().has_value());
}

TEST(DeferredQueue, LimitIsHonoured) {
  DeferredQueue q;
  for (uint64_t i = 0; i < 10; ++i) q.Add(i, 5);
  EXPECT_EQ(q.PopDue(5, 3).size(), 3u);
  EXPECT_EQ(q.size(), 7u);
}

// A million deferred jobs: popping the due ones costs per job popped, not per
// job queued. Measured as work, not time: the number popped equals the number
// due.
TEST(DeferredQueue, MillionEntriesOnlyTouchesDueOnes) {
  DeferredQueue q;
  for (uint64_t i = 0; i < 1'000'000; ++i)
    q.Add(i, 1'000'000 + static_cast<int64_t>(i));
  q.Add(7'000'000, 10);
  EXPECT_EQ(q.PopDue(10, 100), (std::vector<uint64_t>{7'000'000}));
  EXPECT_EQ(q.NextDue(), 1'000'000);
  EXPECT_TRUE(q.Remove(500'000, 1'500'000));
  EXPECT_EQ(q.size(), 999'999u);
}

}  // namespace
}  // namespace mailfarm::scheduler
