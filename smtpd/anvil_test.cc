// anvil_test.cc: unit tests of smtpd's shared per-client counters (anvil.h):
// concurrency per address across slots, a dead child's session ignored,
// fixed-window rates, stress. The farm-wide behaviour is tested in
// tests/smtpd/smtpd_limits_test.py.
#include "smtpd/anvil.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

namespace smtpd {
namespace {

using Kind = LimitExceeded::Kind;

TEST(Anvil, ConcurrencyIsPerAddressAcrossSlots) {
  auto table = AnvilTable::Create(8);
  ASSERT_TRUE(table.ok());
  AnvilLimits limits;
  limits.concurrency = 2;
  AnvilTable& t = **table;
  EXPECT_FALSE(t.Connect(0, "192.0.2.1", limits, 0));
  EXPECT_FALSE(t.Connect(1, "192.0.2.1", limits, 0));
  LimitExceeded over = t.Connect(2, "192.0.2.1", limits, 0);
  EXPECT_EQ(over.kind, Kind::kConcurrency);
  EXPECT_EQ(over.count, 3u);
  EXPECT_FALSE(t.Connect(2, "192.0.2.2", limits, 0));  // another client
  EXPECT_EQ(t.ActiveSessions(), 3u);
  t.Leave(0);
  EXPECT_FALSE(t.Connect(3, "192.0.2.1", limits, 0));
  EXPECT_EQ(t.ActiveSessions(), 3u);
}

TEST(Anvil, DeadChildsSessionIsNotCounted) {
  auto table = AnvilTable::Create(4);
  ASSERT_TRUE(table.ok());
  AnvilLimits limits;
  limits.concurrency = 1;
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Takes the session and dies without leaving (a crash, SIGKILL).
    (*table)->Connect(0, "192.0.2.9", limits, 0);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE((*table)->Connect(1, "192.0.2.9", limits, 0));
  EXPECT_EQ((*table)->ActiveSessions(), 1u);
}

TEST(Anvil, RatesCountPerWindow) {
  auto table = AnvilTable::Create(4);
  ASSERT_TRUE(table.ok());
  AnvilLimits limits;
  limits.connection_rate = 2;
  limits.message_rate = 1;
  limits.recipient_rate = 3;
  limits.rate_unit_ms = 60000;
  AnvilTable& t = **table;
  EXPECT_FALSE(t.Connect(0, "2001:db8::1", limits, 1000));
  t.Leave(0);
  EXPECT_FALSE(t.Connect(0, "2001:db8::1", limits, 2000));
  t.Leave(0);
  LimitExceeded over = t.Connect(0, "2001:db8::1", limits, 3000);
  EXPECT_EQ(over.kind, Kind::kConnectionRate);
  EXPECT_EQ(over.count, 3u);
  EXPECT_FALSE(t.CountMessage("2001:db8::1", limits, 3000));
  EXPECT_EQ(t.CountMessage("2001:db8::1", limits, 3000).kind,
            Kind::kMessageRate);
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(t.CountRecipient("2001:db8::1", limits, 3000));
  EXPECT_EQ(t.CountRecipient("2001:db8::1", limits, 3000).kind,
            Kind::kRecipientRate);
  EXPECT_FALSE(t.CountMessage("2001:db8::2", limits, 3000));  // other client
  // A new window starts a time unit after the first event.
  EXPECT_FALSE(t.Connect(0, "2001:db8::1", limits, 61000));
  EXPECT_FALSE(t.CountMessage("2001:db8::1", limits, 61000));
}

TEST(Anvil, ManyClientsDoNotOverflowTheTable) {
  auto table = AnvilTable::Create(2);
  ASSERT_TRUE(table.ok());
  AnvilLimits limits;
  limits.message_rate = 1;
  for (int i = 0; i < 20000; ++i) {
    std::string address = "10." + std::to_string(i / 65536) + "." +
                          std::to_string((i / 256) % 256) + "." +
                          std::to_string(i % 256);
    EXPECT_FALSE((*table)->CountMessage(address, limits, 1000 + i));
  }
}

TEST(Anvil, StressWhenNearMaxChildren) {
  auto table = AnvilTable::Create(6);
  ASSERT_TRUE(table.ok());
  AnvilLimits limits;
  limits.stress_sessions = 2;
  AnvilClient first(table->get(), 0, limits);
  EXPECT_FALSE(first.Connect("192.0.2.1"));
  EXPECT_FALSE(first.UnderStress());
  {
    AnvilClient second(table->get(), 1, limits);
    EXPECT_FALSE(second.Connect("192.0.2.2"));
    EXPECT_TRUE(first.UnderStress());
  }  // the second session ends
  EXPECT_FALSE(first.UnderStress());
}

}  // namespace
}  // namespace smtpd
