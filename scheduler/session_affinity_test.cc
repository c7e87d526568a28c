// session_affinity_test.cc: the idle-session index (scheduler/
// session_affinity.h): which idle connection holds an open session to a
// destination, and that taking or closing a connection withdraws its offer.
#include "scheduler/session_affinity.h"

#include <gtest/gtest.h>

#include "scheduler/destination_table.h"

namespace mailfarm::scheduler {
namespace {

const std::string kA = DestinationTable::SessionKey("smtp", "a.example");
const std::string kB = DestinationTable::SessionKey("smtp", "b.example");

TEST(SessionAffinity, EmptyFindsNothing) {
  SessionAffinity s;
  EXPECT_FALSE(s.Find(kA).has_value());
  EXPECT_FALSE(s.Find("").has_value());
  EXPECT_FALSE(s.HoldsSession(1));
  EXPECT_EQ(s.open_sessions(), 0u);
}

TEST(SessionAffinity, IdleConnectionWithASessionIsFound) {
  SessionAffinity s;
  s.SetIdle(1, kA);
  s.SetIdle(2, kB);
  s.SetIdle(3, "");  // idle without a session: not on offer
  EXPECT_EQ(s.Find(kA), SessionAffinity::ConnId{1});
  EXPECT_EQ(s.Find(kB), SessionAffinity::ConnId{2});
  EXPECT_FALSE(s.Find(DestinationTable::SessionKey("smtp", "c.example")));
  EXPECT_FALSE(s.Find(DestinationTable::SessionKey("other", "a.example")));
  EXPECT_FALSE(s.Find("").has_value());
  EXPECT_TRUE(s.HoldsSession(1));
  EXPECT_TRUE(s.HoldsSession(2));
  EXPECT_FALSE(s.HoldsSession(3));
  EXPECT_EQ(s.open_sessions(), 2u);
}

TEST(SessionAffinity, MostRecentFirstAndFindDoesNotRemove) {
  SessionAffinity s;
  s.SetIdle(1, kA);
  s.SetIdle(2, kA);
  EXPECT_EQ(s.Find(kA), SessionAffinity::ConnId{2});
  EXPECT_EQ(s.Find(kA), SessionAffinity::ConnId{2});
  s.Forget(2);  // the caller hands conn 2 the job
  EXPECT_EQ(s.Find(kA), SessionAffinity::ConnId{1});
  EXPECT_FALSE(s.HoldsSession(2));
  s.Forget(1);
  EXPECT_FALSE(s.Find(kA).has_value());
  EXPECT_EQ(s.open_sessions(), 0u);
}

TEST(SessionAffinity, SetIdleReplacesTheOldSession) {
  SessionAffinity s;
  s.SetIdle(7, kA);
  s.SetIdle(7, kB);  // same child, now connected elsewhere
  EXPECT_FALSE(s.Find(kA).has_value());
  EXPECT_EQ(s.Find(kB), SessionAffinity::ConnId{7});
  EXPECT_EQ(s.open_sessions(), 1u);
  s.SetIdle(7, "");  // session closed
  EXPECT_FALSE(s.Find(kB).has_value());
  EXPECT_FALSE(s.HoldsSession(7));
  EXPECT_EQ(s.open_sessions(), 0u);
}

TEST(SessionAffinity, ForgetUnknownIsHarmless) {
  SessionAffinity s;
  s.SetIdle(1, kA);
  s.Forget(99);
  s.Forget(99);
  EXPECT_EQ(s.Find(kA), SessionAffinity::ConnId{1});
  EXPECT_EQ(s.open_sessions(), 1u);
}

TEST(SessionAffinity, ManyConnectionsStayConsistent) {
  SessionAffinity s;
  for (SessionAffinity::ConnId c = 1; c <= 100; ++c) {
    s.SetIdle(c, c % 2 ? kA : kB);
  }
  EXPECT_EQ(s.open_sessions(), 100u);
  for (SessionAffinity::ConnId c = 1; c <= 100; ++c) {
    if (c % 4 != 0) s.Forget(c);
  }
  EXPECT_EQ(s.open_sessions(), 25u);  // 4, 8, ..., 100: all on kB
  EXPECT_FALSE(s.Find(kA).has_value());
  EXPECT_EQ(s.Find(kB), SessionAffinity::ConnId{100});
}

}  // namespace
}  // namespace mailfarm::scheduler
