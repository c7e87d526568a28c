// destination_dispatch_test.cc: the queue manager's delivery dispatch through
// the destination table, with a farm::FakeClock and a fake dispatcher (no
// farms, no sleeping): a flooded destination does not delay a quiet one, the
// per-destination window holds and grows (slow start), a rate limit holds
// work back without counting attempts, a dead destination is suspended and
// its queued jobs wait together without attempts, and a flush by domain
// ends the suspension.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "scheduler/queue_test_fixture.h"

namespace mailfarm::scheduler {
namespace {

class DestinationDispatchTest : public QueueTest {
 protected:
  QueueSettings Settings() override {
    QueueSettings settings = QueueTest::Settings();
    ChannelLimits& c = settings.destinations["c"];
    c.destination = limits_;
    return settings;
  }
  void SetUp() override {}  // each test sets limits_ first, then Start()
  void Start() { QueueTest::SetUp(); }
  // One connection per destination, a dead-destination rule without jitter.
  void StartOneAtATime(uint32_t dead_failures, int64_t backoff_ms,
                       int64_t max_ms) {
    limits_.concurrency = 1;
    limits_.initial_concurrency = 1;
    limits_.dead_failures = dead_failures;
    limits_.dead_backoff_ms = backoff_ms;
    limits_.dead_backoff_max_ms = max_ms;
    limits_.dead_jitter = 0;
    Start();
  }

  // Routes every outstanding router item to channel c by recipient domain.
  void RouteAll() {
    auto items = dispatcher_.outstanding["router"];
    for (const WorkItem& item : items)
      AnswerItem("router", item, OUTCOME_OK, /*with_route=*/true, "");
  }
  std::vector<WorkItem> Deliveries() {
    return dispatcher_.outstanding["transport-c"];
  }
  std::string DestinationOf(const WorkItem& item) {
    Job job;
    EXPECT_TRUE(queue_->BuildJob(item, &job));
    return DestinationTable::DestinationOf(job.nexthop(),
                                           job.recipients(0).address());
  }
  void Deliver(const WorkItem& item, Outcome outcome,
               bool connection_failure = false) {
    AnswerItem("transport-c", item, outcome, false, "", connection_failure);
  }
  uint32_t AttemptsOf(const std::string& qid) {
    Selector sel;
    sel.add_qids(qid);
    auto entries = queue_->List(sel);
    EXPECT_EQ(entries.size(), 1u);
    return entries.empty() ? 0 : entries[0].attempts();
  }

  DestinationLimits limits_;
};

TEST_F(DestinationDispatchTest, FloodedDestinationDoesNotDelayAQuietOne) {
  limits_.concurrency = 2;
  limits_.initial_concurrency = 2;
  Start();
  dispatcher_.room = 2;  // the transport farm: two children
  for (int i = 0; i < 40; ++i) Inject("s@example.com", "u@flood.example");
  Inject("s@example.com", "a@quiet.example");
  Inject("s@example.com", "b@quiet.example");
  RouteAll();
  // The farm holds two flood jobs; 38 more flood jobs were queued before the
  // two quiet ones. Deliver in order and note where the quiet ones go.
  std::vector<std::string> order;
  while (!Deliveries().empty()) {
    WorkItem item = Deliveries().front();
    order.push_back(DestinationOf(item));
    Deliver(item, OUTCOME_OK);
  }
  ASSERT_EQ(order.size(), 42u);
  std::vector<size_t> quiet;
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] == "quiet.example") quiet.push_back(i);
  }
  ASSERT_EQ(quiet.size(), 2u);
  // Round robin: each freed slot alternates between the two destinations.
  EXPECT_LE(quiet[1], 5u) << "quiet jobs went out at " << quiet[0] << " and "
                          << quiet[1] << " of 42";
  RunUntil([&] { return queue_->size() == 0; });
}

TEST_F(DestinationDispatchTest, WindowStartsSmallGrowsAndShrinks) {
  limits_.concurrency = 4;
  limits_.initial_concurrency = 1;
  limits_.dead_failures = 0;  // never suspend here
  Start();
  for (int i = 0; i < 30; ++i) Inject("s@example.com", "u@d.example");
  RouteAll();
  // Slow start: one at first, one more after each answered delivery, never
  // more than the limit however much room the farm has.
  std::vector<size_t> seen;
  for (int round = 0; round < 6; ++round) {
    seen.push_back(Deliveries().size());
    auto batch = Deliveries();
    for (const WorkItem& item : batch) Deliver(item, OUTCOME_OK);
  }
  EXPECT_EQ(seen, (std::vector<size_t>{1, 2, 4, 4, 4, 4}));
  auto info = queue_->destinations().Info("c", "d.example");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->window, 4u);
  // A connection failure halves the window.
  auto batch = Deliveries();
  ASSERT_EQ(batch.size(), 4u);
  Deliver(batch[0], OUTCOME_TEMPFAIL, /*connection_failure=*/true);
  EXPECT_EQ(queue_->destinations().Info("c", "d.example")->window, 2u);
  EXPECT_EQ(Deliveries().size(), 3u);  // 3 still out, none added (window 2)
}

