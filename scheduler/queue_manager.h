// queue_manager.h: the scheduler's queue: the job table, each job's way through
// router -> content filter -> transport(channel), durable per-recipient
// outcomes, retries with backoff, bounces (DSNs), expiry and the operator's
// hold/release/flush/delete/bounce. Runs on the loop thread; disk work goes
// through the SpoolStore, farm work through a StageDispatcher.
#ifndef MAILFARM_SCHEDULER_QUEUE_MANAGER_H_
#define MAILFARM_SCHEDULER_QUEUE_MANAGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config.pb.h"
#include "farm/clock.h"
#include "farm/status.h"
#include "scheduler/deferred_queue.h"
#include "scheduler/destination_table.h"
#include "scheduler/farm_link.h"
#include "scheduler/metrics.h"
#include "scheduler/retry_policy.h"
#include "scheduler/spool_store.h"
#include "spool.pb.h"
#include "wire.pb.h"

namespace mailfarm::scheduler {

// Where stage work goes. The real one is a set of FarmLinks; tests use a fake.
class StageDispatcher {
 public:
  virtual ~StageDispatcher() = default;
  // Queues `item` for `farm` ("router", "filter", "transport-<channel>").
  // False when no such farm is configured (the work is not queued).
  virtual bool Submit(const std::string& farm, const WorkItem& item) = 0;
  // How many more items `farm` would start at once (FarmLink::Room);
  // nothing when no such farm is configured. Delivery work is submitted only
  // into this room, so its order is decided by the destination table.
  virtual std::optional<size_t> Room(const std::string& farm) const = 0;
  // Drops the job's work still waiting for a child (not what a child already
  // has) and returns it.
  virtual std::vector<WorkItem> Cancel(uint64_t job_id) = 0;
};

struct QueueSettings {
  RetryPolicy retry;
  int64_t bounce_lifetime_ms = 432'000'000;
  bool filter_enabled = true;
  std::string hostname = "localhost";
  std::string postmaster = "postmaster";
  std::string bounce_sender_name = "MAILER-DAEMON";
  size_t max_active =
      20'000;  // jobs in a stage at once; due jobs wait beyond it
  int max_aborts_per_attempt =
      2;  // child deaths before the attempt is deferred
  // Per channel and per destination concurrency, rates and dead-destination
  // rules (DestinationLimitsFromConfig).
  std::unordered_map<std::string, ChannelLimits> destinations;

  static QueueSettings FromConfig(const config::Config& config);
};

// Not thread-safe: the loop thread only.
class QueueManager {
 public:
  QueueManager(SpoolStore* store, StageDispatcher* dispatcher,
               farm::Clock* clock, QueueSettings settings);
  ~QueueManager();

  void SetDispatcher(StageDispatcher* dispatcher) { dispatcher_ = dispatcher; }
  void SetSettings(QueueSettings settings);

  // Makes an injected message durable and queues it. `done` gets the qid once
  // the message is on stable storage, or the store's failure.
  // With `spill` set the body is its file's bytes (SpoolStore::
  // CreateFromSpill) and `body` is empty.
  void Inject(spool::Envelope envelope, std::string body,
              std::shared_ptr<BodySpill> spill,
              std::function<void(farm::StatusOr<std::string>)> done);
  void Inject(spool::Envelope envelope, std::string body,
              std::function<void(farm::StatusOr<std::string>)> done) {
    Inject(std::move(envelope), std::move(body), nullptr, std::move(done));
  }

  // Replay: takes over the queue files at `paths` (qid -> path). `done` gets
  // the numbers adopted, already known, and failed (with the first failure's
  // text).
  struct AdoptCounts {
    uint32_t adopted = 0;
    uint32_t already_known = 0;
    uint32_t failed = 0;
    std::string first_error;
  };
  void Adopt(std::vector<std::pair<std::string, std::string>> jobs,
             std::function<void(AdoptCounts)> done);

  // Farm results (the FarmLink callbacks).
  bool BuildJob(const WorkItem& item, Job* job);
  void OnResult(const WorkItem& item, const Result& result);
  void OnAbort(const WorkItem& item, const farm::Status& why);

  // Starts jobs whose time has come and sends delivery work whose rate wait
  // is over; returns when the next job is due (ms, wall clock), if any. The
  // scheduler calls it from a timer.
  std::optional<int64_t> Tick();
  // Sends waiting delivery work of every channel into the farms' room. The
  // scheduler calls it when a farm gains room without a result (a reload).
  void PumpDeliveries();

