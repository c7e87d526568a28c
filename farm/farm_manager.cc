// farm_manager.cc: the prefork manager (fork, reap, spare pool, recycling,
// stuck-child kill, crash throttle, generations) and the child's accept loop.
// The manager is single-threaded and learns of signals through a signalfd, so
// it never blocks on a child and needs no async-signal-safe trickery.
#include "farm/farm_manager.h"

#include <glog/logging.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "farm/accept_throttle.h"
#include "farm/clock.h"
#include "farm/pool_policy.h"
#include "farm/scoreboard.h"
#include "farm/signal_fd.h"
#include "farm/sockets.h"

namespace farm {

namespace {

constexpr int kTickMs = 1000;
// How long an idle child sleeps in poll() before re-checking whether it should
// leave (generation change, stop, exit request).
constexpr int kChildPollMs = 1000;
// A stuck child gets SIGTERM, then SIGKILL after this grace.
constexpr int64_t kStuckKillGraceMs = 5000;

int64_t NowMs() { return RealClock()->MonotonicMs(); }

SlotState StateOf(const ScoreboardSlot& slot) {
  return static_cast<SlotState>(slot.state.load(std::memory_order_relaxed));
}

void SetState(ScoreboardSlot& slot, SlotState state) {
  slot.state.store(static_cast<uint32_t>(state), std::memory_order_relaxed);
}

class Manager {
 public:
  Manager(FarmSpec spec, HandlerFactory factory,
          std::unique_ptr<Scoreboard> board)
      : spec_(std::move(spec)),
        factory_(std::move(factory)),
        board_(std::move(board)),
        throttle_(static_cast<int>(spec_.pool.crash_throttle_after()),
                  spec_.pool.crash_throttle_ms()) {}

  int Run();

 private:
  void Tick();
  void Spawn(int count);
  [[noreturn]] void ChildMain(int slot, uint64_t generation);
  void ReapChildren();
  void HandleSignal(int signo);
  void KillStuckChildren();
  void BeginStop();
  bool StopFinished();
  PoolCounts CountChildren() const;
  int FindFreeSlot() const;

