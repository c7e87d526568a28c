// destination_table_test.cc: the per-destination scheduler (scheduler/
// destination_table.h) on a fake clock: fairness between a flooded and a
// quiet destination, the concurrency window and slow start, GCRA rates per
// destination and per channel, dead-destination suspension and revival,
// Cancel, forgetting idle destinations, and limits read from the config.
#include "scheduler/destination_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

namespace mailfarm::scheduler {
namespace {

using Feedback = DestinationFeedback;
using LimitsMap = std::unordered_map<std::string, ChannelLimits>;

constexpr char kSmtp[] = "smtp";

DestinationLimits Dest(uint32_t concurrency, uint32_t initial) {
  DestinationLimits d;
  d.concurrency = concurrency;
  d.initial_concurrency = initial;
  d.dead_failures = 0;  // tests that want suspension set it
  return d;
}

LimitsMap One(const DestinationLimits& d, double channel_rate = 0,
              uint32_t channel_burst = 1) {
  LimitsMap m;
  m[kSmtp].destination = d;
  m[kSmtp].rate_per_second = channel_rate;
  m[kSmtp].rate_burst = channel_burst;
  return m;
}

DestinationTable FixedJitterTable(double u = 0.5) {
  return DestinationTable([u] { return u; });
}

void Fill(DestinationTable& t, std::string_view dest, uint64_t first,
          uint64_t count, int64_t now) {
  for (uint64_t i = 0; i < count; ++i) {
    ASSERT_TRUE(t.Enqueue(kSmtp, dest, {first + i, 0}, now).queued);
  }
}

DestinationTable::DestinationInfo InfoOf(const DestinationTable& t,
                                         std::string_view dest) {
  auto info = t.Info(kSmtp, dest);
  EXPECT_TRUE(info.has_value()) << dest;
  return info.value_or(DestinationTable::DestinationInfo{});
}

double SampleValue(const Stats& stats, std::string_view name,
                   const std::map<std::string, std::string>& labels) {
  for (const auto& s : stats.samples()) {
    if (s.name() != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels().find(k);
      if (it == s.labels().end() || it->second != v) match = false;
    }
    if (match) return s.value();
  }
  return -1;
}

TEST(DestinationTable, DestinationOfAndSessionKey) {
  EXPECT_EQ(DestinationTable::DestinationOf("[MX.Example]:2525", "u@x.org"),
            "[mx.example]:2525");
  EXPECT_EQ(DestinationTable::DestinationOf("", "User@Sub.Example.COM"),
            "sub.example.com");
  EXPECT_EQ(DestinationTable::DestinationOf("", "a@b@c.example"), "c.example");
  EXPECT_EQ(DestinationTable::DestinationOf("", "postmaster"), "");
  EXPECT_EQ(DestinationTable::SessionKey("smtp", "a.example"),
            "smtp a.example");
}

// Issue 10: a flood to one destination never delays another's mail.
TEST(DestinationTable, QuietDestinationIsNotStarvedByAFlood) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(20, 20)), 0);
  Fill(t, "flood.example", 1, 10'000, 0);
  Fill(t, "quiet.example", 1'000'001, 3, 0);
  ASSERT_EQ(t.queued(), 10'003u);
  std::vector<uint64_t> order;
  for (int i = 0; i < 20; ++i) {
    auto p = t.Next(kSmtp, 0);
    ASSERT_TRUE(p.has_value()) << i;
    order.push_back(p->ref.job_id);
    t.Complete(p->dest, Feedback::kAnswered, 0);
  }
  // Round robin: the quiet destination's k-th job is at most pick 2k+1,
  // although 10,000 flood jobs were queued before it.
  std::vector<size_t> quiet_at;
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] > 1'000'000) quiet_at.push_back(i);
  }
  ASSERT_EQ(quiet_at.size(), 3u);
  for (size_t k = 0; k < 3; ++k) EXPECT_LE(quiet_at[k], 2 * k + 1);
  // Each destination's own jobs stay in arrival order.
  uint64_t last_flood = 0, last_quiet = 1'000'000;
  for (uint64_t id : order) {
    uint64_t& last = id > 1'000'000 ? last_quiet : last_flood;
    EXPECT_EQ(id, last + 1);
    last = id;
  }
  EXPECT_EQ(t.queued(), 10'003u - 20);
}

TEST(DestinationTable, EveryQuietDestinationWithinTheFirstRound) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(20, 20)), 0);
  Fill(t, "flood.example", 1, 10'000, 0);
  for (uint64_t q = 0; q < 100; ++q) {
    Fill(t, "q" + std::to_string(q) + ".example", 1'000'000 + q, 1, 0);
  }
  std::set<uint64_t> quiet_seen;
  size_t flood_picks = 0;
  for (int i = 0; i < 101; ++i) {  // one round: one pick per destination
    auto p = t.Next(kSmtp, 0);
    ASSERT_TRUE(p.has_value());
    if (p->ref.job_id >= 1'000'000) {
      quiet_seen.insert(p->ref.job_id);
    } else {
      ++flood_picks;
    }
    t.Complete(p->dest, Feedback::kAnswered, 0);
  }
  EXPECT_EQ(quiet_seen.size(), 100u);
  EXPECT_EQ(flood_picks, 1u);
}

TEST(DestinationTable, LateQuietArrivalIsPickedAtOnceDuringAFlood) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(20, 20)), 0);
  Fill(t, "flood.example", 1, 10'000, 0);
  for (int i = 0; i < 5000; ++i) {
    auto p = t.Next(kSmtp, i);
    ASSERT_TRUE(p.has_value());
    t.Complete(p->dest, Feedback::kAnswered, i);
  }
  Fill(t, "quiet.example", 1'000'000, 1, 5000);
  bool seen = false;
  for (int i = 0; i < 2 && !seen; ++i) {
    auto p = t.Next(kSmtp, 5000);
    ASSERT_TRUE(p.has_value());
    seen = p->ref.job_id == 1'000'000;
    t.Complete(p->dest, Feedback::kAnswered, 5000);
  }
  EXPECT_TRUE(seen);
}

