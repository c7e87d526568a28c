// destination_table.h: delivery work grouped by destination, (channel,
// nexthop or recipient domain), the way Postfix's qmgr and KumoMTA's ready
// queues do it: a ready queue per destination, round-robin selection across
// the destinations that may send now, a slow-start concurrency window, GCRA
// rate limits per destination and per channel, and dead-destination
// suspension. Used by the queue manager on the loop thread between
// DispatchDeliver and the transport farms.
#ifndef MAILFARM_SCHEDULER_DESTINATION_TABLE_H_
#define MAILFARM_SCHEDULER_DESTINATION_TABLE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config.pb.h"
#include "scheduler/gcra.h"
#include "wire.pb.h"

namespace mailfarm::scheduler {

// One channel's limits (ChannelConfig) and a destination's overrides
// (DestinationOverride) resolved into numbers.
struct DestinationLimits {
  uint32_t concurrency = 20;         // the window never grows past this
  uint32_t initial_concurrency = 5;  // slow start begins here
  double rate_per_second = 0;        // per destination; 0 = unlimited
  uint32_t rate_burst = 1;
  uint32_t dead_failures = 5;  // consecutive connection failures; 0 = never
  int64_t dead_backoff_ms = 300'000;
  int64_t dead_backoff_max_ms = 3'600'000;
  double dead_jitter = 0.25;  // suspension is backoff * (1 - jitter * u)
};

struct ChannelLimits {
  double rate_per_second = 0;  // the whole channel; 0 = unlimited
  uint32_t rate_burst = 1;
  DestinationLimits destination;
  // Per-destination overrides by destination name.
  std::unordered_map<std::string, DestinationLimits> overrides;
};

// Reads ChannelConfig and DestinationOverride for every channel of `config`.
std::unordered_map<std::string, ChannelLimits> DestinationLimitsFromConfig(
    const config::Config& config);

// A job's delivery group waiting for (or holding) a destination's slot: the
// compact id the table keeps instead of the job itself.
struct JobRef {
  uint64_t job_id = 0;
  uint32_t group = 0;
  bool operator==(const JobRef&) const = default;
};

// How a delivery attempt went, as far as the destination is concerned.
enum class DestinationFeedback {
  kAnswered,           // the destination took or refused mail: it is alive
  kNeutral,            // nothing learned (e.g. the child died, a local error)
  kConnectionFailure,  // no session could be made (Result.connection_failure)
};

// Not thread-safe: loop thread only. Times are monotonic milliseconds passed
// in by the caller (farm::Clock::MonotonicMs), so tests use a FakeClock.
// Memory: about 32 bytes per queued JobRef plus a hash entry per job, and
// about 200 bytes per destination; destinations with nothing queued, nothing
// in flight and no state worth keeping are forgotten. Failure state (the
// consecutive failure count, the doubled backoff) is worth keeping for
// dead_backoff_max_ms after the last failure or the end of a suspension,
// then it is forgotten too.
class DestinationTable {
 public:
  using DestId = uint32_t;

  // `unit` returns uniform numbers in [0, 1) for the suspension jitter
  // (tests pass a fixed one); empty: a seeded std::mt19937_64.
  explicit DestinationTable(std::function<double()> unit = nullptr);

  // Replaces the limits of every channel (on start and config reload).
  // Channels not named use default DestinationLimits. Existing destinations
  // take the new numbers at once; windows are clamped to the new limits.
  void Configure(std::unordered_map<std::string, ChannelLimits> limits,
                 int64_t now_ms);

  // The destination of a delivery group: the nexthop, or the recipient's
  // domain when the nexthop is empty (an MX lookup of that domain).
  static std::string DestinationOf(std::string_view nexthop,
                                   std::string_view recipient);
  // "<channel> <destination>": the key, and what a transport child reports
  // in Result.open_session.
  static std::string SessionKey(std::string_view channel,
                                std::string_view destination);

  struct Enqueued {
    bool queued = false;  // false: the destination is suspended
    int64_t suspended_until_ms = 0;
  };
  // Queues `ref` at the tail of its destination's ready queue, unless the
  // destination is suspended (then the caller defers the job without an
  // attempt). REQUIRES: `ref` is not queued already.
  Enqueued Enqueue(std::string_view channel, std::string_view destination,
                   JobRef ref, int64_t now_ms);

  struct Pick {
    JobRef ref;
    DestId dest = 0;  // give back to Complete(); valid until then
  };
  // The next job to send on `channel`: round robin over the channel's
  // destinations that have ready work, a free slot in their window and rate
  // to spare, so one flooded destination cannot delay another. Counts the
  // job in flight at its destination and takes from both rate limits.
  // Nothing when no destination of the channel may send now (see NextWakeMs).
  // O(1) amortized: only sendable destinations are in the channel's ring.
  std::optional<Pick> Next(std::string_view channel, int64_t now_ms);