TEST_F(DestinationDispatchTest, RateLimitHoldsWorkBackWithoutAttempts) {
  limits_.rate_per_second = 2;
  limits_.rate_burst = 1;
  Start();
  std::vector<std::string> qids;
  for (int i = 0; i < 60; ++i)
    qids.push_back(Inject("s@example.com", "u@slow.example"));
  RouteAll();
  size_t sent = 0;
  // Ten seconds of fake time in 100 ms ticks; every delivery succeeds at once.
  for (int tick = 0; tick < 100; ++tick) {
    auto batch = Deliveries();
    sent += batch.size();
    for (const WorkItem& item : batch) Deliver(item, OUTCOME_OK);
    clock_.Advance(100);
    queue_->Tick();
  }
  sent += Deliveries().size();
  // 2/s over 10 s, plus the first one at t=0: 21 (within 10%).
  EXPECT_GE(sent, 19u);
  EXPECT_LE(sent, 23u);
  // Those still waiting were never deferred: holding back is not an attempt.
  EXPECT_EQ(queue_->deferred(), 0u);
  for (const std::string& qid : qids) {
    Selector sel;
    sel.add_qids(qid);
    for (const QueueEntry& e : queue_->List(sel)) EXPECT_EQ(e.attempts(), 0u);
  }
}