TEST(DestinationTable, SlowStartGrowsToTheLimitAndHalvesOnFailure) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(6, 3)), 0);
  Fill(t, "a.example", 1, 100, 0);
  std::vector<DestinationTable::Pick> out;
  auto drain = [&] {
    size_t n = 0;
    while (auto p = t.Next(kSmtp, 0)) {
      out.push_back(*p);
      ++n;
    }
    return n;
  };
  auto complete = [&](Feedback f) {
    ASSERT_FALSE(out.empty());
    t.Complete(out.front().dest, f, 0);
    out.erase(out.begin());
  };
  EXPECT_EQ(drain(), 3u);  // initial_concurrency
  EXPECT_EQ(InfoOf(t, "a.example").window, 3u);
  EXPECT_EQ(InfoOf(t, "a.example").limit, 6u);
  for (uint32_t want : {4u, 5u, 6u, 6u, 6u}) {
    complete(Feedback::kAnswered);
    drain();
    EXPECT_EQ(InfoOf(t, "a.example").window, want);
    EXPECT_EQ(InfoOf(t, "a.example").in_flight, want);
    EXPECT_EQ(t.in_flight(), want);
  }
  complete(Feedback::kNeutral);  // nothing learned: window unchanged
  EXPECT_EQ(InfoOf(t, "a.example").window, 6u);
  EXPECT_EQ(drain(), 1u);
  complete(Feedback::kConnectionFailure);
  EXPECT_EQ(InfoOf(t, "a.example").window, 3u);
  EXPECT_EQ(drain(), 0u);  // 5 in flight > window 3: nothing new
  complete(Feedback::kConnectionFailure);
  EXPECT_EQ(InfoOf(t, "a.example").window, 1u);
  complete(Feedback::kConnectionFailure);
  EXPECT_EQ(InfoOf(t, "a.example").window, 1u);  // never below 1
  while (!out.empty()) complete(Feedback::kConnectionFailure);
  EXPECT_EQ(InfoOf(t, "a.example").in_flight, 0u);
  EXPECT_EQ(InfoOf(t, "a.example").failures, 6u);  // dead_failures 0: never
  EXPECT_EQ(t.suspended(), 0u);
  EXPECT_EQ(drain(), 1u);  // window 1: one at a time
  complete(Feedback::kAnswered);
  EXPECT_EQ(InfoOf(t, "a.example").window, 2u);
  EXPECT_EQ(InfoOf(t, "a.example").failures, 0u);
}

// Random traffic: the count at the sink never passes the window, the window
// never passes the limit (per-destination override included), and Next()
// only says no when every destination with work is at its window.
TEST(DestinationTable, ConcurrencyWindowIsNeverExceeded) {
  LimitsMap limits = One(Dest(8, 2));
  limits[kSmtp].overrides["slow.example"] = Dest(3, 1);
  DestinationTable t = FixedJitterTable();
  t.Configure(limits, 0);
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back("d" + std::to_string(i));
  names.push_back("slow.example");
  std::map<uint64_t, std::string> dest_of;
  uint64_t id = 1;
  for (const auto& name : names) {
    for (int j = 0; j < 300; ++j, ++id) {
      dest_of[id] = name;
      ASSERT_TRUE(t.Enqueue(kSmtp, name, {id, 0}, 0).queued);
    }
  }
  std::mt19937 rng(12345);
  std::vector<DestinationTable::Pick> out;
  std::map<std::string, uint32_t> sink, max_sink;
  int64_t now = 0;
  size_t refusals = 0;
  for (int step = 0; step < 20'000; ++step) {
    ++now;
    bool complete = !out.empty() && rng() % 2 == 0;
    if (!complete) {
      auto p = t.Next(kSmtp, now);
      if (p) {
        const std::string& name = dest_of.at(p->ref.job_id);
        max_sink[name] = std::max(max_sink[name], ++sink[name]);
        out.push_back(*p);
      } else {
        ++refusals;
        for (const auto& name : names) {
          auto info = t.Info(kSmtp, name);
          if (info && info->queued > 0) {
            EXPECT_GE(info->in_flight, info->window) << name;
          }
        }
        complete = !out.empty();
      }
    }
    if (complete) {
      size_t k = rng() % out.size();
      uint32_t r = rng() % 100;
      Feedback f = r < 90   ? Feedback::kAnswered
                   : r < 95 ? Feedback::kConnectionFailure
                            : Feedback::kNeutral;
      --sink[dest_of.at(out[k].ref.job_id)];
      EXPECT_TRUE(t.Complete(out[k].dest, f, now).empty());
      out.erase(out.begin() + static_cast<ptrdiff_t>(k));
    }
    for (const auto& name : names) {
      auto info = t.Info(kSmtp, name);
      if (!info) {
        EXPECT_EQ(sink[name], 0u) << name;
        continue;
      }
      ASSERT_EQ(info->in_flight, sink[name]) << name << " step " << step;
      EXPECT_LE(info->window, info->limit) << name;
      EXPECT_GE(info->window, 1u) << name;
      EXPECT_EQ(info->limit, name == "slow.example" ? 3u : 8u) << name;
    }
  }
  EXPECT_GT(refusals, 0u);  // the windows were actually full at times
  EXPECT_EQ(max_sink["slow.example"], 3u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_LE(max_sink[names[i]], 8u);
    EXPECT_GE(max_sink[names[i]], 4u) << names[i];  // slow start grew it
  }
}

