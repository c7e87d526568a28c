// farm_link.cc: connections to one farm, one job per connection at a time.
#include "scheduler/farm_link.h"

#include <glog/logging.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "farm/ascii.h"
#include "farm/sockets.h"

namespace mailfarm::scheduler {

namespace {
constexpr int64_t kMinRetryMs = 100;
constexpr int64_t kMaxRetryMs = 5000;

// A non-blocking connect: on a Unix socket it completes or fails at once
// (EAGAIN when the farm's backlog is full), so the loop never waits.
farm::StatusOr<farm::UniqueFd> ConnectNow(const std::string& path) {
  farm::UniqueFd fd(
      ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return farm::Status::FromErrno("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return farm::Status::Invalid(path + ": path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) !=
      0) {
    return farm::Status::FromErrno("connect " + path, errno);
  }
  // Not only the socket's mode: the farm behind it must be the service
  // account's (or root's), or jobs and message paths would go to another user.
  farm::Status ours = farm::CheckPeerIsUs(fd.get());
  if (!ours.ok()) return farm::Status::Error(path + ": " + ours.message());
  return fd;
}
}  // namespace

struct FarmLink::Conn {
  enum class State { kWaitHello, kIdle, kBusy };
  FarmLink* link = nullptr;
  std::unique_ptr<farm::EventChannel> channel;
  State state = State::kWaitHello;
  WorkItem item;
  event* timer = nullptr;
  int pid = 0;
  ~Conn() {
    if (timer != nullptr) event_free(timer);
  }
};

FarmLink::FarmLink(event_base* base, std::string farm, std::string socket_path,
                   Limits limits, Callbacks callbacks, farm::Clock* clock)
    : base_(base),
      farm_(std::move(farm)),
      socket_path_(std::move(socket_path)),
      limits_(limits),
      callbacks_(std::move(callbacks)),
      clock_(clock),
      alive_(std::make_shared<bool>(true)) {
  retry_timer_ = evtimer_new(base_, &FarmLink::OnRetryTimer, this);
}

FarmLink::~FarmLink() {
  *alive_ = false;
  conns_.clear();
  if (retry_timer_ != nullptr) event_free(retry_timer_);
}

size_t FarmLink::busy() const { return busy_; }

size_t FarmLink::Room() const {
  size_t taken = busy_ + queue_.size();
  return taken < limits_.max_connections ? limits_.max_connections - taken : 0;
}

void FarmLink::SetLimits(Limits limits) {
  limits_ = limits;
  Pump();
}

std::vector<WorkItem> FarmLink::Cancel(uint64_t job_id) {
  std::vector<WorkItem> dropped;
  std::erase_if(queue_, [job_id, &dropped](const WorkItem& w) {
    if (w.job_id != job_id) return false;
    dropped.push_back(w);
    return true;
  });
  return dropped;
}

void FarmLink::Submit(WorkItem item) {
  item.queued_ms = clock_->MonotonicMs();
  queue_.push_back(item);
  Pump();
}

void FarmLink::Pump() {
  std::weak_ptr<bool> alive = alive_;
  size_t waiting = 0;
  for (auto& conn : conns_) {
    if (conn->state == Conn::State::kWaitHello) ++waiting;
  }
  while (!queue_.empty()) {
    bool in_session = false;
    Conn* conn = PickConnection(queue_.front(), &in_session);
    if (conn == nullptr) break;
    WorkItem item = queue_.front();
    queue_.pop_front();
    Job job;
    if (!callbacks_.build(item, &job)) continue;  // the job changed its mind
    if (in_session) ++counters_.affinity_hits;
    affinity_.Forget(reinterpret_cast<SessionAffinity::ConnId>(conn));
    item.sent_ms = clock_->MonotonicMs();
    job.set_deadline_unix_ms(clock_->NowUnixMs() + limits_.job_timeout_ms);
    conn->item = item;
    conn->state = Conn::State::kBusy;
    ++busy_;
    timeval tv{
        static_cast<time_t>(limits_.job_timeout_ms / 1000),
        static_cast<suseconds_t>((limits_.job_timeout_ms % 1000) * 1000)};
    evtimer_add(conn->timer, &tv);
    ++counters_.jobs_sent;
    conn->channel->Send(job);
  }
  // More work than free or starting connections: open another, up to the cap.
  while (!retry_pending_ && queue_.size() > waiting &&
         conns_.size() < limits_.max_connections) {
    size_t before = conns_.size();
    OpenConnection();
    if (alive.expired() || conns_.size() == before) break;
    ++waiting;
  }
}

FarmLink::Conn* FarmLink::PickConnection(const WorkItem& item,
                                         bool* in_session) {
  if (auto held = affinity_.Find(item.session); held.has_value()) {
    *in_session = true;
    return reinterpret_cast<Conn*>(*held);
  }
  // A child in session with another destination is the last choice: the
  // job would close a session that destination's next job could reuse.
  Conn* fallback = nullptr;
  for (auto& conn : conns_) {
    if (conn->state != Conn::State::kIdle) continue;
    auto id = reinterpret_cast<SessionAffinity::ConnId>(conn.get());
    if (!affinity_.HoldsSession(id)) return conn.get();
    if (fallback == nullptr) fallback = conn.get();
  }
  return fallback;
}

void FarmLink::OpenConnection() {
  auto fd = ConnectNow(socket_path_);
  if (!fd.ok()) {
    ++counters_.connect_failures;
    // Once per reason: a socket that appears but is refused is news.
    if (reachable_ || fd.status().message() != unreachable_why_) {
      LOG(WARNING) << farm_ << ": farm unreachable (" << fd.status().message()
                   << "); jobs wait, retrying";
      reachable_ = false;
      unreachable_why_ = fd.status().message();
    }
    ScheduleRetry();
    return;
  }
  auto conn = std::make_unique<Conn>();
  Conn* raw = conn.get();
  raw->link = this;
  raw->timer = evtimer_new(base_, &FarmLink::OnJobTimer, raw);
  raw->channel = std::make_unique<farm::EventChannel>(
      base_, std::move(*fd), limits_.max_frame_bytes, farm_);
  conns_.push_back(std::move(conn));
  raw->channel->Start(
      [this, raw](std::string_view payload) { OnFrame(raw, payload); },
      [this, raw](const farm::Status& why) { OnClose(raw, why); });
}

void FarmLink::ScheduleRetry() {
  if (retry_pending_) return;
  retry_pending_ = true;
  retry_delay_ms_ = retry_delay_ms_ == 0
                        ? kMinRetryMs
                        : std::min(kMaxRetryMs, retry_delay_ms_ * 2);
  timeval tv{static_cast<time_t>(retry_delay_ms_ / 1000),
             static_cast<suseconds_t>((retry_delay_ms_ % 1000) * 1000)};
  evtimer_add(retry_timer_, &tv);
}

void FarmLink::OnRetryTimer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<FarmLink*>(arg);
  self->retry_pending_ = false;
  self->Pump();
}