  FarmSpec spec_;
  HandlerFactory factory_;
  std::unique_ptr<Scoreboard> board_;
  CrashThrottle throttle_;
  std::optional<SignalFd> signals_;
  int spawn_rate_ = 1;
  bool stopping_ = false;
  int64_t stop_deadline_ms_ = 0;
  bool killed_all_ = false;
  // Per slot: when SIGTERM was sent to a stuck child (0 = not sent).
  std::vector<int64_t> term_sent_ms_;
};

int Manager::Run() {
  auto signals = SignalFd::Open({SIGCHLD, SIGTERM, SIGINT, SIGHUP});
  if (!signals.ok()) {
    LOG(ERROR) << spec_.name << ": " << signals.status().message();
    return 71;
  }
  signals_.emplace(std::move(*signals));
  term_sent_ms_.assign(board_->slot_count(), 0);
  LOG(INFO) << spec_.name
            << ": farm manager started (start=" << spec_.pool.start_children()
            << " min_spare=" << spec_.pool.min_spare()
            << " max_spare=" << spec_.pool.max_spare()
            << " max_children=" << spec_.pool.max_children() << ")";
  Spawn(static_cast<int>(spec_.pool.start_children()));

  int64_t next_tick = NowMs() + kTickMs;
  for (;;) {
    int wait = static_cast<int>(std::max<int64_t>(0, next_tick - NowMs()));
    for (int signo : signals_->Wait(wait)) HandleSignal(signo);
    ReapChildren();
    if (stopping_) {
      if (StopFinished()) break;
    } else if (NowMs() >= next_tick) {
      Tick();
      next_tick = NowMs() + kTickMs;
    }
    if (stopping_ && NowMs() >= next_tick) next_tick = NowMs() + 100;
  }
  LOG(INFO) << spec_.name << ": farm manager stopped";
  return 0;
}

void Manager::HandleSignal(int signo) {
  switch (signo) {
    case SIGCHLD:
      break;  // ReapChildren runs after every wake-up
    case SIGHUP: {
      if (spec_.reload) spec_.reload();
      uint64_t gen = board_->header().generation.fetch_add(1) + 1;
      LOG(INFO) << spec_.name << ": graceful restart, generation " << gen;
      spawn_rate_ = 1;
      // Old children leave by themselves after their current work; fill the new
      // generation's pool at once so no connection waits.
      Spawn(static_cast<int>(spec_.pool.start_children()));
      break;
    }
    case SIGTERM:
    case SIGINT:
      if (!stopping_) BeginStop();
      break;
  }
}

PoolCounts Manager::CountChildren() const {
  PoolCounts counts;
  uint64_t gen = board_->header().generation.load();
  for (int i = 0; i < board_->slot_count(); ++i) {
    const ScoreboardSlot& slot = board_->slot(i);
    SlotState state = StateOf(slot);
    if (state == SlotState::kFree) continue;
    bool current = slot.generation.load() == gen &&
                   state != SlotState::kExiting &&
                   slot.exit_requested.load() == 0;
    if (!current) continue;
    ++counts.total;
    if (state == SlotState::kStarting) ++counts.starting;
    if (state == SlotState::kIdle) ++counts.idle;
    if (state == SlotState::kBusy || state == SlotState::kConnected)
      ++counts.busy;
  }
  return counts;
}

void Manager::Tick() {
  KillStuckChildren();
  PoolCounts counts = CountChildren();
  PoolLimits limits{static_cast<int>(spec_.pool.min_spare()),
                    static_cast<int>(spec_.pool.max_spare()),
                    static_cast<int>(spec_.pool.max_children())};
  PoolDecision decision = DecidePool(counts, limits, spawn_rate_);
  spawn_rate_ = decision.next_spawn_rate;
  if (decision.spawn > 0) Spawn(decision.spawn);
  if (decision.kill_idle) {
    uint64_t gen = board_->header().generation.load();
    for (int i = 0; i < board_->slot_count(); ++i) {
      ScoreboardSlot& slot = board_->slot(i);
      if (StateOf(slot) == SlotState::kIdle && slot.generation.load() == gen &&
          slot.exit_requested.load() == 0) {
        slot.exit_requested.store(1);
        break;
      }
    }
  }
}

void Manager::KillStuckChildren() {
  uint32_t timeout = spec_.pool.job_timeout_ms();
  if (timeout == 0) return;
  int64_t now = NowMs();
  for (int i = 0; i < board_->slot_count(); ++i) {
    ScoreboardSlot& slot = board_->slot(i);
    pid_t pid = slot.pid.load();
    if (pid <= 0 || StateOf(slot) != SlotState::kBusy) continue;
    int64_t started = slot.job_started_ms.load();
    if (started == 0 || now - started < timeout) continue;
    if (term_sent_ms_[i] == 0) {
      LOG(WARNING) << spec_.name << ": child " << pid << " busy for "
                   << (now - started) << " ms (job_timeout_ms " << timeout
                   << "); sending SIGTERM";
      ::kill(pid, SIGTERM);
      term_sent_ms_[i] = now;
    } else if (now - term_sent_ms_[i] >= kStuckKillGraceMs) {
      LOG(WARNING) << spec_.name << ": child " << pid
                   << " ignored SIGTERM; sending SIGKILL";
      ::kill(pid, SIGKILL);
    }
  }
}

int Manager::FindFreeSlot() const {
  for (int i = 0; i < board_->slot_count(); ++i) {
    if (StateOf(board_->slot(i)) == SlotState::kFree) return i;
  }
  return -1;
}

void Manager::Spawn(int count) {
  if (stopping_) return;
  if (throttle_.Throttled(NowMs())) return;
  uint64_t gen = board_->header().generation.load();
  for (int n = 0; n < count; ++n) {
    if (CountChildren().total >= static_cast<int>(spec_.pool.max_children()))
      return;
    int slot_index = FindFreeSlot();
    if (slot_index < 0) return;
    ScoreboardSlot& slot = board_->slot(slot_index);
    slot.generation.store(gen);
    slot.jobs_done.store(0);
    slot.job_started_ms.store(0);
    slot.exit_requested.store(0);
    slot.child_started_unix_ms.store(RealClock()->NowUnixMs());
    SetState(slot, SlotState::kStarting);
    pid_t pid = ::fork();
    if (pid < 0) {
      PLOG(ERROR) << spec_.name << ": fork";
      SetState(slot, SlotState::kFree);
      return;
    }
    if (pid == 0) ChildMain(slot_index, gen);
    slot.pid.store(pid);
    term_sent_ms_[slot_index] = 0;
    board_->header().total_children.fetch_add(1);
  }
}

void Manager::ReapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    int index = -1;
    for (int i = 0; i < board_->slot_count(); ++i) {
      if (board_->slot(i).pid.load() == pid) {
        index = i;
        break;
      }
    }
    if (index < 0) continue;  // not one of ours (cannot happen, but harmless)
    ScoreboardSlot& slot = board_->slot(index);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool finished_a_job = slot.jobs_done.load() > 0 || clean;
    if (!clean && !stopping_) {
      if (WIFSIGNALED(status)) {
        LOG(WARNING) << spec_.name << ": child " << pid << " killed by signal "
                     << WTERMSIG(status) << " (" << slot.jobs_done.load()
                     << " jobs done)";
      } else {
        LOG(WARNING) << spec_.name << ": child " << pid
                     << " exited with status " << WEXITSTATUS(status);
      }
    }
    if (!stopping_ && throttle_.RecordExit(finished_a_job, NowMs())) {
      LOG(ERROR)
          << spec_.name
          << ": children die before finishing a job; throttling respawn for "
          << spec_.pool.crash_throttle_ms() << " ms";
    }
    slot.pid.store(0);
    slot.job_started_ms.store(0);
    SetState(slot, SlotState::kFree);
  }
}

