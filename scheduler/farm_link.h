// farm_link.h: the scheduler's persistent connections to one farm (router.sock,
// filter.sock or transport-<channel>.sock). The child speaks first (Hello),
// then takes one Job at a time; FarmLink caps the connections, times out a
// stuck job, notices a dead child, reconnects with backoff when the farm is
// unreachable, and sends a destination's job to the idle child that still
// holds an SMTP session there (affinity). Used by the queue manager on the
// loop thread.
#ifndef MAILFARM_SCHEDULER_FARM_LINK_H_
#define MAILFARM_SCHEDULER_FARM_LINK_H_

#include <event2/event.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "farm/clock.h"
#include "farm/event_channel.h"
#include "farm/status.h"
#include "scheduler/session_affinity.h"
#include "wire.pb.h"

namespace mailfarm::scheduler {

// A unit of work for a farm: which job, and which of its delivery groups.
struct WorkItem {
  uint64_t job_id = 0;
  Stage stage = STAGE_UNSPECIFIED;
  uint32_t group = 0;     // STAGE_DELIVER: index into the job's groups
  int64_t queued_ms = 0;  // monotonic, when it was submitted
  int64_t sent_ms = 0;    // monotonic, when a child got it
  // STAGE_DELIVER: the DestinationTable slot the item holds (kNoDestination
  // when none) and its session key ("<channel> <destination>", lower case),
  // which FarmLink matches against the children's open sessions.
  static constexpr uint32_t kNoDestination = UINT32_MAX;
  uint32_t destination = kNoDestination;
  std::string session;
};

struct FarmLinkCounters {
  uint64_t jobs_sent = 0;
  uint64_t results = 0;
  uint64_t child_deaths = 0;  // a connection closed with a job on it
  uint64_t timeouts = 0;      // a job ran past the stage timeout
  uint64_t connect_failures = 0;
  uint64_t affinity_hits = 0;  // sent to a child already in session there
};

// Not thread-safe: loop thread only.
class FarmLink {
 public:
  struct Callbacks {
    // Fills the Job for `item`; false when the job no longer wants the work
    // (deleted or held meanwhile): the item is dropped.
    std::function<bool(const WorkItem& item, Job* job)> build;
    std::function<void(const WorkItem& item, const Result& result)> on_result;
    // The child died or timed out with the item: the caller requeues it.
    std::function<void(const WorkItem& item, const farm::Status& why)> on_abort;
  };
  struct Limits {
    size_t max_connections = 8;
    int64_t job_timeout_ms = 60'000;
    size_t max_frame_bytes = 1 << 20;
  };

  FarmLink(event_base* base, std::string farm, std::string socket_path,
           Limits limits, Callbacks callbacks, farm::Clock* clock);
  ~FarmLink();
  FarmLink(const FarmLink&) = delete;
  FarmLink& operator=(const FarmLink&) = delete;

  // Queues work; sends it as soon as a child is free. Never blocks.
  void Submit(WorkItem item);
  void SetLimits(Limits limits);
  // Drops queued (not yet sent) work of a job and returns it.
  std::vector<WorkItem> Cancel(uint64_t job_id);
  // How many more items would find a connection (busy or not yet open)
  // instead of waiting in this link's queue: callers that keep their own
  // fair order (the destination table) submit only that many.
  size_t Room() const;
  const std::string& farm() const { return farm_; }
  size_t queued() const { return queue_.size(); }
  size_t busy() const;
  // Idle connections whose child holds an open session.
  size_t open_sessions() const { return affinity_.open_sessions(); }
  size_t connections() const { return conns_.size(); }
  bool reachable() const { return reachable_; }
  const FarmLinkCounters& counters() const { return counters_; }

 private:
  struct Conn;
  void Pump();
  // The idle connection for `item`: the one in session with its destination,
  // else one without a session, else any idle one; nullptr when none is idle.
  // `in_session` tells whether it is the first kind (an affinity hit).
  Conn* PickConnection(const WorkItem& item, bool* in_session);
  void OpenConnection();
  void OnFrame(Conn* conn, std::string_view payload);
  void OnClose(Conn* conn, const farm::Status& why);
  void OnTimeout(Conn* conn);
  void Dispose(Conn* conn);
  void ScheduleRetry();
  static void OnRetryTimer(evutil_socket_t, short, void* arg);
  static void OnJobTimer(evutil_socket_t, short, void* arg);

  event_base* base_;
  std::string farm_;
  std::string socket_path_;
  Limits limits_;
  Callbacks callbacks_;
  farm::Clock* clock_;
  std::deque<WorkItem> queue_;
  std::list<std::unique_ptr<Conn>> conns_;
  size_t busy_ = 0;
  SessionAffinity affinity_;  // ConnId: the Conn's address
  event* retry_timer_ = nullptr;
  bool retry_pending_ = false;
  int64_t retry_delay_ms_ = 0;
  bool reachable_ = true;
  std::string unreachable_why_;  // the reason last logged
  FarmLinkCounters counters_;
  std::shared_ptr<bool> alive_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_FARM_LINK_H_