  // The job from Next finished (any outcome). Adjusts the window (slow start:
  // +1 on kAnswered up to the limit, halved on kConnectionFailure, never
  // below 1) and the dead-destination count. When this failure suspends the
  // destination, its queued jobs are returned, removed from the table, for
  // the caller to defer together: none of them makes an attempt.
  std::vector<JobRef> Complete(DestId dest, DestinationFeedback feedback,
                               int64_t now_ms);

  // Drops every queued (not in flight) ref of the job; returns how many.
  size_t Cancel(uint64_t job_id, int64_t now_ms);

  // Ends the suspension of every destination named `destination` (any
  // channel; "" = all destinations) and resets its backoff: the operator's
  // flush. Returns how many were suspended.
  size_t Revive(std::string_view destination, int64_t now_ms);

  // Moves destinations whose rate wait or suspension ended back into their
  // channel's ring. Next() does this itself; the caller's timer calls it too.
  void Wake(int64_t now_ms);
  // The earliest time a waiting destination may send again, a suspension
  // ends or a channel's rate allows the next message, if any: the caller's
  // timer. Always later than now_ms: a channel that may send now is in
  // ReadyChannels(), not here (so a caller with no free connection does not
  // spin on a timer that is always due).
  std::optional<int64_t> NextWakeMs(int64_t now_ms) const;
  // Channels that have a destination ready to send (for the caller's pump).
  std::vector<std::string> ReadyChannels() const;

  // Introspection for stats, metrics and tests.
  struct DestinationInfo {
    std::string channel;
    std::string destination;
    uint32_t queued = 0;
    uint32_t in_flight = 0;
    uint32_t window = 0;
    uint32_t limit = 0;
    uint32_t failures = 0;           // consecutive connection failures
    int64_t suspended_until_ms = 0;  // 0: not suspended
  };
  std::optional<DestinationInfo> Info(std::string_view channel,
                                      std::string_view destination) const;
  size_t destinations() const { return by_key_.size(); }
  size_t suspended() const { return suspended_; }
  size_t queued() const { return queued_; }
  size_t in_flight() const { return in_flight_; }
  // Samples for `mailfarmctl stats` and /metrics: destination and suspended
  // counts per channel, queued and in flight totals per channel, and per
  // destination in flight / queued / window for at most `max_listed`
  // destinations that are busy or suspended (the busiest first).
  void FillStats(Stats* stats, size_t max_listed = 50) const;

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  struct Node {  // one JobRef in a destination's ready queue
    uint64_t job_id;
    uint32_t group;
    uint32_t dest;
    uint32_t prev, next;          // the destination's queue
    uint32_t job_prev, job_next;  // the job's other refs
  };
  struct Channel {
    std::string name;
    ChannelLimits limits;
    Gcra rate;
    uint32_t ring = kNil;  // cursor into the ring of sendable destinations
    uint32_t destinations = 0, suspended = 0;
  };
  struct Dest {
    bool live = false;
    uint16_t channel = 0;
    std::string key;     // SessionKey(channel, destination)
    size_t name_at = 0;  // destination name = key.substr(name_at)
    DestinationLimits limits;
    uint32_t head = kNil, tail = kNil, queued = 0;
    uint32_t in_flight = 0;
    uint32_t window = 1;
    uint32_t failures = 0;
    int64_t suspended_until = 0;
    int64_t next_backoff_ms = 0;  // 0: limits.dead_backoff_ms
    int64_t failure_at = 0;       // last failure or end of suspension
    Gcra rate;
    bool in_ring = false;
    uint32_t ring_prev = kNil, ring_next = kNil;
    int64_t timer_at = 0;  // 0: no entry in timers_
  };

  uint16_t ChannelIndex(std::string_view name);
  DestId FindOrAdd(uint16_t channel, std::string_view destination);
  void Settle(DestId d, int64_t now_ms);  // ring, timer or forget
  bool Sendable(const Dest& dest, int64_t now_ms, int64_t* wait_ms) const;
  void RingAdd(DestId d);
  void RingRemove(DestId d);
  void SetTimer(DestId d, int64_t at_ms);
  void ClearTimer(DestId d);
  void Unsuspend(DestId d);
  uint32_t PopNode(Dest& dest);
  void UnlinkFromJob(uint32_t node);
  void FreeNode(uint32_t node);
  void ApplyLimits(Dest& dest);
  void Forget(DestId d);

  std::vector<Channel> channels_;
  std::unordered_map<std::string, ChannelLimits> limits_;
  std::vector<Dest> dests_;
  std::vector<DestId> free_dests_;
  std::unordered_map<std::string, DestId> by_key_;
  std::vector<Node> nodes_;
  uint32_t free_nodes_ = kNil;
  std::unordered_map<uint64_t, uint32_t> job_nodes_;  // job -> first node
  std::set<std::pair<int64_t, DestId>> timers_;
  size_t suspended_ = 0, queued_ = 0, in_flight_ = 0;
  std::function<double()> unit_;
  std::mt19937_64 rng_;
  std::string key_buf_;  // FindOrAdd's lookup key
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_DESTINATION_TABLE_H_
