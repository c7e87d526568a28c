// queue_id_test.cc: queue ids are unique, sort by arrival and pick the
// directory that changes only every 65 s.
#include "scheduler/queue_id.h"

#include <gtest/gtest.h>

#include <set>

namespace mailfarm::scheduler {
namespace {

TEST(QueueId, SortsByArrivalAndIsUnique) {
  QueueIdGenerator gen;
  std::set<std::string> seen;
  std::string last;
  int64_t t = 1'700'000'000'000;
  for (int i = 0; i < 200'000; ++i) {
    if (i % 1000 == 0) t += 1;
    std::string id = gen.Next(t);
    EXPECT_TRUE(IsValidQueueId(id)) << id;
    EXPECT_GT(id, last);
    last = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 200'000u);
}

TEST(QueueId, ClockStepBackStaysIncreasing) {
  QueueIdGenerator gen;
  std::string a = gen.Next(2'000'000);
  std::string b = gen.Next(1'000'000);
  EXPECT_GT(b, a);
  EXPECT_EQ(QueueIdTimeMs(a), 2'000'000);
}

// A restart with the clock behind the newest id the spool recorded: the
// seeded generator still hands out greater ids.
TEST(QueueId, SeededGeneratorContinuesAfterTheSeed) {
  QueueIdGenerator before;
  before.Next(2'000'000);
  std::string newest = before.Next(2'000'000);
  QueueIdGenerator after;
  after.Seed(newest);
  EXPECT_EQ(after.Last(), newest);
  std::string next = after.Next(1'000'000);
  EXPECT_GT(next, newest);
  after.Seed("0000000000000001");  // older: no effect
  after.Seed("not an id");
  EXPECT_GT(after.Next(1'000'000), next);
  EXPECT_GT(after.Next(3'000'000), next);
}

TEST(QueueId, CounterOverflowBorrowsNextMs) {
  QueueIdGenerator gen;
  std::string last;
  for (int i = 0; i < 70'000; ++i) {
    std::string id = gen.Next(5000);
    ASSERT_GT(id, last);
    last = id;
  }
  EXPECT_EQ(QueueIdTimeMs(last), 5001);
}

TEST(QueueId, HashDirChangesSlowly) {
  QueueIdGenerator gen;
  int64_t base = 1'700'000'000'000 & ~int64_t{0xffff};
  std::string a = gen.Next(base);
  std::string b = gen.Next(base + 65'535);
  std::string c = gen.Next(base + 65'536);
  EXPECT_EQ(QueueIdHashDir(a), QueueIdHashDir(b));
  EXPECT_NE(QueueIdHashDir(b), QueueIdHashDir(c));
}

TEST(QueueId, Validation) {
  EXPECT_FALSE(IsValidQueueId("0192a3b4c5d6000"));
  EXPECT_FALSE(IsValidQueueId("0192a3b4c5d6000G"));
  EXPECT_FALSE(IsValidQueueId("../../etc/passwd"));
  EXPECT_TRUE(IsValidQueueId("0192a3b4c5d60001"));
}

}  // namespace
}  // namespace mailfarm::scheduler