// Over `window_ms` of fake time stepping 1 ms, sends whatever Next() allows
// and completes it at once; returns the job ids in the order picked.
std::vector<uint64_t> RunFor(DestinationTable& t, int64_t from_ms,
                             int64_t window_ms) {
  std::vector<uint64_t> picked;
  for (int64_t now = from_ms; now < from_ms + window_ms; ++now) {
    while (auto p = t.Next(kSmtp, now)) {
      picked.push_back(p->ref.job_id);
      t.Complete(p->dest, Feedback::kAnswered, now);
    }
  }
  return picked;
}

TEST(DestinationTable, DestinationRateHeldWithinTenPercent) {
  for (uint32_t burst : {1u, 5u}) {
    DestinationLimits d = Dest(1000, 1000);
    d.rate_per_second = 10;
    d.rate_burst = burst;
    DestinationTable t = FixedJitterTable();
    t.Configure(One(d), 0);
    Fill(t, "a.example", 1, 2000, 0);
    auto picked = RunFor(t, 0, 60'000);
    double expected = 10 * 60 + burst;
    EXPECT_NEAR(static_cast<double>(picked.size()), expected, expected * 0.1)
        << "burst " << burst;
    EXPECT_EQ(t.queued() + picked.size(), 2000u);  // held back, not lost
    EXPECT_EQ(t.in_flight(), 0u);
  }
}

TEST(DestinationTable, RateHeldJobComesOutAtNextWakeMs) {
  DestinationLimits d = Dest(10, 10);
  d.rate_per_second = 10;  // one every 100 ms
  DestinationTable t = FixedJitterTable();
  t.Configure(One(d), 0);
  Fill(t, "a.example", 1, 50, 1000);
  auto p = t.Next(kSmtp, 1000);
  ASSERT_TRUE(p.has_value());
  t.Complete(p->dest, Feedback::kAnswered, 1000);
  EXPECT_FALSE(t.Next(kSmtp, 1000).has_value());  // held by the rate
  EXPECT_TRUE(t.ReadyChannels().empty());
  EXPECT_EQ(InfoOf(t, "a.example").queued, 49u);
  EXPECT_EQ(InfoOf(t, "a.example").in_flight, 0u);  // not an attempt
  EXPECT_EQ(t.NextWakeMs(1000), 1100);
  EXPECT_FALSE(t.Next(kSmtp, 1099).has_value());
  t.Wake(1100);
  EXPECT_EQ(t.ReadyChannels(), std::vector<std::string>{kSmtp});
  auto q = t.Next(kSmtp, 1100);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->ref.job_id, 2u);
  t.Complete(q->dest, Feedback::kAnswered, 1100);

  // Jumping from wake to wake drains everything, each job once, in order,
  // one every 100 ms.
  std::vector<uint64_t> ids{1, 2};
  int64_t now = 1100;
  while (auto wake = t.NextWakeMs(now)) {
    EXPECT_GT(*wake, now);
    now = *wake;
    while (auto r = t.Next(kSmtp, now)) {
      ids.push_back(r->ref.job_id);
      t.Complete(r->dest, Feedback::kAnswered, now);
    }
  }
  ASSERT_EQ(ids.size(), 50u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], i + 1);
  EXPECT_EQ(now, 1000 + 49 * 100 + 100);  // the last wake forgets it
  EXPECT_EQ(t.destinations(), 0u);
  EXPECT_EQ(t.queued(), 0u);
}

