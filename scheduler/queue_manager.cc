// queue_manager.cc: the job table and each job's life: StartAttempt runs the
// stages a job still needs (Continue), results are applied per recipient and
// made durable (Persist) before the job moves on, and Settle decides what an
// attempt came to: removed, bounced (a DSN queued as a new job), held or
// deferred with backoff.
#include "scheduler/queue_manager.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

#include "farm/ascii.h"
#include "farm/config.h"
#include "scheduler/dsn.h"
#include "scheduler/queue_id.h"

namespace mailfarm::scheduler {

namespace {

enum JobState { kActive, kDeferred, kHeld, kRemoving };

const char* StateName(int state) {
  switch (state) {
    case kActive:
      return "active";
    case kDeferred:
      return "deferred";
    case kHeld:
      return "hold";
    default:
      return "removing";
  }
}

std::string DomainOf(const std::string& address) {
  size_t at = address.rfind('@');
  return at == std::string::npos ? ""
                                 : farm::AsciiLower(address.substr(at + 1));
}

std::string Seconds(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2g",
                static_cast<double>(std::max<int64_t>(ms, 0)) / 1000.0);
  if (ms >= 10'000)
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(ms / 1000));
  return buf;
}

}  // namespace

// Memory matters here: a million queued jobs each hold their routes and
// delivery groups (bench/queue_scale), so nothing is stored twice.
struct RouteTarget {
  std::string address;  // "" when the router did not rewrite it: Slot.address
  std::string channel;
  std::string nexthop;
  bool done = false;
};

struct QueueManager::Slot {
  uint32_t index = 0;
  std::string address;
  spool::RecipientStatus status = spool::RCPT_PENDING;
  bool routed =
      false;  // routes below are valid (in memory only: redone after a crash)
  bool failed = false;  // failed permanently; the DSN is not queued yet
  std::vector<RouteTarget> routes;
  bool pending() const { return status == spool::RCPT_PENDING && !failed; }
  const std::string& To(const RouteTarget& r) const {
    return r.address.empty() ? address : r.address;
  }
};

// A delivery job: recipients sharing one (channel, nexthop, destination);
// the channel and nexthop are those of its first member's route.
struct QueueManager::Group {
  std::string destination;  // DestinationTable::DestinationOf
  std::vector<std::pair<uint32_t, uint32_t>> members;  // (slot, route)
};

struct QueueManager::Job {
  // Fields are grouped by size (strings and vectors, then 8-, 4- and 1-byte
  // ones): padding would cost megabytes with a million jobs queued.
  uint64_t id = 0;
  // The queue id inline: its kQueueIdLength characters are one more than a
  // std::string holds without allocating.
  char qid_chars[kQueueIdLength] = {};
  std::string_view qid() const { return {qid_chars, qid_size}; }
  void set_qid(std::string_view q) {
    qid_size = static_cast<uint8_t>(std::min(q.size(), sizeof qid_chars));
    std::copy_n(q.data(), qid_size, qid_chars);
  }
  std::string sender;
  std::vector<Slot> slots;
  // ClientInfo serialized: a local injection's fits in the string itself.
  std::string client;
  std::string last_error;  // durable: mirrors the last JobState record
  // The current attempt.
  std::vector<Header> added_headers;
  std::vector<Group> groups;
  std::vector<FailedRecipient> failures;
  // Durability chain: one append at a time per job.
  std::vector<uint32_t>
      dirty;  // slots whose status changed since the last record
  std::vector<std::function<void(Job*)>> waiters;

  int64_t arrival_ms = 0;
  uint64_t body_offset = 0;
  uint64_t body_size = 0;
  // Durable state (mirrors the last JobState record).
  int64_t next_attempt_ms = 0;
  uint64_t sequence = 0;
  uint64_t truncate_to = 0;  // a torn tail to cut before the next append
  int64_t activated_ms = 0;  // monotonic, the current attempt's start
  // A destination of this attempt was suspended (dead): the latest end of
  // such a suspension (wall clock); see delivery_tried.
  int64_t held_back_until_ms = 0;

  uint32_t attempts = 0;  // durable
  int state = kActive;
  int in_flight = 0;
  int aborts = 0;

  uint8_t qid_size = 0;
  bool is_bounce = false;
  bool smtputf8 = false;
  bool eight_bit = false;
  bool held = false;  // durable
  bool filtered = false;
  bool tried_route = false, tried_filter = false, tried_deliver = false;
  bool stop_attempt = false;
  bool expired = false;
  bool bounce_in_progress = false;
  // Whether any delivery was really tried: an attempt that tried nothing
  // (held back by dead destinations) is not counted (Defer).
  bool delivery_tried = false;
  // The operator flushed this job: a suspended destination it needs is
  // revived rather than waited for (the rest of the attempt as usual).
  bool flushed = false;
  bool io_busy = false;
  bool persist_again = false;
  bool delete_requested = false;
  bool bounce_requested = false;
  // No process but the scheduler can still have the job's file open: the job
  // was injected in this run and no child holding its work was abandoned.
  // Only then is the file kept for reuse when the job is removed
  // (SpoolStore::Reuse).
  bool file_private = true;
};

namespace {
template <typename Job, typename Group>
const RouteTarget& LeadRoute(const Job& job, const Group& group) {
  auto [si, ri] = group.members.front();
  return job.slots[si].routes[ri];
}
}  // namespace

QueueSettings QueueSettings::FromConfig(const config::Config& config) {
  const auto& s = config.scheduler();
  QueueSettings q;
  q.retry.min_backoff_ms = int64_t{s.min_backoff_s()} * 1000;
  q.retry.max_backoff_ms = int64_t{s.max_backoff_s()} * 1000;
  q.retry.max_lifetime_ms = int64_t{s.max_queue_lifetime_s()} * 1000;
  q.bounce_lifetime_ms = int64_t{s.bounce_queue_lifetime_s()} * 1000;
  q.filter_enabled = s.filter_enabled();
  q.hostname = farm::Hostname(config);
  q.postmaster = s.postmaster();
  q.bounce_sender_name = s.bounce_sender_name();
  q.destinations = DestinationLimitsFromConfig(config);
  return q;
}

QueueManager::QueueManager(SpoolStore* store, StageDispatcher* dispatcher,
                           farm::Clock* clock, QueueSettings settings)
    : store_(store),
      dispatcher_(dispatcher),
      clock_(clock),
      settings_(std::move(settings)),
      rng_(std::random_device{}()) {
  // The zero baseline: rates count from the scheduler's start.
  SampleRates(clock_->NowUnixMs());
  destinations_.Configure(settings_.destinations, clock_->MonotonicMs());
}

void QueueManager::SetSettings(QueueSettings settings) {
  settings_ = std::move(settings);
  destinations_.Configure(settings_.destinations, clock_->MonotonicMs());
  PumpDeliveries();
}

QueueManager::~QueueManager() = default;