  // Operator entry points (control.sock). Each returns how many jobs it
  // touched.
  uint32_t Hold(const Selector& selector);
  uint32_t Release(const Selector& selector);
  // Starts deferred jobs now. With a domain (or all), first ends the
  // suspension of the destinations of that name ("" with all: every one);
  // a flushed job whose destination is suspended under another name (a
  // nexthop such as "[10.0.0.1]:25") ends that suspension too.
  uint32_t Flush(const Selector& selector);
  uint32_t Delete(const Selector& selector);
  uint32_t Bounce(const Selector& selector);
  std::vector<QueueEntry> List(const Selector& selector) const;
  bool Show(const std::string& qid, QueueDetail* detail) const;
  // Reads the job's state records from its queue file (off the loop) and
  // gives them to `done` as attempt history, oldest first; empty when the job
  // is gone or its file cannot be read.
  void ReadHistory(const std::string& qid,
                   std::function<void(std::vector<AttemptRecord>)> done);
  void FillStats(Stats* stats) const;
  // mailfarm_rate_per_minute{event, window=1m|5m|15m} from samples of the
  // counters taken by Tick (every 10 s at most), for `mailfarmctl stats`.
  void FillRates(Stats* stats) const;
  // Inject (hand-over to durable) and delivery (arrival to sent) latencies.
  void AppendHistograms(MetricsPage* page) const;

  size_t size() const { return jobs_.size(); }
  size_t deferred() const { return deferred_.size(); }
  // Jobs in a stage, waiting for a farm, or waiting for the disk.
  size_t active() const { return active_; }
  const DestinationTable& destinations() const { return destinations_; }
  // Counter by name (tests and stats).
  uint64_t counter(const std::string& name) const;

 private:
  struct Job;
  struct Slot;
  struct Group;

  Job* Find(uint64_t id);
  Job* FindQid(const std::string& qid);
  std::vector<Job*> Select(const Selector& selector);
  void Register(std::unique_ptr<Job> job);
  void StartAttempt(Job* job);
  void Continue(Job* job);
  void DispatchRoute(Job* job);
  void DispatchFilter(Job* job);
  void DispatchDeliver(Job* job);
  void PumpChannel(const std::string& channel);
  // Ends the destination slot `item` holds (if any) with `feedback`; jobs
  // whose queued work the destination's suspension returns are deferred.
  void CompleteDestination(const WorkItem& item, DestinationFeedback feedback);
  // A group that cannot go now because its destination is suspended until
  // `until_mono` (monotonic ms): the attempt ends for it without counting.
  void HoldBackGroup(Job* job, uint32_t group, int64_t until_mono);
  // Drops the job's work not yet with a child (farm queues and destination
  // queues), releasing destination slots; lowers in_flight.
  void CancelWaitingWork(Job* job);
  void ApplyRoute(Job* job, const Result& result);
  void ApplyFilter(Job* job, const Result& result);
  void ApplyDeliver(Job* job, const WorkItem& item, const Result& result);
  void StageFailed(Job* job, const std::string& text);
  void Settle(Job* job);
  void SendBounce(Job* job);
  void Defer(Job* job);
  void TrimForWaiting(Job* job);
  void RemoveJob(Job* job, const std::string& why);
  void Persist(Job* job, std::function<void(Job*)> then);
  void RunPersist(Job* job);
  void SetState(Job* job, int state);
  void LogDelivery(Job* job, const std::string& to, const std::string& orig,
                   const std::string& relay, const std::string& dsn,
                   const char* status, const std::string& text,
                   uint32_t child_ms);
  void Count(const std::string& name, uint64_t n = 1) { counters_[name] += n; }
  QueueEntry Entry(const Job& job) const;

  SpoolStore* store_;
  StageDispatcher* dispatcher_;
  farm::Clock* clock_;
  QueueSettings settings_;
  std::unordered_map<uint64_t, std::unique_ptr<Job>> jobs_;
  // Keys view Job::qid (a Job never moves and its qid never changes).
  std::unordered_map<std::string_view, uint64_t> by_qid_;
  DeferredQueue deferred_;
  DestinationTable destinations_;
  uint64_t next_id_ = 1;
  size_t active_ = 0;
  std::map<std::string, uint64_t> counters_;
  struct RateSample {
    int64_t unix_ms = 0;
    uint64_t counts[4] = {0, 0, 0,
                          0};  // injected, delivered, deferred, bounced
  };
  void SampleRates(int64_t now);
  std::deque<RateSample> rate_samples_;  // the last 15 minutes
  // Recipient outcomes by (channel, status: sent, deferred, bounced).
  std::map<std::pair<std::string, std::string>, uint64_t> deliveries_;
  std::mt19937_64 rng_;
  LatencyHistogram inject_latency_;
  LatencyHistogram delivery_latency_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_QUEUE_MANAGER_H_