TEST(DestinationTable, ChannelRateHeldWithinTenPercentAndShared) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(100, 100), /*channel_rate=*/20, /*burst=*/1), 0);
  for (uint64_t i = 0; i < 50; ++i) {
    Fill(t, "d" + std::to_string(i), i * 1000, 100, 0);
  }
  auto picked = RunFor(t, 0, 60'000);
  double expected = 20 * 60 + 1;
  EXPECT_NEAR(static_cast<double>(picked.size()), expected, expected * 0.1);
  EXPECT_EQ(t.queued() + picked.size(), 5000u);
  std::map<uint64_t, int> per_dest;
  for (uint64_t id : picked) ++per_dest[id / 1000];
  ASSERT_EQ(per_dest.size(), 50u);
  for (const auto& [dest, n] : per_dest) {
    EXPECT_GE(n, 23) << dest;  // 1201 / 50, shared round robin
    EXPECT_LE(n, 26) << dest;
  }
  // Held by the channel's rate: the wake is the channel's next slot.
  EXPECT_FALSE(t.Next(kSmtp, 60'000).has_value() &&
               t.Next(kSmtp, 60'000).has_value());
  auto wake = t.NextWakeMs(60'000);
  ASSERT_TRUE(wake.has_value());
  EXPECT_GT(*wake, 60'000);
  EXPECT_LE(*wake, 60'050);
  EXPECT_TRUE(t.Next(kSmtp, *wake).has_value());
}

TEST(DestinationTable, ChannelAndDestinationRatesCombine) {
  DestinationLimits d = Dest(100, 100);
  d.rate_per_second = 2;
  DestinationTable t = FixedJitterTable();
  t.Configure(One(d, /*channel_rate=*/10), 0);
  for (uint64_t i = 0; i < 3; ++i) {
    Fill(t, "d" + std::to_string(i), i * 10'000, 1000, 0);
  }
  // Three destinations at 2/s each: 6/s, below the channel's 10/s.
  double expected = 6 * 60 + 3;
  auto picked = RunFor(t, 0, 60'000);
  EXPECT_NEAR(static_cast<double>(picked.size()), expected, expected * 0.1);
  // Ten destinations at 2/s each would be 20/s: the channel caps it at 10/s.
  for (uint64_t i = 3; i < 10; ++i) {
    Fill(t, "d" + std::to_string(i), i * 10'000, 1000, 60'000);
  }
  auto more = RunFor(t, 60'000, 60'000);
  EXPECT_NEAR(static_cast<double>(more.size()), 600, 60);
}

TEST(DestinationTable, NextWakeMsDoesNotSpinOnAReadyChannel) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(1, 1)), 0);
  EXPECT_FALSE(t.NextWakeMs(0).has_value());
  Fill(t, "a.example", 1, 2, 0);
  // Ready now (the caller may have no free connection): no timer due now.
  EXPECT_EQ(t.ReadyChannels(), std::vector<std::string>{kSmtp});
  EXPECT_FALSE(t.NextWakeMs(0).has_value());
  auto p = t.Next(kSmtp, 0);
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(t.ReadyChannels().empty());  // window full
  EXPECT_FALSE(t.NextWakeMs(0).has_value());
  t.Complete(p->dest, Feedback::kAnswered, 5);
  EXPECT_EQ(t.ReadyChannels(), std::vector<std::string>{kSmtp});
}

DestinationLimits DeadLimits() {
  DestinationLimits d = Dest(10, 5);
  d.dead_failures = 3;
  d.dead_backoff_ms = 10'000;
  d.dead_backoff_max_ms = 35'000;
  d.dead_jitter = 0.25;
  return d;
}

TEST(DestinationTable, DeadDestinationSuspendedProbedAndCleared) {
  DestinationTable t = FixedJitterTable(0.5);  // suspension = 0.875 x backoff
  t.Configure(One(DeadLimits()), 0);
  Fill(t, "other.example", 500, 3, 1000);
  Fill(t, "dead.example", 1, 10, 1000);
  std::vector<DestinationTable::Pick> dead_out;
  while (auto p = t.Next(kSmtp, 1000)) {
    if (p->ref.job_id < 500) {
      dead_out.push_back(*p);
    } else {
      t.Complete(p->dest, Feedback::kAnswered, 1000);
    }
  }
  ASSERT_EQ(dead_out.size(), 5u);  // the initial window
  EXPECT_TRUE(
      t.Complete(dead_out[0].dest, Feedback::kConnectionFailure, 1000).empty());
  EXPECT_TRUE(
      t.Complete(dead_out[1].dest, Feedback::kConnectionFailure, 1000).empty());
  EXPECT_EQ(t.suspended(), 0u);
  auto deferred =
      t.Complete(dead_out[2].dest, Feedback::kConnectionFailure, 1000);
  // The third consecutive failure: suspended, and the 5 jobs still queued
  // come back for deferral together, without an attempt each.
  std::vector<JobRef> want;
  for (uint64_t id = 6; id <= 10; ++id) want.push_back({id, 0});
  EXPECT_EQ(deferred, want);
  EXPECT_EQ(t.suspended(), 1u);
  EXPECT_EQ(t.queued(), 0u);
  EXPECT_EQ(InfoOf(t, "dead.example").suspended_until_ms, 1000 + 8750);
  EXPECT_EQ(InfoOf(t, "dead.example").queued, 0u);
  // The jobs still in flight fail too: nothing more, the end is not moved.
  EXPECT_TRUE(
      t.Complete(dead_out[3].dest, Feedback::kConnectionFailure, 2000).empty());
  EXPECT_TRUE(
      t.Complete(dead_out[4].dest, Feedback::kConnectionFailure, 2000).empty());
  EXPECT_EQ(InfoOf(t, "dead.example").suspended_until_ms, 9750);
  EXPECT_EQ(t.in_flight(), 0u);

  // While suspended: Enqueue refuses and says until when; nothing to send.
  auto e = t.Enqueue(kSmtp, "dead.example", {6, 0}, 5000);
  EXPECT_FALSE(e.queued);
  EXPECT_EQ(e.suspended_until_ms, 9750);
  EXPECT_FALSE(t.Next(kSmtp, 5000).has_value());
  EXPECT_TRUE(t.ReadyChannels().empty());
  EXPECT_EQ(t.NextWakeMs(5000), 9750);
  EXPECT_FALSE(t.Enqueue(kSmtp, "dead.example", {6, 0}, 9749).queued);
  Stats stats;
  t.FillStats(&stats);
  EXPECT_EQ(SampleValue(stats, "mailfarm_destinations_suspended",
                        {{"channel", kSmtp}}),
            1);
  EXPECT_EQ(SampleValue(stats, "mailfarm_destination_suspended",
                        {{"destination", "dead.example"}}),
            1);

  // The suspension ends: one probe (window 1). Its failure suspends again
  // for twice as long, then up to the maximum.
  int64_t now = 9750;
  uint64_t id = 6;
  for (int64_t length : {17'500, 30'625, 30'625}) {  // 0.875 x 20 s, 35 s, 35 s
    ASSERT_TRUE(t.Enqueue(kSmtp, "dead.example", {id, 0}, now).queued);
    ASSERT_TRUE(t.Enqueue(kSmtp, "dead.example", {id + 1, 0}, now).queued);
    EXPECT_EQ(t.suspended(), 0u);
    EXPECT_EQ(InfoOf(t, "dead.example").window, 1u);
    auto probe = t.Next(kSmtp, now);
    ASSERT_TRUE(probe.has_value());
    EXPECT_EQ(probe->ref.job_id, id);
    EXPECT_FALSE(t.Next(kSmtp, now).has_value());  // only the probe
    auto again = t.Complete(probe->dest, Feedback::kConnectionFailure, now);
    EXPECT_EQ(again, (std::vector<JobRef>{{id + 1, 0}}));
    EXPECT_EQ(InfoOf(t, "dead.example").suspended_until_ms, now + length);
    EXPECT_EQ(t.NextWakeMs(now), now + length);
    now += length;
    id += 2;
  }
  // A probe that is answered clears everything.
  Fill(t, "dead.example", 100, 10, now);
  auto probe = t.Next(kSmtp, now);
  ASSERT_TRUE(probe.has_value());
  EXPECT_TRUE(t.Complete(probe->dest, Feedback::kAnswered, now).empty());
  auto info = InfoOf(t, "dead.example");
  EXPECT_EQ(info.failures, 0u);
  EXPECT_EQ(info.suspended_until_ms, 0);
  EXPECT_EQ(info.window, 2u);
  EXPECT_EQ(t.suspended(), 0u);
  stats.Clear();
  t.FillStats(&stats);
  EXPECT_EQ(SampleValue(stats, "mailfarm_destinations_suspended",
                        {{"channel", kSmtp}}),
            0);
  // The backoff starts over: three new failures, the first length again.
  std::vector<DestinationTable::Pick> out;
  while (auto p = t.Next(kSmtp, now)) out.push_back(*p);
  ASSERT_EQ(out.size(), 2u);
  t.Complete(out[0].dest, Feedback::kConnectionFailure, now);
  t.Complete(out[1].dest, Feedback::kConnectionFailure, now);
  EXPECT_EQ(t.suspended(), 0u);
  out.clear();
  while (auto p = t.Next(kSmtp, now)) out.push_back(*p);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(
      t.Complete(out[0].dest, Feedback::kConnectionFailure, now).empty());
  EXPECT_EQ(InfoOf(t, "dead.example").suspended_until_ms, now + 8750);
  // The other destination never noticed.
  EXPECT_FALSE(t.Info(kSmtp, "other.example").has_value());  // done, freed
}

TEST(DestinationTable, SuspensionLengthIsJitteredWithinBounds) {
  auto length_with = [](std::function<double()> unit) {
    DestinationTable t(std::move(unit));
    DestinationLimits d = DeadLimits();
    d.dead_failures = 1;
    t.Configure(One(d), 0);
    Fill(t, "a.example", 1, 1, 0);
    auto p = t.Next(kSmtp, 0);
    t.Complete(p->dest, Feedback::kConnectionFailure, 0);
    return InfoOf(t, "a.example").suspended_until_ms;
  };
  EXPECT_EQ(length_with([] { return 0.0; }), 10'000);
  EXPECT_EQ(length_with([] { return 0.999999; }), 7500);
  std::set<int64_t> seen;
  for (int i = 0; i < 50; ++i) {
    int64_t len = length_with(nullptr);  // the table's own generator
    EXPECT_GE(len, 7500);
    EXPECT_LE(len, 10'000);
    seen.insert(len);
  }
  EXPECT_GT(seen.size(), 10u);  // actually jittered
}

TEST(DestinationTable, SuccessInFlightEndsASuspension) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(DeadLimits()), 0);
  Fill(t, "a.example", 1, 8, 0);
  std::vector<DestinationTable::Pick> out;
  while (auto p = t.Next(kSmtp, 0)) out.push_back(*p);
  ASSERT_EQ(out.size(), 5u);
  for (int i = 0; i < 3; ++i)
    t.Complete(out[i].dest, Feedback::kConnectionFailure, 0);
  EXPECT_EQ(t.suspended(), 1u);
  t.Complete(out[3].dest, Feedback::kAnswered, 10);  // it was alive after all
  EXPECT_EQ(t.suspended(), 0u);
  EXPECT_EQ(InfoOf(t, "a.example").suspended_until_ms, 0);
  EXPECT_TRUE(t.Enqueue(kSmtp, "a.example", {6, 0}, 10).queued);
  EXPECT_TRUE(t.Next(kSmtp, 10).has_value());
}

TEST(DestinationTable, ReviveByNameAndAll) {
  LimitsMap limits = One(DeadLimits());
  limits["relay"].destination = DeadLimits();
  DestinationTable t = FixedJitterTable();
  t.Configure(limits, 0);
  auto kill = [&](std::string_view channel, std::string_view dest) {
    for (uint64_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(t.Enqueue(channel, dest, {i + 1, 0}, 0).queued);
      auto p = t.Next(channel, 0);
      ASSERT_TRUE(p.has_value());
      t.Complete(p->dest, Feedback::kConnectionFailure, 0);
    }
    ASSERT_NE(t.Info(channel, dest)->suspended_until_ms, 0) << dest;
  };
  kill(kSmtp, "a.example");
  kill("relay", "a.example");
  kill(kSmtp, "b.example");
  kill(kSmtp, "c.example");
  EXPECT_EQ(t.suspended(), 4u);
  EXPECT_EQ(t.Revive("nobody.example", 100), 0u);
  EXPECT_EQ(t.Revive("A.Example", 100), 2u);  // both channels, any case
  EXPECT_EQ(t.suspended(), 2u);
  EXPECT_TRUE(t.Enqueue(kSmtp, "a.example", {10, 0}, 100).queued);
  EXPECT_TRUE(t.Enqueue("relay", "a.example", {11, 0}, 100).queued);
  EXPECT_FALSE(t.Enqueue(kSmtp, "b.example", {12, 0}, 100).queued);
  auto info = InfoOf(t, "a.example");
  EXPECT_EQ(info.failures, 0u);
  EXPECT_EQ(info.window, 5u);  // back to initial_concurrency, not a probe
  EXPECT_EQ(t.Revive("", 100), 2u);
  EXPECT_EQ(t.suspended(), 0u);
  EXPECT_TRUE(t.Enqueue(kSmtp, "b.example", {12, 0}, 100).queued);
  EXPECT_TRUE(t.Enqueue(kSmtp, "c.example", {13, 0}, 100).queued);
  EXPECT_EQ(t.Revive("", 100), 0u);
  // Revived means fresh: it takes dead_failures new failures to suspend.
  for (int i = 0; i < 2; ++i) {
    auto p = t.Next(kSmtp, 200);
    ASSERT_TRUE(p.has_value());
    t.Complete(p->dest, Feedback::kConnectionFailure, 200);
  }
  EXPECT_EQ(t.suspended(), 0u);
}

TEST(DestinationTable, CancelRemovesEveryQueuedRefOfAJob) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(1, 1)), 0);
  ASSERT_TRUE(t.Enqueue(kSmtp, "a.example", {1, 0}, 0).queued);
  ASSERT_TRUE(t.Enqueue(kSmtp, "a.example", {7, 0}, 0).queued);
  ASSERT_TRUE(t.Enqueue(kSmtp, "b.example", {7, 1}, 0).queued);
  ASSERT_TRUE(t.Enqueue(kSmtp, "a.example", {2, 0}, 0).queued);
  ASSERT_TRUE(t.Enqueue(kSmtp, "c.example", {7, 2}, 0).queued);
  ASSERT_TRUE(t.Enqueue(kSmtp, "a.example", {7, 3}, 0).queued);
  ASSERT_TRUE(t.Enqueue("relay", "d.example", {7, 4}, 0).queued);
  ASSERT_EQ(t.queued(), 7u);
  EXPECT_EQ(t.Cancel(99, 0), 0u);
  EXPECT_EQ(t.Cancel(7, 0), 5u);
  EXPECT_EQ(t.Cancel(7, 0), 0u);
  EXPECT_EQ(t.queued(), 2u);
  // Destinations left with nothing are forgotten.
  EXPECT_FALSE(t.Info(kSmtp, "b.example").has_value());
  EXPECT_FALSE(t.Info(kSmtp, "c.example").has_value());
  EXPECT_FALSE(t.Info("relay", "d.example").has_value());
  EXPECT_EQ(t.destinations(), 1u);
  std::vector<uint64_t> ids;
  while (auto p = t.Next(kSmtp, 0)) {
    ids.push_back(p->ref.job_id);
    t.Complete(p->dest, Feedback::kAnswered, 0);
  }
  EXPECT_EQ(ids, (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(t.Next("relay", 0).has_value());
  EXPECT_EQ(t.destinations(), 0u);
}

TEST(DestinationTable, CancelLeavesInFlightRefsAndOtherJobsIntact) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(5, 5)), 0);
  // Job 1 has a group in flight and one queued behind a full window.
  ASSERT_TRUE(t.Enqueue(kSmtp, "a.example", {1, 0}, 0).queued);
  auto p = t.Next(kSmtp, 0);
  ASSERT_TRUE(p.has_value());
  for (uint64_t j = 2; j <= 200; ++j) {
    ASSERT_TRUE(
        t.Enqueue(kSmtp, "d" + std::to_string(j % 7), {j, 0}, 0).queued);
  }
  ASSERT_TRUE(t.Enqueue(kSmtp, "a.example", {1, 1}, 0).queued);
  EXPECT_EQ(t.Cancel(1, 0), 1u);
  EXPECT_EQ(InfoOf(t, "a.example").in_flight, 1u);
  EXPECT_EQ(InfoOf(t, "a.example").queued, 0u);
  t.Complete(p->dest, Feedback::kAnswered, 0);
  std::set<uint64_t> rest;
  while (auto q = t.Next(kSmtp, 0)) {
    EXPECT_TRUE(rest.insert(q->ref.job_id).second);
    t.Complete(q->dest, Feedback::kAnswered, 0);
  }
  EXPECT_EQ(rest.size(), 199u);
  EXPECT_EQ(rest.count(1), 0u);
  EXPECT_EQ(t.destinations(), 0u);
}

// A job with many delivery groups (one per recipient domain) pops and
// cancels its refs correctly whatever the order.
TEST(DestinationTable, JobWithManyGroups) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(100, 100)), 0);
  for (uint32_t g = 0; g < 1000; ++g) {
    ASSERT_TRUE(
        t.Enqueue(kSmtp, "d" + std::to_string(g % 300), {42, g}, 0).queued);
    ASSERT_TRUE(
        t.Enqueue(kSmtp, "d" + std::to_string(g % 300), {43, g}, 0).queued);
  }
  std::set<uint32_t> groups;
  for (int i = 0; i < 700; ++i) {
    auto p = t.Next(kSmtp, 0);
    ASSERT_TRUE(p.has_value());
    if (p->ref.job_id == 42) {
      EXPECT_TRUE(groups.insert(p->ref.group).second);
    }
    t.Complete(p->dest, Feedback::kAnswered, 0);
  }
  size_t left42 = 1000 - groups.size();
  EXPECT_EQ(t.Cancel(42, 0), left42);
  EXPECT_EQ(t.queued(), 2000u - 700 - left42);
  size_t n43 = 0;
  while (auto p = t.Next(kSmtp, 0)) {
    EXPECT_EQ(p->ref.job_id, 43u);
    ++n43;
    t.Complete(p->dest, Feedback::kAnswered, 0);
  }
  EXPECT_EQ(n43 + (700 - groups.size()), 1000u);
  EXPECT_EQ(t.destinations(), 0u);
}