void FarmLink::OnFrame(Conn* conn, std::string_view payload) {
  ChildFrame frame;
  if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    OnClose(conn,
            farm::Status::Invalid(farm_ + ": unparsable frame from a child"));
    return;
  }
  if (frame.has_hello() && conn->state == Conn::State::kWaitHello) {
    conn->pid = frame.hello().pid();
    conn->state = Conn::State::kIdle;
    if (!reachable_) LOG(INFO) << farm_ << ": farm reachable again";
    reachable_ = true;
    unreachable_why_.clear();
    retry_delay_ms_ = 0;
    Pump();
    return;
  }
  if (frame.has_result() && conn->state == Conn::State::kBusy) {
    WorkItem item = conn->item;
    evtimer_del(conn->timer);
    conn->state = Conn::State::kIdle;
    --busy_;
    ++counters_.results;
    affinity_.SetIdle(reinterpret_cast<SessionAffinity::ConnId>(conn),
                      // Lower case, as WorkItem::session: a transport reports
                      // the nexthop as it was routed.
                      farm::AsciiLower(frame.result().open_session()));
    std::weak_ptr<bool> alive = alive_;
    callbacks_.on_result(item, frame.result());
    if (!alive.expired()) Pump();
    return;
  }
  OnClose(conn,
          farm::Status::Invalid(farm_ + ": unexpected frame from child pid " +
                                std::to_string(conn->pid)));
}

void FarmLink::OnClose(Conn* conn, const farm::Status& why) {
  bool had_job = conn->state == Conn::State::kBusy;
  bool before_hello = conn->state == Conn::State::kWaitHello;
  WorkItem item = conn->item;
  if (had_job) {
    ++counters_.child_deaths;
    LOG(WARNING) << farm_ << ": child pid " << conn->pid
                 << " lost its connection mid-job (" << why.message()
                 << "); the job is requeued";
  }
  Dispose(conn);
  std::weak_ptr<bool> alive = alive_;
  if (had_job)
    callbacks_.on_abort(item,
                        farm::Status::TempFail(farm_ + " child died mid-job"));
  if (alive.expired()) return;
  if (before_hello) ScheduleRetry();  // a farm closing at once must not spin us
  Pump();
}

void FarmLink::OnJobTimer(evutil_socket_t, short, void* arg) {
  auto* conn = static_cast<Conn*>(arg);
  conn->link->OnTimeout(conn);
}

void FarmLink::OnTimeout(Conn* conn) {
  WorkItem item = conn->item;
  ++counters_.timeouts;
  LOG(WARNING) << farm_ << ": child pid " << conn->pid << " ran past the "
               << limits_.job_timeout_ms
               << " ms job timeout; closing it and requeueing the job";
  Dispose(conn);
  std::weak_ptr<bool> alive = alive_;
  callbacks_.on_abort(item, farm::Status::TempFail(farm_ + " child timed out"));
  if (!alive.expired()) Pump();
}

void FarmLink::Dispose(Conn* conn) {
  if (conn->state == Conn::State::kBusy) --busy_;
  affinity_.Forget(reinterpret_cast<SessionAffinity::ConnId>(conn));
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() == conn) {
      conns_.erase(it);  // closes the channel (safe inside its own callback)
      return;
    }
  }
}

}  // namespace mailfarm::scheduler