void Manager::BeginStop() {
  stopping_ = true;
  stop_deadline_ms_ = NowMs() + spec_.pool.stop_grace_ms();
  board_->header().stopping.store(1);
  LOG(INFO) << spec_.name
            << ": stopping; children finish their current job (grace "
            << spec_.pool.stop_grace_ms() << " ms)";
  // Nothing new is accepted from now on.
  spec_.listeners.clear();
  // Children waiting for work sleep in poll(); SIGUSR1 cuts that short so the
  // stop takes milliseconds. Busy children are left alone: a signal could cut
  // a blocking call in the middle of their job.
  for (int i = 0; i < board_->slot_count(); ++i) {
    ScoreboardSlot& slot = board_->slot(i);
    SlotState state = StateOf(slot);
    pid_t pid = slot.pid.load();
    if (pid > 0 &&
        (state == SlotState::kIdle || state == SlotState::kConnected)) {
      ::kill(pid, SIGUSR1);
    }
  }
}

bool Manager::StopFinished() {
  int live = 0;
  for (int i = 0; i < board_->slot_count(); ++i) {
    if (board_->slot(i).pid.load() > 0) ++live;
  }
  if (live == 0) return true;
  if (!killed_all_ && NowMs() >= stop_deadline_ms_) {
    LOG(WARNING) << spec_.name << ": " << live
                 << " children still running after the grace; "
                 << "sending SIGKILL";
    for (int i = 0; i < board_->slot_count(); ++i) {
      pid_t pid = board_->slot(i).pid.load();
      if (pid > 0) ::kill(pid, SIGKILL);
    }
    killed_all_ = true;
  }
  return false;
}

// --- the child ---------------------------------------------------------------