TEST(DestinationTable, IdleDestinationsAreForgotten) {
  DestinationTable t = FixedJitterTable();
  DestinationLimits d = Dest(4, 4);
  d.rate_per_second = 1;
  t.Configure(One(d), 0);
  for (int i = 0; i < 1000; ++i) {
    Fill(t, "d" + std::to_string(i), static_cast<uint64_t>(i) * 10, 1, 0);
  }
  EXPECT_EQ(t.destinations(), 1000u);
  while (auto p = t.Next(kSmtp, 0)) t.Complete(p->dest, Feedback::kAnswered, 0);
  // Each still owes its rate (1/s) until t = 1000 ms: kept until then.
  EXPECT_EQ(t.destinations(), 1000u);
  EXPECT_EQ(t.NextWakeMs(0), 1000);
  t.Wake(1000);
  EXPECT_EQ(t.destinations(), 0u);
  EXPECT_FALSE(t.NextWakeMs(1000).has_value());
}

// Failure state is kept a while (so the backoff can double), then freed: a
// destination that failed once and never came back does not stay forever.
TEST(DestinationTable, FailureStateExpires) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(DeadLimits()), 0);  // backoff max 35 s
  Fill(t, "a.example", 1, 1, 0);
  auto p = t.Next(kSmtp, 0);
  t.Complete(p->dest, Feedback::kConnectionFailure, 0);
  EXPECT_EQ(t.destinations(), 1u);
  EXPECT_EQ(InfoOf(t, "a.example").failures, 1u);
  EXPECT_EQ(t.NextWakeMs(0), 35'000);
  t.Wake(34'999);
  EXPECT_EQ(t.destinations(), 1u);
  t.Wake(35'000);
  EXPECT_EQ(t.destinations(), 0u);
}

// With dead_failures = 1 the destination has no failure count left at the
// end of a suspension; the doubled backoff must still be remembered.
TEST(DestinationTable, BackoffDoublesWithOneFailureToSuspend) {
  DestinationTable t = FixedJitterTable(0.0);  // no jitter: exact lengths
  DestinationLimits d = DeadLimits();
  d.dead_failures = 1;
  t.Configure(One(d), 0);
  int64_t now = 0;
  for (int64_t length : {10'000, 20'000, 35'000}) {
    Fill(t, "a.example", 1, 1, now);
    auto p = t.Next(kSmtp, now);
    ASSERT_TRUE(p.has_value());
    t.Complete(p->dest, Feedback::kConnectionFailure, now);
    EXPECT_EQ(InfoOf(t, "a.example").suspended_until_ms, now + length);
    now += length;
    t.Wake(now);  // the suspension ends with nothing queued
    EXPECT_EQ(t.suspended(), 0u);
  }
}

TEST(DestinationTable, ReadyChannelsAndTwoChannelsIndependent) {
  LimitsMap limits = One(Dest(1, 1));
  limits["local"].destination = Dest(2, 2);
  DestinationTable t = FixedJitterTable();
  t.Configure(limits, 0);
  EXPECT_TRUE(t.ReadyChannels().empty());
  Fill(t, "a.example", 1, 3, 0);
  ASSERT_TRUE(t.Enqueue("local", "a.example", {10, 0}, 0).queued);
  auto ready = t.ReadyChannels();
  std::sort(ready.begin(), ready.end());
  EXPECT_EQ(ready, (std::vector<std::string>{"local", kSmtp}));
  EXPECT_EQ(t.destinations(), 2u);  // same name, two channels
  auto p = t.Next(kSmtp, 0);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(t.ReadyChannels(), std::vector<std::string>{"local"});
  auto q = t.Next("local", 0);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->ref.job_id, 10u);
  EXPECT_FALSE(t.Next("nosuch", 0).has_value());
  EXPECT_EQ(t.Info("local", "a.example")->limit, 2u);
  EXPECT_EQ(InfoOf(t, "a.example").limit, 1u);
}

TEST(DestinationTable, CompleteWithoutAPickIsIgnored) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(2, 2)), 0);
  EXPECT_TRUE(t.Complete(12345, Feedback::kConnectionFailure, 0).empty());
  Fill(t, "a.example", 1, 2, 0);
  auto p = t.Next(kSmtp, 0);
  ASSERT_TRUE(p.has_value());
  t.Complete(p->dest, Feedback::kAnswered, 0);
  t.Complete(p->dest, Feedback::kAnswered, 0);  // twice: no underflow
  EXPECT_EQ(t.in_flight(), 0u);
  EXPECT_EQ(InfoOf(t, "a.example").in_flight, 0u);
  EXPECT_EQ(InfoOf(t, "a.example").queued, 1u);
}