TEST_F(DestinationDispatchTest, DeadDestinationDefersItsQueueTogether) {
  StartOneAtATime(/*dead_failures=*/2, /*backoff_ms=*/120'000,
                  /*max_ms=*/480'000);
  std::vector<std::string> qids;
  for (int i = 0; i < 5; ++i)
    qids.push_back(Inject("s@example.com", "u@dead.example"));
  Inject("s@example.com", "u@alive.example");
  RouteAll();
  // alive.example is not held up by dead.example.
  auto first = Deliveries();
  ASSERT_EQ(first.size(), 2u);
  for (const WorkItem& item : first) {
    if (DestinationOf(item) == "alive.example") Deliver(item, OUTCOME_OK);
  }
  // Two connection failures in a row: the destination is suspended and the
  // other three queued jobs are deferred with it, without an attempt each.
  for (int i = 0; i < 2; ++i) {
    auto out = Deliveries();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(DestinationOf(out[0]), "dead.example");
    Deliver(out[0], OUTCOME_TEMPFAIL, /*connection_failure=*/true);
  }
  RunUntil([&] { return queue_->deferred() == 5; });
  EXPECT_TRUE(Deliveries().empty());
  EXPECT_EQ(queue_->destinations().suspended(), 1u);
  std::multiset<uint32_t> attempts;
  for (const std::string& qid : qids) attempts.insert(AttemptsOf(qid));
  EXPECT_EQ(attempts, (std::multiset<uint32_t>{0, 0, 0, 1, 1}));
  Stats stats;
  queue_->FillStats(&stats);
  bool reported = false;
  for (const auto& s : stats.samples()) {
    if (s.name() == "mailfarm_destinations_suspended" &&
        s.labels().at("channel") == "c")
      reported = s.value() == 1;
  }
  EXPECT_TRUE(reported);

  // A new job for the suspended destination makes no attempt either.
  std::string late = Inject("s@example.com", "u@dead.example");
  RouteAll();
  RunUntil([&] { return queue_->deferred() == 6; });
  EXPECT_TRUE(Deliveries().empty());
  EXPECT_EQ(AttemptsOf(late), 0u);

  // The two that failed come back after their own 60 s backoff, find the
  // destination still suspended and wait again, still without an attempt.
  clock_.Advance(60'000);
  queue_->Tick();
  ASSERT_EQ(dispatcher_.outstanding["router"].size(), 2u);
  RouteAll();
  RunUntil([&] { return queue_->deferred() == 6; });
  EXPECT_TRUE(Deliveries().empty());
  attempts.clear();
  for (const std::string& qid : qids) attempts.insert(AttemptsOf(qid));
  EXPECT_EQ(attempts, (std::multiset<uint32_t>{0, 0, 0, 1, 1}));

  // The suspension ends after 120 s: everything comes back, one probe goes
  // first, and its success lets the rest go.
  clock_.Advance(59'999);
  queue_->Tick();
  EXPECT_TRUE(dispatcher_.outstanding["router"].empty());
  clock_.Advance(1);
  queue_->Tick();
  EXPECT_FALSE(dispatcher_.outstanding["router"].empty());
  RouteAll();
  auto probe = Deliveries();
  ASSERT_EQ(probe.size(), 1u);
  Deliver(probe[0], OUTCOME_OK);
  EXPECT_EQ(queue_->destinations().suspended(), 0u);
  while (!Deliveries().empty()) Deliver(Deliveries().front(), OUTCOME_OK);
  RunUntil([&] { return queue_->size() == 0; });
  EXPECT_EQ(queue_->counter("delivered"), 7u);
}

TEST_F(DestinationDispatchTest, FailedProbeSuspendsForTwiceAsLong) {
  StartOneAtATime(/*dead_failures=*/1, /*backoff_ms=*/60'000,
                  /*max_ms=*/600'000);
  Inject("s@example.com", "u@dead.example");
  RouteAll();
  Deliver(Deliveries().at(0), OUTCOME_TEMPFAIL, true);
  RunUntil([&] { return queue_->deferred() == 1; });
  auto info = queue_->destinations().Info("c", "dead.example");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->suspended_until_ms, clock_.MonotonicMs() + 60'000);
  clock_.Advance(60'000);  // the job's own backoff is 60 s too
  queue_->Tick();
  RouteAll();
  Deliver(Deliveries().at(0), OUTCOME_TEMPFAIL, true);  // the probe fails
  RunUntil([&] { return queue_->deferred() == 1; });
  info = queue_->destinations().Info("c", "dead.example");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->suspended_until_ms, clock_.MonotonicMs() + 120'000);
}

TEST_F(DestinationDispatchTest, FlushByDomainEndsTheSuspension) {
  StartOneAtATime(/*dead_failures=*/1, /*backoff_ms=*/3'600'000,
                  /*max_ms=*/3'600'000);
  for (int i = 0; i < 3; ++i) Inject("s@example.com", "u@dead.example");
  RouteAll();
  Deliver(Deliveries().at(0), OUTCOME_TEMPFAIL, true);
  RunUntil([&] { return queue_->deferred() == 3; });
  ASSERT_EQ(queue_->destinations().suspended(), 1u);
  // A flush of another domain changes nothing.
  Selector other;
  other.set_domain("elsewhere.example");
  EXPECT_EQ(queue_->Flush(other), 0u);
  EXPECT_EQ(queue_->destinations().suspended(), 1u);
  // The operator's flush of the domain: suspension over, all three go now,
  // no clock movement needed.
  Selector sel;
  sel.set_domain("DEAD.example");
  EXPECT_EQ(queue_->Flush(sel), 3u);
  EXPECT_EQ(queue_->destinations().suspended(), 0u);
  RouteAll();
  ASSERT_EQ(Deliveries().size(), 1u);  // window 1
  while (!Deliveries().empty()) Deliver(Deliveries().front(), OUTCOME_OK);
  RunUntil([&] { return queue_->size() == 0; });
}

TEST_F(DestinationDispatchTest, HoldReleasesTheDestinationSlot) {
  limits_.concurrency = 1;
  limits_.initial_concurrency = 1;
  Start();
  dispatcher_.room = 0;  // the farm is full: work waits in the table
  std::string a = Inject("s@example.com", "u@d.example");
  std::string b = Inject("s@example.com", "u@d.example");
  RouteAll();
  EXPECT_TRUE(Deliveries().empty());
  EXPECT_EQ(queue_->destinations().queued(), 2u);
  Selector sel;
  sel.add_qids(a);
  EXPECT_EQ(queue_->Hold(sel), 1u);
  EXPECT_EQ(queue_->destinations().queued(), 1u);
  dispatcher_.room = 10;
  queue_->Tick();
  auto out = Deliveries();
  ASSERT_EQ(out.size(), 1u);
  Job job;
  ASSERT_TRUE(queue_->BuildJob(out[0], &job));
  EXPECT_EQ(job.qid(), b);
  Deliver(out[0], OUTCOME_OK);
  RunUntil([&] { return queue_->size() == 1; });
  EXPECT_EQ(queue_->destinations().in_flight(), 0u);
}

TEST(DestinationLimitsTest, RatesPerMinuteAndHourFromTheConfig) {
  config::Config config;
  auto* ch = config.add_channel();
  ch->set_name("c");
  ch->set_rate("3600/h");
  ch->set_destination_rate("120/m");
  auto* o = config.add_destination();
  o->set_destination("Slow.Example");
  o->set_rate("30/m");
  auto limits = DestinationLimitsFromConfig(config);
  EXPECT_DOUBLE_EQ(limits["c"].rate_per_second, 1.0);
  EXPECT_DOUBLE_EQ(limits["c"].destination.rate_per_second, 2.0);
  ASSERT_EQ(limits["c"].overrides.count("slow.example"), 1u);
  EXPECT_DOUBLE_EQ(limits["c"].overrides["slow.example"].rate_per_second, 0.5);
}

}  // namespace
}  // namespace mailfarm::scheduler