QueueManager::Job* QueueManager::Find(uint64_t id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

QueueManager::Job* QueueManager::FindQid(const std::string& qid) {
  auto it = by_qid_.find(qid);
  return it == by_qid_.end() ? nullptr : Find(it->second);
}

uint64_t QueueManager::counter(const std::string& name) const {
  auto it = counters_.find(name);
  return it == counters_.end() ? 0 : it->second;
}

void QueueManager::SetState(Job* job, int state) {
  if (job->state == kActive && state != kActive) --active_;
  if (job->state != kActive && state == kActive) ++active_;
  job->state = state;
}

void QueueManager::Register(std::unique_ptr<Job> job) {
  job->id = next_id_++;
  job->state = kHeld;  // not active until StartAttempt / Defer decide
  by_qid_[job->qid()] = job->id;
  jobs_[job->id] = std::move(job);
}

// ---------------------------------------------------------------------------
// Entry of new work: injection and adoption.

void QueueManager::Inject(
    spool::Envelope envelope, std::string body,
    std::shared_ptr<BodySpill> spill,
    std::function<void(farm::StatusOr<std::string>)> done) {
  auto shared = std::make_shared<spool::Envelope>(envelope);
  int64_t started = clock_->MonotonicMs();
  uint64_t size = spill != nullptr ? spill->size : body.size();
  auto created = [this, shared, size, started, done = std::move(done)](
                     farm::StatusOr<SpoolStore::Created> r) {
    if (!r.ok()) {
      Count("inject_failures");
      done(r.status());
      return;
    }
    auto job = std::make_unique<Job>();
    job->set_qid(r->qid);
    job->sender = shared->sender();
    for (const auto& rc : shared->recipients()) {
      Slot slot;
      slot.index = rc.index();
      slot.address = rc.address();
      job->slots.push_back(std::move(slot));
    }
    job->arrival_ms = shared->arrival_unix_ms();
    job->body_offset = r->body_offset;
    job->body_size = size;
    job->is_bounce = shared->is_bounce();
    job->smtputf8 = shared->smtputf8();
    job->eight_bit = shared->eight_bit();
    if (shared->client().ByteSizeLong() > 0) {
      job->client = shared->client().SerializeAsString();
    }
    LOG(INFO) << r->qid << ": from=<" << job->sender << ">, size=" << size
              << ", nrcpt=" << job->slots.size()
              << (job->is_bounce ? " (bounce)" : "") << " (queue active)";
    Count("injected");
    inject_latency_.Observe(
        static_cast<double>(clock_->MonotonicMs() - started) / 1000.0);
    Job* raw = job.get();
    Register(std::move(job));
    done(r->qid);
    if (Find(raw->id) == raw) StartAttempt(raw);
  };
  if (spill != nullptr) {
    store_->CreateFromSpill(std::move(envelope), std::move(spill),
                            std::move(created));
  } else {
    store_->Create(std::move(envelope), std::move(body), std::move(created));
  }
}

void QueueManager::Adopt(std::vector<std::pair<std::string, std::string>> jobs,
                         std::function<void(AdoptCounts)> done) {
  struct Pending {
    AdoptCounts counts;
    size_t outstanding = 0;
    std::function<void(AdoptCounts)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->done = std::move(done);
  pending->outstanding = 1;  // released at the end of this function
  auto finish_one = [pending] {
    if (--pending->outstanding == 0) pending->done(pending->counts);
  };
  for (auto& [qid, given_path] : jobs) {
    if (!IsValidQueueId(qid)) {
      ++pending->counts.failed;
      if (pending->counts.first_error.empty()) {
        pending->counts.first_error = "\"" + qid + "\" is not a queue id";
      }
      continue;
    }
    if (by_qid_.count(qid) > 0) {
      ++pending->counts.already_known;
      continue;
    }
    // Jobs live at their canonical path; anything else is refused rather
    // than adopted from a place later appends and removals would not find.
    std::string path = store_->PathOf(qid);
    if (!given_path.empty() && given_path != path) {
      ++pending->counts.failed;
      if (pending->counts.first_error.empty()) {
        pending->counts.first_error = given_path + " is not " + path;
      }
      continue;
    }
    ++pending->outstanding;
    store_->Read(path, [this, pending, finish_one, qid,
                        path](farm::StatusOr<QueueFile> file) {
      if (!file.ok() || file->envelope.qid() != qid) {
        ++pending->counts.failed;
        if (pending->counts.first_error.empty()) {
          pending->counts.first_error =
              file.ok() ? path + ": envelope qid differs from " + qid
                        : file.status().message();
        }
        finish_one();
        return;
      }
      if (by_qid_.count(qid) > 0) {  // two adopt requests raced
        ++pending->counts.already_known;
        finish_one();
        return;
      }
      auto job = std::make_unique<Job>();
      const spool::Envelope& e = file->envelope;
      job->set_qid(qid);
      job->file_private = false;  // a child of the last run may still read it
      job->sender = e.sender();
      std::map<uint32_t, spool::RecipientStatus> status;
      for (const auto& r : file->state.recipients())
        status[r.index()] = r.status();
      for (const auto& r : e.recipients()) {
        Slot slot;
        slot.index = r.index();
        slot.address = r.address();
        if (status.count(r.index()) > 0) slot.status = status[r.index()];
        job->slots.push_back(std::move(slot));
      }
      job->arrival_ms = e.arrival_unix_ms();
      job->body_offset = file->body_offset;
      job->body_size = e.body_size();
      job->is_bounce = e.is_bounce();
      job->smtputf8 = e.smtputf8();
      job->eight_bit = e.eight_bit();
      if (e.client().ByteSizeLong() > 0)
        job->client = e.client().SerializeAsString();
      job->attempts = file->state.attempts();
      job->next_attempt_ms = file->state.next_attempt_unix_ms();
      job->held = file->state.held();
      job->last_error = file->state.last_error();
      job->sequence = file->state.sequence();
      if (file->torn_bytes > 0) job->truncate_to = file->valid_size;
      ++pending->counts.adopted;
      Count("adopted");
      Job* raw = job.get();
      Register(std::move(job));
      bool all_final = std::none_of(raw->slots.begin(), raw->slots.end(),
                                    [](const Slot& s) { return s.pending(); });
      if (all_final) {
        RemoveJob(raw, "every recipient already final");
      } else if (raw->held) {
        LOG(INFO) << qid << ": adopted (on hold)";
      } else if (raw->next_attempt_ms > clock_->NowUnixMs()) {
        SetState(raw, kDeferred);
        deferred_.Add(raw->id, raw->next_attempt_ms);
      } else {
        StartAttempt(raw);
      }
      finish_one();
    });
  }
  finish_one();
}

// ---------------------------------------------------------------------------
// The attempt: route -> filter -> deliver -> settle.

std::optional<int64_t> QueueManager::Tick() {
  int64_t now = clock_->NowUnixMs();
  SampleRates(now);
  size_t room =
      active_ < settings_.max_active ? settings_.max_active - active_ : 0;
  for (uint64_t id : deferred_.PopDue(now, room)) {
    if (Job* job = Find(id); job != nullptr && job->state == kDeferred)
      StartAttempt(job);
  }
  PumpDeliveries();
  return deferred_.NextDue();
}

void QueueManager::PumpDeliveries() {
  destinations_.Wake(clock_->MonotonicMs());
  for (const std::string& channel : destinations_.ReadyChannels())
    PumpChannel(channel);
}

void QueueManager::StartAttempt(Job* job) {
  SetState(job, kActive);
  job->tried_route = job->tried_filter = job->tried_deliver = false;
  job->stop_attempt = job->expired = false;
  job->aborts = 0;
  job->groups.clear();
  job->held_back_until_ms = 0;
  job->delivery_tried = false;
  job->activated_ms = clock_->MonotonicMs();
  Continue(job);
}

void QueueManager::Continue(Job* job) {
  if (job->in_flight > 0 || job->bounce_in_progress) return;
  if (job->delete_requested) {
    RemoveJob(job, "deleted by the operator");
    return;
  }
  if (job->bounce_requested) {
    job->bounce_requested = false;
    job->stop_attempt = true;
    for (Slot& s : job->slots) {
      if (!s.pending()) continue;
      s.failed = true;
      job->failures.push_back(
          {s.address, s.address, "5.0.0", "bounced by the operator", ""});
    }
  }
  if (!job->stop_attempt) {
    bool need_route = false, has_routes = false;
    for (const Slot& s : job->slots) {
      if (!s.pending()) continue;
      if (!s.routed) need_route = true;
      for (const auto& r : s.routes) has_routes |= (s.routed && !r.done);
    }
    if (need_route && !job->tried_route) {
      job->tried_route = true;
      DispatchRoute(job);
      return;
    }
    bool wants_filter =
        settings_.filter_enabled && !job->is_bounce && !job->filtered;
    if (has_routes && wants_filter && !job->tried_filter) {
      job->tried_filter = true;
      DispatchFilter(job);
      return;
    }
    if (has_routes && !wants_filter && !job->tried_deliver) {
      job->tried_deliver = true;
      DispatchDeliver(job);
      if (job->in_flight > 0) return;
    }
  }
  Settle(job);
}

void QueueManager::DispatchRoute(Job* job) {
  WorkItem item;
  item.job_id = job->id;
  item.stage = STAGE_ROUTE;
  if (dispatcher_ == nullptr || !dispatcher_->Submit("router", item)) {
    StageFailed(job, "4.3.5 no router farm is configured");
    return;
  }
  ++job->in_flight;
}

void QueueManager::DispatchFilter(Job* job) {
  WorkItem item;
  item.job_id = job->id;
  item.stage = STAGE_FILTER;
  if (dispatcher_ == nullptr || !dispatcher_->Submit("filter", item)) {
    StageFailed(job, "4.3.5 no content-filter farm is configured");
    return;
  }
  ++job->in_flight;
}

// Groups pending routes by (channel, nexthop, destination) into delivery
// jobs and queues each at its destination (DestinationTable), which decides
// when it goes: round robin across destinations, within each one's window
// and rate. A recipient index appears at most once per delivery job (an
// alias expanding to two local users gives two jobs), so a Result's
// per-recipient index is unambiguous. With no nexthop the destination is the
// recipient's domain, so one delivery job never mixes domains.
void QueueManager::DispatchDeliver(Job* job) {
  job->groups.clear();
  std::map<std::tuple<std::string, std::string, std::string>,
           std::vector<size_t>>
      by_destination;
  for (uint32_t si = 0; si < job->slots.size(); ++si) {
    Slot& s = job->slots[si];
    if (!s.pending() || !s.routed) continue;
    for (uint32_t ri = 0; ri < s.routes.size(); ++ri) {
      const RouteTarget& r = s.routes[ri];
      if (r.done) continue;
      std::string destination =
          DestinationTable::DestinationOf(r.nexthop, s.To(r));
      auto& candidates = by_destination[{r.channel, r.nexthop, destination}];
      Group* target = nullptr;
      for (size_t g : candidates) {
        bool clash = std::any_of(job->groups[g].members.begin(),
                                 job->groups[g].members.end(),
                                 [si](const auto& m) { return m.first == si; });
        if (!clash) {
          target = &job->groups[g];
          break;
        }
      }
      if (target == nullptr) {
        candidates.push_back(job->groups.size());
        job->groups.push_back(Group{std::move(destination), {}});
        target = &job->groups.back();
      }
      target->members.emplace_back(si, ri);
    }
  }
  int64_t now = clock_->MonotonicMs();
  std::set<std::string> channels;
  for (uint32_t g = 0; g < job->groups.size(); ++g) {
    const Group& group = job->groups[g];
    const std::string& channel = LeadRoute(*job, group).channel;
    if (dispatcher_ == nullptr ||
        !dispatcher_->Room(farm::TransportFarmName(channel))) {
      job->last_error = "4.3.5 channel \"" + channel + "\" is not configured";
      LOG(WARNING) << job->qid() << ": " << job->last_error;
      continue;
    }
    DestinationTable::Enqueued queued = destinations_.Enqueue(
        channel, group.destination, JobRef{job->id, g}, now);
    if (!queued.queued && job->flushed &&
        destinations_.Revive(group.destination, now) > 0) {
      LOG(INFO) << job->qid() << ": flush: suspension of destination "
                << group.destination << " ended by the operator";
      queued = destinations_.Enqueue(channel, group.destination,
                                     JobRef{job->id, g}, now);
    }
    if (!queued.queued) {
      HoldBackGroup(job, g, queued.suspended_until_ms);
      continue;
    }
    ++job->in_flight;
    channels.insert(channel);
  }
  for (const std::string& channel : channels) PumpChannel(channel);
}

// Moves the channel's next delivery jobs, in the destination table's order,
// into the room its farm has now; the rest wait in their destinations' queues
// (not in the farm link's), so fairness and limits hold.
void QueueManager::PumpChannel(const std::string& channel) {
  if (dispatcher_ == nullptr) return;
  const std::string farm = farm::TransportFarmName(channel);
  std::optional<size_t> room = dispatcher_->Room(farm);
  int64_t now = clock_->MonotonicMs();
  for (size_t n = room.value_or(0); n > 0; --n) {
    std::optional<DestinationTable::Pick> pick =
        destinations_.Next(channel, now);
    if (!pick) return;
    Job* job = Find(pick->ref.job_id);
    if (job == nullptr || pick->ref.group >= job->groups.size()) {
      destinations_.Complete(pick->dest, DestinationFeedback::kNeutral, now);
      ++n;  // a stale entry took no room
      continue;
    }
    WorkItem item;
    item.job_id = job->id;
    item.stage = STAGE_DELIVER;
    item.group = pick->ref.group;
    item.destination = pick->dest;
    item.session = farm::AsciiLower(DestinationTable::SessionKey(
        channel, job->groups[item.group].destination));
    dispatcher_->Submit(farm, item);
  }
}

void QueueManager::CompleteDestination(const WorkItem& item,
                                       DestinationFeedback feedback) {
  if (item.destination == WorkItem::kNoDestination) return;
  int64_t now = clock_->MonotonicMs();
  size_t suspended_before = destinations_.suspended();
  std::vector<JobRef> returned =
      destinations_.Complete(item.destination, feedback, now);
  int64_t until = now;
  if (destinations_.suspended() > suspended_before) {
    // The destination has just been suspended: what was queued for it waits
    // for the suspension's end, without each job failing on its own.
    Count("destination_suspensions");
    if (Job* job = Find(item.job_id);
        job != nullptr && item.group < job->groups.size()) {
      const Group& g = job->groups[item.group];
      const std::string& channel = LeadRoute(*job, g).channel;
      auto info = destinations_.Info(channel, g.destination);
      if (info) until = info->suspended_until_ms;
      LOG(WARNING) << "destination " << g.destination << " (channel " << channel
                   << ") suspended for " << Seconds(until - now) << " s after "
                   << (info ? info->failures : 0)
                   << " consecutive connection failures; " << returned.size()
                   << " queued jobs deferred with it";
    }
  }
  for (const JobRef& ref : returned) {
    Job* other = Find(ref.job_id);
    if (other == nullptr) continue;
    --other->in_flight;
    HoldBackGroup(other, ref.group, until);
    if (other->in_flight == 0 && other->id != item.job_id) Continue(other);
  }
  const std::string* channel = nullptr;
  if (Job* job = Find(item.job_id);
      job != nullptr && item.group < job->groups.size())
    channel = &LeadRoute(*job, job->groups[item.group]).channel;
  if (channel != nullptr) {
    PumpChannel(*channel);
  } else {
    PumpDeliveries();
  }
}

void QueueManager::HoldBackGroup(Job* job, uint32_t group, int64_t until_mono) {
  int64_t until = clock_->NowUnixMs() + (until_mono - clock_->MonotonicMs());
  job->held_back_until_ms = std::max(job->held_back_until_ms, until);
  std::string destination =
      group < job->groups.size() ? job->groups[group].destination : "";
  job->last_error = "4.4.1 destination " + destination +
                    " is suspended after repeated connection failures";
  Count("held_back_by_dead_destination");
}

void QueueManager::CancelWaitingWork(Job* job) {
  if (dispatcher_ != nullptr) {
    for (const WorkItem& item : dispatcher_->Cancel(job->id)) {
      --job->in_flight;
      CompleteDestination(item, DestinationFeedback::kNeutral);
    }
  }
  job->in_flight -=
      static_cast<int>(destinations_.Cancel(job->id, clock_->MonotonicMs()));
}

bool QueueManager::BuildJob(const WorkItem& item, mailfarm::Job* out) {
  Job* job = Find(item.job_id);
  if (job == nullptr ||
      (item.stage == STAGE_DELIVER && item.group >= job->groups.size())) {
    // Dropped: the destination slot it held is free again.
    CompleteDestination(item, DestinationFeedback::kNeutral);
    return false;
  }
  out->set_qid(std::string(job->qid()));
  out->set_stage(item.stage);
  out->set_sender(job->sender);
  out->set_attempt(job->attempts + 1);
  out->set_message_path(store_->PathOf(std::string(job->qid())));
  out->set_body_offset(job->body_offset);
  out->set_body_size(job->body_size);
  out->set_arrival_unix_ms(job->arrival_ms);
  out->set_smtputf8(job->smtputf8);
  out->set_eight_bit(job->eight_bit);
  if (!job->client.empty()) out->mutable_client()->ParseFromString(job->client);
  if (item.stage == STAGE_DELIVER) {
    if (item.group >= job->groups.size()) return false;
    const Group& g = job->groups[item.group];
    out->set_channel(LeadRoute(*job, g).channel);
    out->set_nexthop(LeadRoute(*job, g).nexthop);
    for (const auto& h : job->added_headers) *out->add_added_headers() = h;
    for (auto [si, ri] : g.members) {
      auto* r = out->add_recipients();
      r->set_index(job->slots[si].index);
      r->set_address(job->slots[si].To(job->slots[si].routes[ri]));
      r->set_original(job->slots[si].address);
    }
    return true;
  }
  for (const Slot& s : job->slots) {
    if (!s.pending() || (item.stage == STAGE_ROUTE && s.routed)) continue;
    auto* r = out->add_recipients();
    r->set_index(s.index);
    r->set_address(s.address);
    r->set_original(s.address);
  }
  return true;
}

void QueueManager::OnResult(const WorkItem& item, const Result& result) {
  Job* job = Find(item.job_id);
  if (job == nullptr) return;
  --job->in_flight;
  switch (item.stage) {
    case STAGE_ROUTE:
      ApplyRoute(job, result);
      break;
    case STAGE_FILTER:
      ApplyFilter(job, result);
      break;
    default:
      ApplyDeliver(job, item, result);
      return;
  }
  if (job->dirty.empty()) {
    Continue(job);
  } else {
    Persist(job, [this](Job* j) { Continue(j); });
  }
}

void QueueManager::OnAbort(const WorkItem& item, const farm::Status& why) {
  Job* job = Find(item.job_id);
  if (job == nullptr) return;
  Count("requeued");
  ++job->aborts;
  job->file_private = false;  // the abandoned child may still be reading it
  std::string farm = item.stage == STAGE_ROUTE    ? "router"
                     : item.stage == STAGE_FILTER ? "filter"
                     : item.group < job->groups.size()
                         ? farm::TransportFarmName(
                               LeadRoute(*job, job->groups[item.group]).channel)
                         : "";
  if (job->aborts <= settings_.max_aborts_per_attempt && !farm.empty() &&
      dispatcher_->Submit(farm, item)) {
    LOG(WARNING) << job->qid() << ": " << why.message() << "; requeued ("
                 << job->aborts << ")";
    return;
  }
  --job->in_flight;
  if (item.stage == STAGE_DELIVER) {
    job->delivery_tried = true;
    CompleteDestination(item, DestinationFeedback::kNeutral);
    if (Find(item.job_id) != job) return;
  }
  LOG(WARNING) << job->qid() << ": " << why.message()
               << "; deferring the attempt";
  job->last_error = "4.3.0 " + why.message();
  if (item.stage != STAGE_DELIVER) job->stop_attempt = true;
  Continue(job);
}

void QueueManager::StageFailed(Job* job, const std::string& text) {
  job->last_error = text;
  job->stop_attempt = true;
  LOG(WARNING) << job->qid() << ": " << text;
}

void QueueManager::ApplyRoute(Job* job, const Result& result) {
  std::map<uint32_t, const RecipientResult*> by_index;
  for (const auto& r : result.recipients()) by_index[r.index()] = &r;
  for (uint32_t si = 0; si < job->slots.size(); ++si) {
    Slot& s = job->slots[si];
    if (!s.pending() || s.routed) continue;
    const RecipientResult* r =
        by_index.count(s.index) ? by_index[s.index] : nullptr;
    Outcome outcome = r != nullptr && r->outcome() != OUTCOME_UNSPECIFIED
                          ? r->outcome()
                          : result.outcome();
    const std::string& dsn =
        r != nullptr && !r->dsn().empty() ? r->dsn() : result.dsn();
    const std::string& text =
        r != nullptr && !r->text().empty() ? r->text() : result.text();
    if (outcome == OUTCOME_OK && r != nullptr && r->routes_size() > 0) {
      s.routed = true;
      s.routes.clear();
      for (const auto& route : r->routes()) {
        s.routes.push_back(RouteTarget{
            route.address() == s.address ? std::string() : route.address(),
            route.channel(), route.nexthop(), false});
      }
    } else if (outcome == OUTCOME_OK) {
      // Routed to nothing (e.g. an alias with no members): nothing left to do.
      s.status = spool::RCPT_DELIVERED;
      job->dirty.push_back(si);
      LogDelivery(job, s.address, "", "none", dsn.empty() ? "2.0.0" : dsn,
                  "sent", text.empty() ? "routed to no destination" : text, 0);
    } else if (outcome == OUTCOME_PERMFAIL) {
      s.failed = true;
      job->failures.push_back(
          {s.address, s.address, dsn.empty() ? "5.1.1" : dsn, text, ""});
      LogDelivery(job, s.address, "", "none", dsn.empty() ? "5.1.1" : dsn,
                  "bounced", text, 0);
    } else {
      job->last_error = (dsn.empty() ? "4.3.0" : dsn) + " " +
                        (text.empty() ? "routing failed" : text);
    }
  }
}

void QueueManager::ApplyFilter(Job* job, const Result& result) {
  const FilterVerdict& v = result.verdict();
  std::string rule = v.rule().empty() ? "" : " (rule " + v.rule() + ")";
  switch (v.action()) {
    case FilterVerdict::ACCEPT:
      job->filtered = true;
      job->added_headers.assign(v.add_headers().begin(), v.add_headers().end());
      return;
    case FilterVerdict::REJECT: {
      std::string dsn = v.dsn().empty() ? "5.7.1" : v.dsn();
      std::string text =
          v.text().empty() ? "message content rejected" : v.text();
      for (Slot& s : job->slots) {
        if (!s.pending()) continue;
        s.failed = true;
        job->failures.push_back({s.address, s.address, dsn, text + rule, ""});
        LogDelivery(job, s.address, "", "filter", dsn, "bounced", text + rule,
                    result.delay_ms());
      }
      return;
    }
    case FilterVerdict::DISCARD:
      for (uint32_t si = 0; si < job->slots.size(); ++si) {
        Slot& s = job->slots[si];
        if (!s.pending()) continue;
        s.status = spool::RCPT_DELIVERED;
        job->dirty.push_back(si);
        LogDelivery(
            job, s.address, "", "filter", "2.0.0", "discarded",
            (v.text().empty() ? "discarded by the content filter" : v.text()) +
                rule,
            result.delay_ms());
      }
      Count("discarded");
      return;
    case FilterVerdict::HOLD:
      // Released later, the job goes on to delivery without a second look
      // (in memory only: after a restart the filter sees it again).
      job->filtered = true;
      // What the filter adds (a DKIM signature) goes out with the released
      // message as with an accepted one.
      job->added_headers.assign(v.add_headers().begin(), v.add_headers().end());
      job->held = true;
      job->stop_attempt = true;
      job->dirty.push_back(0);  // forces a record carrying held = true
      LOG(INFO) << job->qid() << ": held by the content filter" << rule << ": "
                << v.text();
      return;
    default:
      job->last_error =
          (v.dsn().empty() ? "4.7.0" : v.dsn()) + " " +
          (v.text().empty() ? (result.text().empty() ? "content filter tempfail"
                                                     : result.text())
                            : v.text());
      job->stop_attempt = true;
      return;
  }
}

void QueueManager::ApplyDeliver(Job* job, const WorkItem& item,
                                const Result& result) {
  if (item.group >=
      job->groups.size()) {  // cannot happen; never strand the job
    LOG(ERROR) << job->qid() << ": result for unknown delivery group "
               << item.group;
    CompleteDestination(item, DestinationFeedback::kNeutral);
    if (job->in_flight == 0) Continue(job);
    return;
  }
  job->delivery_tried = true;
  std::map<uint32_t, const RecipientResult*> by_index;
  for (const auto& r : result.recipients()) by_index[r.index()] = &r;
  bool failures_now = false;
  bool answered = false;  // the destination said something: it is alive
  for (auto [si, ri] : job->groups[item.group].members) {
    Slot& s = job->slots[si];
    RouteTarget& route = s.routes[ri];
    const RecipientResult* r =
        by_index.count(s.index) ? by_index[s.index] : nullptr;
    Outcome outcome = r != nullptr && r->outcome() != OUTCOME_UNSPECIFIED
                          ? r->outcome()
                          : result.outcome();
    std::string dsn =
        r != nullptr && !r->dsn().empty() ? r->dsn() : result.dsn();
    std::string text =
        r != nullptr && !r->text().empty() ? r->text() : result.text();
    std::string relay =
        r != nullptr && !r->relay().empty() ? r->relay() : "none";
    answered |= outcome == OUTCOME_OK || outcome == OUTCOME_PERMFAIL ||
                (outcome == OUTCOME_TEMPFAIL && !result.connection_failure());
    if (outcome == OUTCOME_OK) {
      route.done = true;
      LogDelivery(job, s.To(route), s.address, relay,
                  dsn.empty() ? "2.0.0" : dsn, "sent", text, result.delay_ms());
      Count("delivered");
      deliveries_[{route.channel, "sent"}]++;
      delivery_latency_.Observe(
          static_cast<double>(clock_->NowUnixMs() - job->arrival_ms) / 1000.0);
      if (s.pending() &&
          std::all_of(s.routes.begin(), s.routes.end(),
                      [](const RouteTarget& t) { return t.done; })) {
        s.status = spool::RCPT_DELIVERED;
        job->dirty.push_back(si);
      }
    } else if (outcome == OUTCOME_PERMFAIL) {
      route.done = true;
      if (dsn.empty()) dsn = "5.0.0";
      LogDelivery(job, s.To(route), s.address, relay, dsn, "bounced", text,
                  result.delay_ms());
      Count("bounced");
      deliveries_[{route.channel, "bounced"}]++;
      job->failures.push_back({s.address, s.To(route), dsn, text, relay});
      s.failed = true;
      failures_now = true;
    } else {
      if (outcome == OUTCOME_UNSPECIFIED && text.empty())
        text = "no result for this recipient";
      if (dsn.empty()) dsn = "4.0.0";
      job->last_error = dsn + " " + text;
      LogDelivery(job, s.To(route), s.address, relay, dsn, "deferred", text,
                  result.delay_ms());
      Count("deferred");
      deliveries_[{route.channel, "deferred"}]++;
    }
  }
  uint64_t id = job->id;
  CompleteDestination(item, result.connection_failure()
                                ? DestinationFeedback::kConnectionFailure
                            : answered ? DestinationFeedback::kAnswered
                                       : DestinationFeedback::kNeutral);
  if (Find(id) != job) return;
  bool all_delivered = std::all_of(
      job->slots.begin(), job->slots.end(),
      [](const Slot& s) { return s.status == spool::RCPT_DELIVERED; });
  if (job->in_flight == 0 && all_delivered && !failures_now) {
    // The file is removed next, not synced: a removal lost in a crash
    // delivers again (at-least-once), so no state record is written first.
    job->dirty.clear();
    Continue(job);
    return;
  }
  Persist(job, [this](Job* j) {
    if (j->in_flight == 0) Continue(j);
  });
}

// Ends an attempt: bounce what failed, then remove, hold or defer.
void QueueManager::Settle(Job* job) {
  job->flushed = false;
  if (job->delete_requested) {
    RemoveJob(job, "deleted by the operator");
    return;
  }
  if (!job->failures.empty() ||
      std::any_of(job->slots.begin(), job->slots.end(),
                  [](const Slot& s) { return s.failed; })) {
    SendBounce(job);
    return;
  }
  bool all_final = std::none_of(job->slots.begin(), job->slots.end(),
                                [](const Slot& s) { return s.pending(); });
  if (all_final) {
    RemoveJob(job, "delivered");
    return;
  }
  if (job->held) {
    SetState(job, kHeld);
    Persist(job, nullptr);
    return;
  }
  Defer(job);
}

// A deferred job may wait for hours among many others: keep only what the
// next attempt cannot redo. Routes with nothing delivered yet are dropped (the
// next attempt routes again, picking up table changes); a recipient whose
// alias expansion is part-delivered keeps its routes so no member gets a copy
// twice.
void QueueManager::TrimForWaiting(Job* job) {
  for (Slot& s : job->slots) {
    bool any_done = std::any_of(s.routes.begin(), s.routes.end(),
                                [](const RouteTarget& r) { return r.done; });
    if (!any_done) {
      std::vector<RouteTarget>().swap(s.routes);
      s.routed = false;
    }
  }
  std::vector<Group>().swap(job->groups);
  std::vector<FailedRecipient>().swap(job->failures);
  job->last_error.shrink_to_fit();
}

void QueueManager::Defer(Job* job) {
  RetryPolicy policy = settings_.retry;
  if (job->is_bounce) policy.max_lifetime_ms = settings_.bounce_lifetime_ms;
  int64_t now = clock_->NowUnixMs();
  RetryDecision d;
  if (job->held_back_until_ms > 0 && !job->delivery_tried) {
    // Only held back by dead destinations: no attempt was made, none is
    // counted; the job waits for the suspension's end (or its expiry).
    int64_t expiry = job->arrival_ms + policy.max_lifetime_ms;
    d.expire = now >= expiry;
    d.next_attempt_ms = std::min(job->held_back_until_ms, expiry);
  } else {
    ++job->attempts;
    double unit = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    d = NextRetry(policy, job->attempts, job->arrival_ms, now, unit);
  }
  if (d.expire) {
    Count("expired");
    std::string why =
        "delivery time expired" +
        (job->last_error.empty() ? std::string() : ": " + job->last_error);
    for (Slot& s : job->slots) {
      if (!s.pending()) continue;
      s.failed = true;
      job->failures.push_back({s.address, s.address, "4.4.7", why, ""});
      LogDelivery(job, s.address, "", "none", "4.4.7", "expired", why, 0);
    }
    job->expired = true;
    SendBounce(job);
    return;
  }
  job->next_attempt_ms = d.next_attempt_ms;
  SetState(job, kDeferred);
  TrimForWaiting(job);
  LOG(INFO) << job->qid() << ": deferred, attempt " << job->attempts
            << ", next in " << Seconds(d.next_attempt_ms - clock_->NowUnixMs())
            << " s: " << job->last_error;
  Persist(job, [this](Job* j) {
    if (j->state == kDeferred) deferred_.Add(j->id, j->next_attempt_ms);
  });
}

// Queues one DSN for every recipient that failed this attempt, then marks
// them bounced. The DSN is durable before the recipients are marked: a crash
// in between sends it twice, never zero times.
void QueueManager::SendBounce(Job* job) {
  auto mark_bounced = [this](Job* j) {
    for (uint32_t si = 0; si < j->slots.size(); ++si) {
      if (!j->slots[si].failed) continue;
      j->slots[si].failed = false;
      j->slots[si].status = spool::RCPT_BOUNCED;
      j->dirty.push_back(si);
    }
    j->failures.clear();
    j->bounce_in_progress = false;
    Persist(j, [this](Job* k) { Settle(k); });
  };
  job->bounce_in_progress = true;
  if (job->sender.empty() || job->is_bounce || job->failures.empty()) {
    if (!job->failures.empty()) {
      LOG(INFO) << job->qid() << ": no DSN: "
                << (job->is_bounce ? "never bounce a bounce" : "null sender");
      Count(job->is_bounce ? "bounce_of_bounce_dropped"
                           : "dsn_suppressed_null_sender");
    }
    mark_bounced(job);
    return;
  }
  auto input = std::make_shared<DsnInput>();
  input->reporting_mta = settings_.hostname;
  input->from = settings_.bounce_sender_name + "@" + settings_.hostname;
  input->postmaster = settings_.postmaster + "@" + settings_.hostname;
  input->qid = std::string(job->qid());
  input->sender = job->sender;
  input->arrival_unix_ms = job->arrival_ms;
  input->now_unix_ms = clock_->NowUnixMs();
  input->expired = job->expired;
  input->recipients = job->failures;
  auto message = std::make_shared<std::string>();
  std::string path = store_->PathOf(std::string(job->qid()));
  uint64_t offset = job->body_offset;
  uint64_t size = std::min<uint64_t>(job->body_size, 65536);
  uint64_t id = job->id;
  store_->RunBackground(
      [input, message, path, offset, size] {
        std::string head(size, '\0');
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        ssize_t n =
            fd >= 0 ? ::pread(fd, head.data(), size, static_cast<off_t>(offset))
                    : 0;
        if (fd >= 0) ::close(fd);
        head.resize(n > 0 ? static_cast<size_t>(n) : 0);
        input->original_headers = HeaderBlock(head);
        *message = BuildDsn(*input);
      },
      [this, id, message, mark_bounced] {
        Job* j = Find(id);
        if (j == nullptr) return;
        spool::Envelope envelope;
        envelope.set_sender("");
        auto* r = envelope.add_recipients();
        r->set_index(0);
        r->set_address(j->sender);
        envelope.set_arrival_unix_ms(clock_->NowUnixMs());
        envelope.set_is_bounce(true);
        envelope.mutable_client()->set_protocol("local");
        Inject(std::move(envelope), std::move(*message),
               [this, id, mark_bounced](farm::StatusOr<std::string> qid) {
                 Job* k = Find(id);
                 if (k == nullptr) return;
                 if (!qid.ok()) {
                   LOG(ERROR)
                       << k->qid()
                       << ": cannot queue the DSN: " << qid.status().message()
                       << "; trying again later";
                   k->bounce_in_progress = false;
                   k->last_error =
                       "4.3.0 cannot queue the DSN: " + qid.status().message();
                   Defer(k);
                   return;
                 }
                 LOG(INFO) << k->qid()
                           << ": sender non-delivery notification: " << *qid;
                 Count("dsn_sent");
                 mark_bounced(k);
               });
      });
}

void QueueManager::RemoveJob(Job* job, const std::string& why) {
  if (job->io_busy) {
    job->waiters.push_back([this, why](Job* j) { RemoveJob(j, why); });
    return;
  }
  if (job->state == kRemoving) return;
  deferred_.Remove(job->id, job->next_attempt_ms);
  SetState(job, kRemoving);
  uint64_t id = job->id;
  std::string qid(job->qid());
  auto reuse = job->file_private ? SpoolStore::Reuse::kAllowed
                                 : SpoolStore::Reuse::kNever;
  store_->Remove(qid, reuse, [this, id, qid, why](farm::Status status) {
    if (!status.ok()) LOG(ERROR) << qid << ": " << status.message();
    LOG(INFO) << qid << ": removed (" << why << ")";
    Count("removed");
    by_qid_.erase(qid);
    jobs_.erase(id);
  });
}

// Appends a state record with the job's current durable fields and the
// recipients changed since the last one; `then` runs once it is on disk.
void QueueManager::Persist(Job* job, std::function<void(Job*)> then) {
  if (then) job->waiters.push_back(std::move(then));
  if (job->io_busy) {
    job->persist_again = true;
    return;
  }
  RunPersist(job);
}

void QueueManager::RunPersist(Job* job) {
  spool::JobState state;
  state.set_sequence(++job->sequence);
  state.set_unix_ms(clock_->NowUnixMs());
  state.set_attempts(job->attempts);
  state.set_next_attempt_unix_ms(job->next_attempt_ms);
  state.set_held(job->held);
  state.set_last_error(job->last_error);
  std::set<uint32_t> seen;
  for (uint32_t si : job->dirty) {
    if (!seen.insert(si).second || si >= job->slots.size()) continue;
    const Slot& s = job->slots[si];
    if (s.status == spool::RCPT_PENDING) continue;
    auto* r = state.add_recipients();
    r->set_index(s.index);
    r->set_status(s.status);
  }
  std::vector<uint32_t>().swap(job->dirty);
  job->io_busy = true;
  auto waiters = std::make_shared<std::vector<std::function<void(Job*)>>>(
      std::move(job->waiters));
  job->waiters.clear();
  uint64_t id = job->id;
  store_->AppendState(std::string(job->qid()), state, job->truncate_to,
                      [this, id, waiters](farm::Status status) {
                        Job* j = Find(id);
                        if (j == nullptr) return;
                        j->io_busy = false;
                        if (status.ok()) {
                          j->truncate_to = 0;
                        } else {
                          // The in-memory state stays right; after a crash the
                          // job repeats work.
                          Count("state_write_errors");
                          LOG(ERROR)
                              << j->qid() << ": cannot record the job's state: "
                              << status.message();
                        }
                        for (auto& w : *waiters) {
                          if (Find(id) != j) return;
                          w(j);
                        }
                        if (Find(id) != j || j->io_busy) return;
                        if (j->persist_again) {
                          j->persist_again = false;
                          RunPersist(j);
                        } else if (!j->waiters.empty()) {
                          auto rest = std::move(j->waiters);
                          j->waiters.clear();
                          for (auto& w : rest) {
                            if (Find(id) != j) return;
                            w(j);
                          }
                        }
                      });
}

void QueueManager::LogDelivery(Job* job, const std::string& to,
                               const std::string& orig,
                               const std::string& relay, const std::string& dsn,
                               const char* status, const std::string& text,
                               uint32_t child_ms) {
  int64_t now_mono = clock_->MonotonicMs();
  int64_t delay = clock_->NowUnixMs() - job->arrival_ms;
  int64_t in_queue = now_mono - job->activated_ms - child_ms;
  int64_t before = delay - (now_mono - job->activated_ms);
  LOG(INFO) << job->qid() << ": to=<" << to << ">"
            << (orig.empty() || orig == to ? "" : ", orig_to=<" + orig + ">")
            << ", relay=" << relay << ", delay=" << Seconds(delay)
            << ", delays=" << Seconds(before) << "/" << Seconds(in_queue)
            << "/0/" << Seconds(child_ms) << ", dsn=" << dsn
            << ", status=" << status << " (" << text << ")";
}

// ---------------------------------------------------------------------------
// Operator entry points.

std::vector<QueueManager::Job*> QueueManager::Select(const Selector& sel) {
  std::vector<Job*> out;
  auto matches = [&](const Job& j) {
    if (j.state == kRemoving) return false;
    if (!sel.state().empty() && sel.state() != StateName(j.state)) return false;
    if (!sel.sender().empty() &&
        farm::AsciiLower(sel.sender()) != farm::AsciiLower(j.sender))
      return false;
    if (!sel.domain().empty()) {
      std::string want = farm::AsciiLower(sel.domain());
      bool any =
          std::any_of(j.slots.begin(), j.slots.end(), [&](const Slot& s) {
            return s.pending() && DomainOf(s.address) == want;
          });
      if (!any) return false;
    }
    return true;
  };
  if (sel.qids_size() > 0) {
    for (const auto& qid : sel.qids()) {
      if (Job* j = FindQid(qid); j != nullptr && matches(*j)) out.push_back(j);
    }
    return out;
  }
  if (!sel.all() && sel.domain().empty() && sel.sender().empty() &&
      sel.state().empty())
    return out;
  for (auto& [id, job] : jobs_) {
    if (matches(*job)) out.push_back(job.get());
  }
  std::sort(out.begin(), out.end(),
            [](const Job* a, const Job* b) { return a->qid() < b->qid(); });
  return out;
}

uint32_t QueueManager::Hold(const Selector& selector) {
  uint32_t n = 0;
  for (Job* job : Select(selector)) {
    if (job->held) continue;
    job->held = true;
    ++n;
    LOG(INFO) << job->qid() << ": held by the operator";
    if (job->state == kDeferred) {
      deferred_.Remove(job->id, job->next_attempt_ms);
      SetState(job, kHeld);
      Persist(job, nullptr);
    } else if (job->state == kActive) {
      // Work waiting for a child is dropped; what a child holds finishes, then
      // the attempt ends on hold (Settle persists it).
      job->stop_attempt = true;
      CancelWaitingWork(job);
      Continue(job);
    } else {
      Persist(job, nullptr);
    }
  }
  return n;
}

uint32_t QueueManager::Release(const Selector& selector) {
  uint32_t n = 0;
  for (Job* job : Select(selector)) {
    if (!job->held) continue;
    job->held = false;
    ++n;
    LOG(INFO) << job->qid() << ": released by the operator";
    if (job->state == kHeld) {
      uint64_t id = job->id;
      Persist(job, [this, id](Job* j) {
        if (j->id == id && j->state == kHeld && !j->held) StartAttempt(j);
      });
    } else {
      Persist(job, nullptr);
    }
  }
  return n;
}

uint32_t QueueManager::Flush(const Selector& selector) {
  if (!selector.domain().empty() || selector.all()) {
    size_t revived =
        destinations_.Revive(selector.domain(), clock_->MonotonicMs());
    if (revived > 0) {
      LOG(INFO) << "flush: suspension of " << revived << " destination"
                << (revived == 1 ? "" : "s") << " ended by the operator";
    }
  }
  uint32_t n = 0;
  for (Job* job : Select(selector)) {
    if (job->state != kDeferred) continue;
    deferred_.Remove(job->id, job->next_attempt_ms);
    ++n;
    job->flushed = true;
    StartAttempt(job);
  }
  return n;
}

uint32_t QueueManager::Delete(const Selector& selector) {
  uint32_t n = 0;
  for (Job* job : Select(selector)) {
    ++n;
    Count("deleted");
    if (job->state == kActive) {
      // Work still waiting for a child is dropped; work a child holds comes
      // back (or times out) first.
      job->delete_requested = true;
      CancelWaitingWork(job);
      Continue(job);
    } else {
      RemoveJob(job, "deleted by the operator");
    }
  }
  return n;
}

uint32_t QueueManager::Bounce(const Selector& selector) {
  uint32_t n = 0;
  for (Job* job : Select(selector)) {
    ++n;
    job->bounce_requested = true;
    if (job->state == kActive) {
      CancelWaitingWork(job);
      Continue(job);
      continue;
    }
    deferred_.Remove(job->id, job->next_attempt_ms);
    job->held = false;
    SetState(job, kActive);
    job->activated_ms = clock_->MonotonicMs();
    Continue(job);
  }
  return n;
}

QueueEntry QueueManager::Entry(const Job& job) const {
  QueueEntry e;
  e.set_qid(std::string(job.qid()));
  e.set_size(job.body_size);
  e.set_arrival_unix_ms(job.arrival_ms);
  e.set_sender(job.sender);
  for (const Slot& s : job.slots) {
    if (s.pending()) e.add_recipients(s.address);
  }
  e.set_state(job.held && job.state != kActive ? "hold" : StateName(job.state));
  e.set_next_attempt_unix_ms(job.state == kDeferred ? job.next_attempt_ms : 0);
  e.set_last_error(job.last_error);
  e.set_attempts(job.attempts);
  return e;
}

std::vector<QueueEntry> QueueManager::List(const Selector& selector) const {
  Selector sel = selector;
  if (sel.qids_size() == 0 && sel.domain().empty() && sel.sender().empty())
    sel.set_all(true);
  std::vector<QueueEntry> out;
  for (Job* job : const_cast<QueueManager*>(this)->Select(sel))
    out.push_back(Entry(*job));
  return out;
}

bool QueueManager::Show(const std::string& qid, QueueDetail* detail) const {
  Job* job = const_cast<QueueManager*>(this)->FindQid(qid);
  if (job == nullptr) return false;
  *detail->mutable_entry() = Entry(*job);
  for (const auto& h : job->added_headers) *detail->add_added_headers() = h;
  for (const Slot& s : job->slots) {
    if (s.status == spool::RCPT_DELIVERED) detail->add_delivered(s.address);
  }
  if (!job->client.empty())
    detail->mutable_client()->ParseFromString(job->client);
  return true;
}

void QueueManager::ReadHistory(
    const std::string& qid,
    std::function<void(std::vector<AttemptRecord>)> done) {
  if (FindQid(qid) == nullptr) {
    done({});
    return;
  }
  store_->Read(store_->PathOf(qid), [done](farm::StatusOr<QueueFile> file) {
    std::vector<AttemptRecord> history;
    if (!file.ok()) {
      done(std::move(history));
      return;
    }
    std::map<uint32_t, std::string> addresses;
    for (const auto& r : file->envelope.recipients())
      addresses[r.index()] = r.address();
    uint32_t attempts = 0;
    for (const spool::JobState& record : file->records) {
      // A record that counts a new failed attempt carries its reason.
      if (record.attempts() > attempts && !record.last_error().empty()) {
        AttemptRecord a;
        a.set_unix_ms(record.unix_ms());
        a.set_outcome(OUTCOME_TEMPFAIL);
        a.set_text(record.last_error());
        history.push_back(std::move(a));
      }
      attempts = std::max(attempts, record.attempts());
      for (const auto& r : record.recipients()) {
        if (r.status() == spool::RCPT_PENDING) continue;
        AttemptRecord a;
        a.set_unix_ms(record.unix_ms());
        a.set_recipient(addresses[r.index()]);
        a.set_outcome(r.status() == spool::RCPT_DELIVERED ? OUTCOME_OK
                                                          : OUTCOME_PERMFAIL);
        a.set_dsn(r.dsn());
        a.set_text(r.text());
        history.push_back(std::move(a));
      }
    }
    done(std::move(history));
  });
}

namespace {
constexpr const char* kRateEvents[] = {"injected", "delivered", "deferred",
                                       "bounced"};
constexpr int64_t kRateSampleMs = 10'000;
constexpr int64_t kRateKeepMs = 15 * 60'000;
}  // namespace

void QueueManager::SampleRates(int64_t now) {
  if (!rate_samples_.empty() &&
      now - rate_samples_.back().unix_ms < kRateSampleMs)
    return;
  RateSample sample;
  sample.unix_ms = now;
  for (size_t i = 0; i < 4; ++i) sample.counts[i] = counter(kRateEvents[i]);
  rate_samples_.push_back(sample);
  while (!rate_samples_.empty() &&
         now - rate_samples_.front().unix_ms > kRateKeepMs + kRateSampleMs)
    rate_samples_.pop_front();
}

void QueueManager::FillRates(Stats* stats) const {
  if (rate_samples_.empty()) return;
  int64_t now = clock_->NowUnixMs();
  for (auto [window, minutes] :
       {std::pair<const char*, int>{"1m", 1}, {"5m", 5}, {"15m", 15}}) {
    // The oldest sample inside the window; the rate covers what it has seen.
    const RateSample* from = &rate_samples_.back();
    for (const RateSample& s : rate_samples_) {
      if (now - s.unix_ms <= minutes * 60'000) {
        from = &s;
        break;
      }
    }
    double span_min =
        std::max<double>(1.0, static_cast<double>(now - from->unix_ms)) /
        60'000.0;
    for (size_t i = 0; i < 4; ++i) {
      auto* sample = stats->add_samples();
      sample->set_name("mailfarm_rate_per_minute");
      (*sample->mutable_labels())["event"] = kRateEvents[i];
      (*sample->mutable_labels())["window"] = window;
      double delta =
          static_cast<double>(counter(kRateEvents[i]) - from->counts[i]);
      sample->set_value(span_min > 0 ? delta / span_min : 0);
    }
  }
}

void QueueManager::FillStats(Stats* stats) const {
  std::map<std::string, uint64_t> by_state;
  uint64_t bytes = 0;
  for (const auto& [id, job] : jobs_) {
    ++by_state[job->held && job->state != kActive ? "hold"
                                                  : StateName(job->state)];
    bytes += job->body_size;
  }
  auto* spool_bytes = stats->add_samples();
  spool_bytes->set_name("mailfarm_spool_bytes");
  spool_bytes->set_value(static_cast<double>(bytes));
  for (const char* s : {"active", "deferred", "hold"}) {
    auto* sample = stats->add_samples();
    sample->set_name("mailfarm_queue_jobs");
    (*sample->mutable_labels())["state"] = s;
    sample->set_value(static_cast<double>(by_state[s]));
  }
  for (const auto& [key, value] : deliveries_) {
    auto* sample = stats->add_samples();
    sample->set_name("mailfarm_deliveries_total");
    (*sample->mutable_labels())["channel"] = key.first;
    (*sample->mutable_labels())["status"] = key.second;
    sample->set_value(static_cast<double>(value));
  }
  for (const auto& [name, value] : counters_) {
    auto* sample = stats->add_samples();
    sample->set_name("mailfarm_scheduler_" + name + "_total");
    sample->set_value(static_cast<double>(value));
  }
  destinations_.FillStats(stats);
}

}  // namespace mailfarm::scheduler

namespace mailfarm::scheduler {

void QueueManager::AppendHistograms(MetricsPage* page) const {
  inject_latency_.AppendTo(
      page, "mailfarm_inject_durable_seconds",
      "Time from a complete injection to its durable acknowledgement.", {});
  delivery_latency_.AppendTo(
      page, "mailfarm_delivery_seconds",
      "Time from arrival to a recipient's successful delivery.", {});
}

}  // namespace mailfarm::scheduler
