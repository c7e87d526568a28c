// destination_table.cc: per-destination ready queues, round robin, slow
// start, rate limits and dead-destination suspension (see the header).
//
// Invariant kept by Settle(): a destination is in its channel's ring exactly
// when it could send now (not suspended, work queued, a free slot in its
// window, no rate wait); one that waits for its rate or the end of a
// suspension has a timer entry instead. Next() therefore never scans.
#include "scheduler/destination_table.h"

#include <algorithm>
#include <cmath>

#include "farm/ascii.h"
#include "farm/config.h"

namespace mailfarm::scheduler {

namespace {

uint32_t Clamp(uint32_t value, uint32_t lo, uint32_t hi) {
  return std::max(lo, std::min(value, hi));
}

DestinationLimits ChannelDefaults(const config::ChannelConfig& ch) {
  DestinationLimits d;
  d.concurrency = std::max<uint32_t>(1, ch.destination_concurrency());
  d.initial_concurrency =
      Clamp(ch.initial_destination_concurrency(), 1, d.concurrency);
  d.rate_per_second = ch.destination_rate_per_second();
  // The "N/s|m|h" form wins; LoadConfig has checked it.
  if (auto rate = farm::ParseRate(ch.destination_rate());
      !ch.destination_rate().empty() && rate.ok())
    d.rate_per_second = *rate;
  d.rate_burst = std::max<uint32_t>(1, ch.rate_burst());
  d.dead_failures = ch.dead_destination_failures();
  d.dead_backoff_ms = int64_t{ch.dead_destination_backoff_s()} * 1000;
  d.dead_backoff_max_ms = std::max(
      d.dead_backoff_ms, int64_t{ch.dead_destination_backoff_max_s()} * 1000);
  return d;
}

}  // namespace

std::unordered_map<std::string, ChannelLimits> DestinationLimitsFromConfig(
    const config::Config& config) {
  std::unordered_map<std::string, ChannelLimits> out;
  for (const auto& ch : config.channel()) {
    ChannelLimits& c = out[ch.name()];
    c.rate_per_second = ch.rate_per_second();
    if (auto rate = farm::ParseRate(ch.rate()); !ch.rate().empty() && rate.ok())
      c.rate_per_second = *rate;
    c.rate_burst = std::max<uint32_t>(1, ch.rate_burst());
    c.destination = ChannelDefaults(ch);
  }
  for (const auto& o : config.destination()) {
    for (auto& [name, c] : out) {
      if (o.has_channel() && !o.channel().empty() && o.channel() != name)
        continue;
      DestinationLimits d = c.destination;
      if (o.has_concurrency())
        d.concurrency = std::max<uint32_t>(1, o.concurrency());
      if (o.has_initial_concurrency())
        d.initial_concurrency = o.initial_concurrency();
      d.initial_concurrency = Clamp(d.initial_concurrency, 1, d.concurrency);
      if (o.has_rate_per_second()) d.rate_per_second = o.rate_per_second();
      if (auto rate = farm::ParseRate(o.rate()); o.has_rate() && rate.ok())
        d.rate_per_second = *rate;
      c.overrides[farm::AsciiLower(o.destination())] = d;
    }
  }
  return out;
}

DestinationTable::DestinationTable(std::function<double()> unit)
    : unit_(std::move(unit)), rng_(std::random_device{}()) {}

std::string DestinationTable::DestinationOf(std::string_view nexthop,
                                            std::string_view recipient) {
  if (!nexthop.empty()) return farm::AsciiLower(nexthop);
  size_t at = recipient.rfind('@');
  return at == std::string_view::npos
             ? std::string()
             : farm::AsciiLower(recipient.substr(at + 1));
}

std::string DestinationTable::SessionKey(std::string_view channel,
                                         std::string_view destination) {
  std::string key;
  key.reserve(channel.size() + 1 + destination.size());
  key.append(channel).append(" ").append(destination);
  return key;
}

void DestinationTable::Configure(
    std::unordered_map<std::string, ChannelLimits> limits, int64_t now_ms) {
  limits_ = std::move(limits);
  for (Channel& ch : channels_) {
    auto it = limits_.find(ch.name);
    ch.limits = it == limits_.end() ? ChannelLimits() : it->second;
    ch.rate.Configure(ch.limits.rate_per_second, ch.limits.rate_burst);
  }
  for (DestId d = 0; d < dests_.size(); ++d) {
    if (!dests_[d].live) continue;
    ApplyLimits(dests_[d]);
    Settle(d, now_ms);
  }
}

uint16_t DestinationTable::ChannelIndex(std::string_view name) {
  for (size_t i = 0; i < channels_.size(); ++i) {
    if (channels_[i].name == name) return static_cast<uint16_t>(i);
  }
  Channel ch;
  ch.name = std::string(name);
  auto it = limits_.find(ch.name);
  if (it != limits_.end()) ch.limits = it->second;
  ch.rate.Configure(ch.limits.rate_per_second, ch.limits.rate_burst);
  channels_.push_back(std::move(ch));
  return static_cast<uint16_t>(channels_.size() - 1);
}

void DestinationTable::ApplyLimits(Dest& dest) {
  const ChannelLimits& cl = channels_[dest.channel].limits;
  auto it = cl.overrides.find(dest.key.substr(dest.name_at));
  dest.limits = it == cl.overrides.end() ? cl.destination : it->second;
  dest.limits.concurrency = std::max<uint32_t>(1, dest.limits.concurrency);
  dest.rate.Configure(dest.limits.rate_per_second, dest.limits.rate_burst);
  dest.window = Clamp(dest.window, 1, dest.limits.concurrency);
}

DestinationTable::DestId DestinationTable::FindOrAdd(
    uint16_t channel, std::string_view destination) {
  // The lookup reuses one buffer: a string per Enqueue only when new.
  key_buf_.assign(channels_[channel].name).append(" ").append(destination);
  if (auto it = by_key_.find(key_buf_); it != by_key_.end()) return it->second;
  std::string key = key_buf_;
  DestId d;
  if (!free_dests_.empty()) {
    d = free_dests_.back();
    free_dests_.pop_back();
    dests_[d] = Dest();
  } else {
    d = static_cast<DestId>(dests_.size());
    dests_.emplace_back();
  }
  Dest& dest = dests_[d];
  dest.live = true;
  dest.channel = channel;
  dest.name_at = channels_[channel].name.size() + 1;
  dest.key = key;
  ApplyLimits(dest);
  dest.window =
      Clamp(dest.limits.initial_concurrency, 1, dest.limits.concurrency);
  ++channels_[channel].destinations;
  by_key_.emplace(std::move(key), d);
  return d;
}

void DestinationTable::Forget(DestId d) {
  Dest& dest = dests_[d];
  RingRemove(d);
  ClearTimer(d);
  --channels_[dest.channel].destinations;
  by_key_.erase(dest.key);
  dest = Dest();
  free_dests_.push_back(d);
}

DestinationTable::Enqueued DestinationTable::Enqueue(
    std::string_view channel, std::string_view destination, JobRef ref,
    int64_t now_ms) {
  Wake(now_ms);
  DestId d = FindOrAdd(ChannelIndex(channel), destination);
  Dest& dest = dests_[d];
  if (dest.suspended_until != 0) return {false, dest.suspended_until};
  uint32_t n;
  if (free_nodes_ != kNil) {
    n = free_nodes_;
    free_nodes_ = nodes_[n].next;
  } else {
    n = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  Node& node = nodes_[n];
  node.job_id = ref.job_id;
  node.group = ref.group;
  node.dest = d;
  node.prev = dest.tail;
  node.next = kNil;
  auto [it, fresh] = job_nodes_.try_emplace(ref.job_id, n);
  node.job_prev = kNil;
  node.job_next = fresh ? kNil : it->second;
  if (!fresh) nodes_[it->second].job_prev = n;
  it->second = n;
  if (dest.tail != kNil) {
    nodes_[dest.tail].next = n;
  } else {
    dest.head = n;
  }
  dest.tail = n;
  ++dest.queued;
  ++queued_;
  Settle(d, now_ms);
  return {true, 0};
}

std::optional<DestinationTable::Pick> DestinationTable::Next(
    std::string_view channel, int64_t now_ms) {
  Wake(now_ms);
  Channel* ch = nullptr;
  for (Channel& c : channels_) {
    if (c.name == channel) ch = &c;
  }
  if (ch == nullptr || ch->ring == kNil || ch->rate.WaitMs(now_ms) > 0)
    return std::nullopt;
  DestId d = ch->ring;
  Dest& dest = dests_[d];
  uint32_t n = PopNode(dest);
  Pick pick{{nodes_[n].job_id, nodes_[n].group}, d};
  FreeNode(n);
  --queued_;
  ++dest.in_flight;
  ++in_flight_;
  dest.rate.Take(now_ms);
  ch->rate.Take(now_ms);
  ch->ring = dest.ring_next;  // the next destination's turn
  Settle(d, now_ms);
  return pick;
}

std::vector<JobRef> DestinationTable::Complete(DestId d,
                                               DestinationFeedback feedback,
                                               int64_t now_ms) {
  std::vector<JobRef> deferred;
  if (d >= dests_.size() || !dests_[d].live || dests_[d].in_flight == 0)
    return deferred;
  Dest& dest = dests_[d];
  Channel& ch = channels_[dest.channel];
  --dest.in_flight;
  --in_flight_;
  switch (feedback) {
    case DestinationFeedback::kAnswered:
      // Alive: a success clears the failure count, the suspension and its
      // backoff, and grows the window by one (slow start).
      dest.failures = 0;
      dest.next_backoff_ms = 0;
      if (dest.suspended_until != 0) {
        dest.suspended_until = 0;
        --suspended_;
        --ch.suspended;
      }
      dest.window = std::min(dest.window + 1, dest.limits.concurrency);
      break;
    case DestinationFeedback::kConnectionFailure:
      dest.window = std::max<uint32_t>(1, dest.window / 2);
      ++dest.failures;
      dest.failure_at = now_ms;
      if (dest.suspended_until == 0 && dest.limits.dead_failures > 0 &&
          dest.failures >= dest.limits.dead_failures) {
        int64_t backoff = dest.next_backoff_ms != 0
                              ? dest.next_backoff_ms
                              : dest.limits.dead_backoff_ms;
        double u = unit_ ? unit_()
                         : std::uniform_real_distribution<double>(0, 1)(rng_);
        double jitter = std::clamp(dest.limits.dead_jitter, 0.0, 1.0);
        int64_t length = std::max<int64_t>(
            1, std::llround(static_cast<double>(backoff) * (1 - jitter * u)));
        dest.suspended_until = std::max<int64_t>(1, now_ms + length);
        dest.next_backoff_ms =
            std::min(backoff * 2, dest.limits.dead_backoff_max_ms);
        ++suspended_;
        ++ch.suspended;
        while (dest.head != kNil) {
          uint32_t n = PopNode(dest);
          deferred.push_back({nodes_[n].job_id, nodes_[n].group});
          FreeNode(n);
          --queued_;
        }
      }
      break;
    case DestinationFeedback::kNeutral:
      break;
  }
  Settle(d, now_ms);
  return deferred;
}

size_t DestinationTable::Cancel(uint64_t job_id, int64_t now_ms) {
  auto it = job_nodes_.find(job_id);
  if (it == job_nodes_.end()) return 0;
  std::vector<DestId> touched;
  size_t count = 0;
  for (uint32_t n = it->second; n != kNil;) {
    Node& node = nodes_[n];
    uint32_t next_of_job = node.job_next;
    Dest& dest = dests_[node.dest];
    if (node.prev != kNil) {
      nodes_[node.prev].next = node.next;
    } else {
      dest.head = node.next;
    }
    if (node.next != kNil) {
      nodes_[node.next].prev = node.prev;
    } else {
      dest.tail = node.prev;
    }
    --dest.queued;
    --queued_;
    touched.push_back(node.dest);
    FreeNode(n);
    ++count;
    n = next_of_job;
  }
  job_nodes_.erase(it);
  for (DestId d : touched) {
    if (dests_[d].live) Settle(d, now_ms);
  }
  return count;
}

size_t DestinationTable::Revive(std::string_view destination, int64_t now_ms) {
  std::string name = farm::AsciiLower(destination);
  size_t revived = 0;
  for (DestId d = 0; d < dests_.size(); ++d) {
    Dest& dest = dests_[d];
    if (!dest.live) continue;
    if (!name.empty() &&
        std::string_view(dest.key).substr(dest.name_at) != name)
      continue;
    if (dest.suspended_until != 0) {
      ++revived;
      dest.suspended_until = 0;
      --suspended_;
      --channels_[dest.channel].suspended;
    }
    dest.failures = 0;
    dest.next_backoff_ms = 0;
    dest.window = std::max(dest.window, dest.limits.initial_concurrency);
    Settle(d, now_ms);
  }
  return revived;
}

void DestinationTable::Wake(int64_t now_ms) {
  while (!timers_.empty() && timers_.begin()->first <= now_ms) {
    DestId d = timers_.begin()->second;
    timers_.erase(timers_.begin());
    Dest& dest = dests_[d];
    dest.timer_at = 0;
    if (dest.suspended_until != 0 && dest.suspended_until <= now_ms) {
      // The suspension is over: one probe connection decides. Its failure
      // suspends again (for longer), its success clears everything.
      dest.suspended_until = 0;
      --suspended_;
      --channels_[dest.channel].suspended;
      dest.window = 1;
      if (dest.limits.dead_failures > 0)
        dest.failures = dest.limits.dead_failures - 1;
      dest.failure_at = now_ms;  // the doubled backoff is remembered from here
    }
    Settle(d, now_ms);
  }
}

std::optional<int64_t> DestinationTable::NextWakeMs(int64_t now_ms) const {
  std::optional<int64_t> next;
  if (!timers_.empty()) next = timers_.begin()->first;
  for (const Channel& ch : channels_) {
    if (ch.ring == kNil) continue;
    int64_t wait = ch.rate.WaitMs(now_ms);
    if (wait == 0) continue;  // ready now: ReadyChannels(), not a timer
    if (!next || now_ms + wait < *next) next = now_ms + wait;
  }
  return next;
}

std::vector<std::string> DestinationTable::ReadyChannels() const {
  std::vector<std::string> out;
  for (const Channel& ch : channels_) {
    if (ch.ring != kNil) out.push_back(ch.name);
  }
  return out;
}

void DestinationTable::Settle(DestId d, int64_t now_ms) {
  Dest& dest = dests_[d];
  if (dest.suspended_until != 0) {
    RingRemove(d);
    SetTimer(d, dest.suspended_until);
    return;
  }
  if (dest.queued > 0 && dest.in_flight < dest.window) {
    int64_t wait = dest.rate.WaitMs(now_ms);
    if (wait == 0) {
      ClearTimer(d);
      RingAdd(d);
    } else {
      RingRemove(d);
      SetTimer(d, now_ms + wait);
    }
    return;
  }
  RingRemove(d);
  if (dest.queued == 0 && dest.in_flight == 0) {
    // Nothing to do: forget it once its rate debt is paid and its failure
    // state (count, doubled backoff) has expired.
    int64_t forget_at = dest.rate.Idle(now_ms) ? now_ms : dest.rate.IdleAtMs();
    if (dest.failures != 0 || dest.next_backoff_ms != 0) {
      forget_at = std::max(forget_at,
                           dest.failure_at + dest.limits.dead_backoff_max_ms);
    }
    if (forget_at <= now_ms) {
      Forget(d);
    } else {
      SetTimer(d, forget_at);
    }
    return;
  }
  ClearTimer(d);
}

void DestinationTable::RingAdd(DestId d) {
  Dest& dest = dests_[d];
  if (dest.in_ring) return;
  Channel& ch = channels_[dest.channel];
  dest.in_ring = true;
  if (ch.ring == kNil) {
    dest.ring_prev = dest.ring_next = d;
    ch.ring = d;
    return;
  }
  // Just before the cursor: a destination (re)joining waits a full round.
  DestId next = ch.ring, prev = dests_[next].ring_prev;
  dest.ring_next = next;
  dest.ring_prev = prev;
  dests_[prev].ring_next = d;
  dests_[next].ring_prev = d;
}

void DestinationTable::RingRemove(DestId d) {
  Dest& dest = dests_[d];
  if (!dest.in_ring) return;
  Channel& ch = channels_[dest.channel];
  dest.in_ring = false;
  if (dest.ring_next == d) {
    ch.ring = kNil;
  } else {
    dests_[dest.ring_prev].ring_next = dest.ring_next;
    dests_[dest.ring_next].ring_prev = dest.ring_prev;
    if (ch.ring == d) ch.ring = dest.ring_next;
  }
  dest.ring_prev = dest.ring_next = kNil;
}

void DestinationTable::SetTimer(DestId d, int64_t at_ms) {
  Dest& dest = dests_[d];
  at_ms = std::max<int64_t>(at_ms, 1);
  if (dest.timer_at == at_ms) return;
  ClearTimer(d);
  timers_.emplace(at_ms, d);
  dest.timer_at = at_ms;
}

void DestinationTable::ClearTimer(DestId d) {
  Dest& dest = dests_[d];
  if (dest.timer_at == 0) return;
  timers_.erase({dest.timer_at, d});
  dest.timer_at = 0;
}

uint32_t DestinationTable::PopNode(Dest& dest) {
  uint32_t n = dest.head;
  dest.head = nodes_[n].next;
  if (dest.head != kNil) {
    nodes_[dest.head].prev = kNil;
  } else {
    dest.tail = kNil;
  }
  --dest.queued;
  UnlinkFromJob(n);
  return n;
}

void DestinationTable::UnlinkFromJob(uint32_t n) {
  // Doubly linked: a job with a thousand delivery groups does not make each
  // pop walk its chain.
  const Node& node = nodes_[n];
  if (node.job_next != kNil) nodes_[node.job_next].job_prev = node.job_prev;
  if (node.job_prev != kNil) {
    nodes_[node.job_prev].job_next = node.job_next;
    return;
  }
  auto it = job_nodes_.find(node.job_id);
  if (it == job_nodes_.end() || it->second != n) return;
  if (node.job_next == kNil) {
    job_nodes_.erase(it);
  } else {
    it->second = node.job_next;
  }
}

void DestinationTable::FreeNode(uint32_t n) {
  nodes_[n].next = free_nodes_;
  free_nodes_ = n;
}

std::optional<DestinationTable::DestinationInfo> DestinationTable::Info(
    std::string_view channel, std::string_view destination) const {
  auto it = by_key_.find(SessionKey(channel, destination));
  if (it == by_key_.end()) return std::nullopt;
  const Dest& dest = dests_[it->second];
  DestinationInfo info;
  info.channel = channels_[dest.channel].name;
  info.destination = dest.key.substr(dest.name_at);
  info.queued = dest.queued;
  info.in_flight = dest.in_flight;
  info.window = dest.window;
  info.limit = dest.limits.concurrency;
  info.failures = dest.failures;
  info.suspended_until_ms = dest.suspended_until;
  return info;
}

void DestinationTable::FillStats(Stats* stats, size_t max_listed) const {
  struct Totals {
    uint64_t queued = 0, in_flight = 0;
  };
  std::vector<Totals> totals(channels_.size());
  std::vector<DestId> listed;
  for (DestId d = 0; d < dests_.size(); ++d) {
    const Dest& dest = dests_[d];
    if (!dest.live) continue;
    totals[dest.channel].queued += dest.queued;
    totals[dest.channel].in_flight += dest.in_flight;
    if (dest.in_flight > 0 || dest.suspended_until != 0) listed.push_back(d);
  }
  auto add =
      [stats](
          const char* name, double value,
          std::initializer_list<std::pair<const char*, std::string>> labels) {
        auto* sample = stats->add_samples();
        sample->set_name(name);
        for (const auto& [k, v] : labels) (*sample->mutable_labels())[k] = v;
        sample->set_value(value);
      };
  for (size_t c = 0; c < channels_.size(); ++c) {
    const Channel& ch = channels_[c];
    add("mailfarm_destinations", ch.destinations, {{"channel", ch.name}});
    add("mailfarm_destinations_suspended", ch.suspended,
        {{"channel", ch.name}});
    add("mailfarm_destination_queued_jobs",
        static_cast<double>(totals[c].queued), {{"channel", ch.name}});
    add("mailfarm_destination_in_flight_jobs",
        static_cast<double>(totals[c].in_flight), {{"channel", ch.name}});
  }
  // The busiest destinations (and every suspended one first): per
  // destination labels for all 10,000 would swamp the page.
  std::sort(listed.begin(), listed.end(), [this](DestId a, DestId b) {
    const Dest& x = dests_[a];
    const Dest& y = dests_[b];
    bool xs = x.suspended_until != 0, ys = y.suspended_until != 0;
    if (xs != ys) return xs;
    if (x.in_flight != y.in_flight) return x.in_flight > y.in_flight;
    return x.queued > y.queued;
  });
  if (listed.size() > max_listed) listed.resize(max_listed);
  for (DestId d : listed) {
    const Dest& dest = dests_[d];
    std::string channel = channels_[dest.channel].name;
    std::string name = dest.key.substr(dest.name_at);
    add("mailfarm_destination_in_flight", dest.in_flight,
        {{"channel", channel}, {"destination", name}});
    add("mailfarm_destination_queued", dest.queued,
        {{"channel", channel}, {"destination", name}});
    add("mailfarm_destination_window", dest.window,
        {{"channel", channel}, {"destination", name}});
    add("mailfarm_destination_suspended", dest.suspended_until != 0 ? 1 : 0,
        {{"channel", channel}, {"destination", name}});
  }
}

}  // namespace mailfarm::scheduler