void Manager::ChildMain(int slot_index, uint64_t generation) {
  int manager_pid = static_cast<int>(::getppid());
  // Die with the manager, even when it is killed with SIGKILL.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != manager_pid) ::_exit(0);
  signals_->ReleaseInChild();
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGHUP, SIG_IGN);  // the manager, not the terminal, says when to leave
  signal(SIGPIPE, SIG_IGN);
  // SIGUSR1 only interrupts poll() (see BeginStop); SA_RESTART keeps reads and
  // writes going.
  struct sigaction wake {};
  wake.sa_handler = [](int) {};
  wake.sa_flags = SA_RESTART;
  sigemptyset(&wake.sa_mask);
  sigaction(SIGUSR1, &wake, nullptr);

  ScoreboardSlot& slot = board_->slot(slot_index);
  slot.pid.store(::getpid());
  ChildContext ctx(board_.get(), slot_index, generation, spec_.pool.max_jobs(),
                   spec_.name, manager_pid);
  std::unique_ptr<ConnectionHandler> handler = factory_();
  if (!handler) {
    LOG(ERROR) << spec_.name << ": child could not initialise its handler";
    ::_exit(1);
  }
  std::vector<pollfd> pfds;
  std::vector<bool> unix_listener;
  for (const UniqueFd& fd : spec_.listeners) {
    pfds.push_back({fd.get(), POLLIN, 0});
    unix_listener.push_back(IsUnixSocket(fd.get()));
  }
  AcceptThrottle throttle(spec_.name + " child");
  SetState(slot, SlotState::kIdle);
  while (!ctx.ShouldExit()) {
    int n = ::poll(pfds.data(), pfds.size(), kChildPollMs);
    if (n <= 0 || ctx.ShouldExit()) continue;
    for (size_t i = 0; i < pfds.size(); ++i) {
      const pollfd& p = pfds[i];
      if (!(p.revents & POLLIN)) continue;
      // Listeners are non-blocking: when another child won the race, EAGAIN.
      int conn = ::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) {
        // Out of descriptors the listener stays readable: pause, or spin.
        int err = errno;
        if (AcceptThrottle::OutOfResources(err))
          ::poll(nullptr, 0, throttle.Failed(err));
        continue;
      }
      throttle.Succeeded();
      // A farm socket serves the scheduler only: its mode is not the only
      // guard against another local user.
      Status peer = unix_listener[i] ? CheckPeerIsUs(conn) : Status::Ok();
      if (!peer.ok()) {
        LOG(WARNING) << spec_.name
                     << ": refused a connection: " << peer.message();
        ::close(conn);
        continue;
      }
      SetState(slot, SlotState::kConnected);
      handler->Serve(UniqueFd(conn), ctx);
      slot.job_started_ms.store(0);
      SetState(slot, SlotState::kIdle);
      break;
    }
  }
  SetState(slot, SlotState::kExiting);
  handler.reset();
  ::_exit(0);
}

}  // namespace

ChildContext::ChildContext(Scoreboard* scoreboard, int slot,
                           uint64_t generation, uint32_t max_jobs,
                           std::string farm_name, int manager_pid)
    : scoreboard_(scoreboard),
      slot_(slot),
      generation_(generation),
      max_jobs_(max_jobs),
      farm_name_(std::move(farm_name)),
      manager_pid_(manager_pid) {}

void ChildContext::MarkBusy() {
  ScoreboardSlot& s = scoreboard_->slot(slot_);
  s.job_started_ms.store(NowMs());
  SetState(s, SlotState::kBusy);
}

void ChildContext::MarkConnected() {
  ScoreboardSlot& s = scoreboard_->slot(slot_);
  s.job_started_ms.store(0);
  SetState(s, SlotState::kConnected);
}

void ChildContext::JobDone() {
  ++jobs_done_;
  ScoreboardSlot& s = scoreboard_->slot(slot_);
  s.jobs_done.fetch_add(1);
  s.job_started_ms.store(0);
  scoreboard_->header().total_jobs.fetch_add(1);
}

bool ChildContext::ShouldExit() const {
  const ScoreboardHeader& header = scoreboard_->header();
  if (header.stopping.load() != 0) return true;
  if (header.generation.load() != generation_) return true;
  if (scoreboard_->slot(slot_).exit_requested.load() != 0) return true;
  if (max_jobs_ > 0 && jobs_done_ >= max_jobs_) return true;
  return ::getppid() != manager_pid_;
}

int RunFarm(FarmSpec spec, HandlerFactory factory) {
  // Room for a whole old generation finishing beside a full new one.
  int slots = static_cast<int>(spec.pool.max_children()) * 2 + 2;
  auto board = Scoreboard::Create(spec.scoreboard_path, spec.name, slots);
  if (!board.ok()) {
    LOG(ERROR) << spec.name << ": scoreboard: " << board.status().message();
    return 73;
  }
  Manager manager(std::move(spec), std::move(factory), std::move(*board));
  return manager.Run();
}

}  // namespace farm