TEST(DestinationTable, ReconfigureClampsWindowsAndAppliesOverrides) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(10, 10)), 0);
  Fill(t, "a.example", 1, 100, 0);
  Fill(t, "b.example", 1000, 100, 0);
  EXPECT_EQ(InfoOf(t, "a.example").window, 10u);
  LimitsMap limits = One(Dest(4, 2));
  limits[kSmtp].overrides["b.example"] = Dest(1, 1);
  t.Configure(limits, 0);
  EXPECT_EQ(InfoOf(t, "a.example").window, 4u);
  EXPECT_EQ(InfoOf(t, "a.example").limit, 4u);
  EXPECT_EQ(InfoOf(t, "b.example").window, 1u);
  std::map<uint64_t, int> per;
  while (auto p = t.Next(kSmtp, 0)) ++per[p->ref.job_id / 1000];
  EXPECT_EQ(per[0], 4);
  EXPECT_EQ(per[1], 1);
  // A channel the new config does not name gets the defaults.
  t.Configure({}, 0);
  EXPECT_EQ(InfoOf(t, "a.example").limit, DestinationLimits().concurrency);
}

TEST(DestinationTable, FillStatsCountsPerChannelAndListsTheBusiest) {
  DestinationTable t = FixedJitterTable();
  t.Configure(One(Dest(20, 20)), 0);
  for (int i = 0; i < 60; ++i) {
    Fill(t, "d" + std::to_string(i), static_cast<uint64_t>(i) * 100,
         static_cast<uint64_t>(i % 5) + 2, 0);
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(t.Next(kSmtp, 0).has_value());
  Stats stats;
  t.FillStats(&stats, 2);
  EXPECT_EQ(SampleValue(stats, "mailfarm_destinations", {{"channel", kSmtp}}),
            60);
  EXPECT_EQ(SampleValue(stats, "mailfarm_destination_in_flight_jobs",
                        {{"channel", kSmtp}}),
            3);
  EXPECT_EQ(SampleValue(stats, "mailfarm_destination_queued_jobs",
                        {{"channel", kSmtp}}),
            static_cast<double>(t.queued()));
  int listed = 0;
  for (const auto& s : stats.samples()) {
    if (s.name() == "mailfarm_destination_in_flight") {
      ++listed;
      EXPECT_EQ(s.value(), 1);
    }
  }
  EXPECT_EQ(listed, 2);  // max_listed
}

TEST(DestinationTable, LimitsFromConfig) {
  config::Config c;
  auto* smtp = c.add_channel();
  smtp->set_name("smtp");
  smtp->set_destination_concurrency(30);
  smtp->set_initial_destination_concurrency(4);
  smtp->set_rate_per_second(50);
  smtp->set_destination_rate_per_second(2.5);
  smtp->set_rate_burst(3);
  smtp->set_dead_destination_failures(7);
  smtp->set_dead_destination_backoff_s(60);
  smtp->set_dead_destination_backoff_max_s(600);
  auto* local = c.add_channel();
  local->set_name("local");  // every key at its default
  auto* odd = c.add_channel();
  odd->set_name("odd");
  odd->set_destination_concurrency(0);  // at least 1
  odd->set_initial_destination_concurrency(9);
  odd->set_dead_destination_backoff_s(100);
  odd->set_dead_destination_backoff_max_s(10);  // max below min: min wins
  odd->set_rate_burst(0);
  auto* big = c.add_destination();
  big->set_channel("smtp");
  big->set_destination("Big.Example");
  big->set_concurrency(100);
  big->set_rate_per_second(0);
  auto* tiny = c.add_destination();  // no channel: every channel
  tiny->set_destination("tiny.example");
  tiny->set_concurrency(2);
  auto* warm = c.add_destination();
  warm->set_channel("smtp");
  warm->set_destination("warm.example");
  warm->set_initial_concurrency(12);

  auto m = DestinationLimitsFromConfig(c);
  ASSERT_EQ(m.size(), 3u);
  const ChannelLimits& s = m.at("smtp");
  EXPECT_EQ(s.rate_per_second, 50);
  EXPECT_EQ(s.rate_burst, 3u);
  EXPECT_EQ(s.destination.concurrency, 30u);
  EXPECT_EQ(s.destination.initial_concurrency, 4u);
  EXPECT_EQ(s.destination.rate_per_second, 2.5);
  EXPECT_EQ(s.destination.rate_burst, 3u);
  EXPECT_EQ(s.destination.dead_failures, 7u);
  EXPECT_EQ(s.destination.dead_backoff_ms, 60'000);
  EXPECT_EQ(s.destination.dead_backoff_max_ms, 600'000);
  ASSERT_EQ(s.overrides.size(), 3u);
  EXPECT_EQ(s.overrides.at("big.example").concurrency, 100u);
  EXPECT_EQ(s.overrides.at("big.example").initial_concurrency, 4u);
  EXPECT_EQ(s.overrides.at("big.example").rate_per_second, 0);
  EXPECT_EQ(s.overrides.at("big.example").dead_failures, 7u);
  EXPECT_EQ(s.overrides.at("tiny.example").concurrency, 2u);
  EXPECT_EQ(s.overrides.at("tiny.example").initial_concurrency, 2u);
  EXPECT_EQ(s.overrides.at("tiny.example").rate_per_second, 2.5);
  EXPECT_EQ(s.overrides.at("warm.example").initial_concurrency, 12u);
  EXPECT_EQ(s.overrides.at("warm.example").concurrency, 30u);

  const ChannelLimits& l = m.at("local");
  EXPECT_EQ(l.rate_per_second, 0);
  EXPECT_EQ(l.rate_burst, 1u);
  EXPECT_EQ(l.destination.concurrency, 20u);
  EXPECT_EQ(l.destination.initial_concurrency, 5u);
  EXPECT_EQ(l.destination.dead_failures, 5u);
  EXPECT_EQ(l.destination.dead_backoff_ms, 300'000);
  EXPECT_EQ(l.destination.dead_backoff_max_ms, 3'600'000);
  EXPECT_EQ(l.destination.rate_per_second, 0);
  ASSERT_EQ(l.overrides.size(), 1u);  // only the channel-less override
  EXPECT_EQ(l.overrides.at("tiny.example").concurrency, 2u);

  const ChannelLimits& o = m.at("odd");
  EXPECT_EQ(o.destination.concurrency, 1u);
  EXPECT_EQ(o.destination.initial_concurrency, 1u);
  EXPECT_EQ(o.destination.dead_backoff_max_ms, 100'000);
  EXPECT_EQ(o.rate_burst, 1u);

  // The table applies them: override, default and initial window.
  DestinationTable t = FixedJitterTable();
  t.Configure(m, 0);
  Fill(t, "big.example", 1, 1, 0);
  Fill(t, "tiny.example", 10, 1, 0);
  Fill(t, "plain.example", 20, 1, 0);
  ASSERT_TRUE(t.Enqueue("local", "tiny.example", {30, 0}, 0).queued);
  EXPECT_EQ(InfoOf(t, "big.example").limit, 100u);
  EXPECT_EQ(InfoOf(t, "big.example").window, 4u);
  EXPECT_EQ(InfoOf(t, "tiny.example").limit, 2u);
  EXPECT_EQ(InfoOf(t, "plain.example").limit, 30u);
  EXPECT_EQ(t.Info("local", "tiny.example")->limit, 2u);
}

}  // namespace
}  // namespace mailfarm::scheduler
