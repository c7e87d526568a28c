// supervisor.cc: component processes of mailfarmd: plan, start, watch, restart,
// reload, stop.
#include "farm/supervisor.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "farm/clock.h"
#include "farm/inherited_key.h"
#include "farm/sd_notify.h"
#include "farm/signal_fd.h"
#include "farm/sockets.h"

namespace farm {

namespace {

constexpr int kLoopMs = 200;

int64_t NowMs() { return RealClock()->MonotonicMs(); }

bool Disabled(const Config& config, const std::string& name) {
  const auto& off = config.supervisor().disable();
  return std::find(off.begin(), off.end(), name) != off.end();
}

bool IsExecutable(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0;
}

// argv[0] as written in the config: absolute, relative to bin_dir, or from
// PATH.
std::string FindProgram(const std::string& name, const std::string& bin_dir) {
  if (name.find('/') != std::string::npos) return name;
  std::string in_bin = bin_dir + "/" + name;
  if (IsExecutable(in_bin)) return in_bin;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (IsExecutable(candidate)) return candidate;
    start = end + 1;
  }
  return in_bin;
}

std::string Describe(int status) {
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

StatusOr<std::vector<Component>> PlanComponents(const Config& config,
                                                const std::string& config_path,
                                                const std::string& bin_dir) {
  std::vector<Component> plan;
  auto add = [&](const std::string& name, const std::string& binary,
                 std::vector<std::string> extra) {
    if (Disabled(config, name)) return;
    Component c;
    c.name = name;
    c.argv = {bin_dir + "/" + binary, "--config", config_path};
    c.argv.insert(c.argv.end(), extra.begin(), extra.end());
    plan.push_back(std::move(c));
  };
  // Farms first: the scheduler connects to them; the front end last, so that
  // nothing is accepted before the scheduler can make it durable.
  add("router", "mailfarm-router", {});
  if (config.scheduler().filter_enabled()) add("filter", "mailfarm-filter", {});
  for (const auto& channel : config.channel()) {
    add(TransportFarmName(channel.name()), "mailfarm-transport",
        {"--channel", channel.name()});
  }
  for (const auto& program : config.supervisor().program()) {
    if (program.argv_size() == 0) {
      return Status::Invalid("supervisor program \"" + program.name() +
                             "\" has no argv");
    }
    Component c;
    c.name = program.name();
    c.argv.assign(program.argv().begin(), program.argv().end());
    c.argv[0] = FindProgram(c.argv[0], bin_dir);
    plan.push_back(std::move(c));
  }
  add("scheduler", "mailfarm-scheduler", {});
  if (config.smtpd().listen_size() > 0) {
    add("smtpd", "mailfarm-smtpd", {});
    if (!plan.empty() && plan.back().name == "smtpd") {
      plan.back().takes_listeners = true;
      plan.back().waits_for_scheduler = !Disabled(config, "scheduler");
    }
  }
  for (const Component& c : plan) {
    if (!IsExecutable(c.argv[0])) {
      return Status::NotFound(c.name + ": program " + c.argv[0] +
                              " is missing or not executable");
    }
  }
  return plan;
}

StatusOr<std::vector<UniqueFd>> BindSmtpdListeners(const Config& config) {
  std::vector<UniqueFd> fds;
  if (Disabled(config, "smtpd")) return fds;
  for (const auto& listener : config.smtpd().listen()) {
    auto fd = ListenTcp(listener.address(), static_cast<int>(listener.port()));
    if (!fd.ok())
      return Status::Error("smtpd listener: " + fd.status().message());
    fds.push_back(std::move(*fd));
  }
  return fds;
}

Supervisor::Supervisor(Config config, std::string config_path,
                       std::string bin_dir, std::vector<Component> components,
                       std::vector<UniqueFd> listeners)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      bin_dir_(std::move(bin_dir)),
      components_(std::move(components)),
      listeners_(std::move(listeners)) {}

namespace {

// In a forked child before exec: puts `listeners` at fds 3.. and announces them
// the way systemd socket activation does; `tls_key` (when >= 0) follows them,
// named by MAILFARM_TLS_KEY_FD (farm/inherited_key.h).
void PassListeners(const std::vector<UniqueFd>& listeners, int tls_key) {
  // First out of the way (above any target number), then into place, so that
  // no dup2 overwrites a listener not yet moved.
  std::vector<int> high;
  for (const UniqueFd& fd : listeners)
    high.push_back(::fcntl(fd.get(), F_DUPFD, 100));
  if (tls_key >= 0) {
    int key_high = ::fcntl(tls_key, F_DUPFD, 100);
    int target = 3 + static_cast<int>(high.size());
    high.push_back(key_high);
    ::setenv(kTlsKeyFdEnv, std::to_string(target).c_str(), 1);
  }
  for (size_t i = 0; i < high.size(); ++i) {
    ::dup2(high[i],
           3 + static_cast<int>(i));  // dup2 clears FD_CLOEXEC on the copy
    ::close(high[i]);
  }
  ::setenv("LISTEN_FDS", std::to_string(listeners.size()).c_str(), 1);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
}

}  // namespace

int Supervisor::Run() {
  auto signals = SignalFd::Open({SIGCHLD, SIGTERM, SIGINT, SIGHUP});
  if (!signals.ok()) {
    LOG(ERROR) << signals.status().message();
    return 71;
  }
  LOG(INFO) << "mailfarmd: starting " << components_.size() << " components";
  for (Component& c : components_) {
    if (!c.waits_for_scheduler) Start(c);
  }
  for (;;) {
    for (int signo : signals->Wait(kLoopMs)) {
      if (signo == SIGTERM || signo == SIGINT) {
        LOG(INFO) << "mailfarmd: " << strsignal(signo) << "; stopping";
        Stop();
        return 0;
      }
      if (signo == SIGHUP) Reload();
    }
    int64_t now = NowMs();
    ReapChildren(now);
    StartDue(now);
    if (!scheduler_up_) CheckReady();
  }
}

void Supervisor::Start(Component& c) {
  pid_t pid = ::fork();
  if (pid < 0) {
    PLOG(ERROR) << "mailfarmd: fork for " << c.name;
    c.next_start_ms = NowMs() + 1000;
    return;
  }
  if (pid == 0) {
    // Own process group, so that a stop reaches the farm's children too; and
    // die with mailfarmd so that a restarted mailfarmd never finds orphans
    // holding the spool lock or the sockets.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    if (c.takes_listeners) PassListeners(listeners_, tls_key_.get());
    std::vector<char*> argv;
    for (std::string& arg : c.argv) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "mailfarmd: exec %s: %s\n", argv[0],
                 std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid,
            pid);  // also from the parent: no race with an early kill(-pid)
  c.pid = pid;
  c.ever_started = true;
  c.started_ms = NowMs();
  LOG(INFO) << "mailfarmd: started " << c.name << " (pid " << pid << ")";
}

void Supervisor::StartDue(int64_t now) {
  for (Component& c : components_) {
    if (c.pid == 0 && !c.one_shot && c.next_start_ms != 0 &&
        now >= c.next_start_ms) {
      c.next_start_ms = 0;
      Start(c);
    }
  }
}

void Supervisor::ReapChildren(int64_t now) {
  const auto& sup = config_.supervisor();
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (Component& c : components_) {
      if (c.pid != pid) continue;
      c.pid = 0;
      if (c.one_shot) {
        c.finished = true;
        LOG(INFO) << "mailfarmd: " << c.name << " " << Describe(status);
        if (c.name == "replay" && replay_again_) {
          replay_again_ = false;
          if (scheduler_up_) Start(c);
        }
        break;
      }
      if (c.name == "scheduler") scheduler_up_ = false;
      // Back off 1 s, 2 s, 4 s ... up to the maximum; a component that stayed
      // up long enough starts again from the minimum.
      bool ran_long = now - c.started_ms >= sup.restart_reset_after_ms();
      c.backoff_ms = (ran_long || c.backoff_ms == 0)
                         ? sup.restart_backoff_min_ms()
                         : std::min<int64_t>(c.backoff_ms * 2,
                                             sup.restart_backoff_max_ms());
      c.next_start_ms = now + c.backoff_ms;
      LOG(WARNING) << "mailfarmd: " << c.name << " (pid " << pid << ") "
                   << Describe(status) << "; restarting in " << c.backoff_ms
                   << " ms";
      break;
    }
  }
}

void Supervisor::CheckReady() {
  // Ready once the scheduler takes injections (or at once without one).
  bool has_scheduler =
      std::any_of(components_.begin(), components_.end(),
                  [](const Component& c) { return c.name == "scheduler"; });
  if (has_scheduler) {
    auto probe = ConnectUnix(InjectSocketPath(config_));
    if (!probe.ok()) return;
  }
  scheduler_up_ = true;
  for (Component& c : components_) {
    if (c.waits_for_scheduler && !c.ever_started) Start(c);
  }
  if (!ready_) {
    ready_ = true;
    SdNotify("READY=1\nSTATUS=running");
    LOG(INFO) << "mailfarmd: ready";
  }
  // Every scheduler start, not just the first: a restarted scheduler begins
  // with an empty queue and must be handed back what the spool holds.
  if (has_scheduler && config_.supervisor().run_replay()) StartReplay();
}

void Supervisor::StartReplay() {
  std::string binary = bin_dir_ + "/mailfarm-replay";
  if (!IsExecutable(binary)) {
    LOG(ERROR) << "mailfarmd: " << binary
               << " is missing: jobs left in the spool by an "
               << "earlier run are NOT handed back to the scheduler";
    return;
  }
  for (Component& c : components_) {
    if (c.name != "replay") continue;
    // One still running talks to the scheduler that died: run again after it.
    if (c.pid > 0) {
      replay_again_ = true;
    } else {
      Start(c);
    }
    return;
  }
  Component replay;
  replay.name = "replay";
  replay.one_shot = true;
  replay.argv = {binary, "--config", config_path_};
  components_.push_back(std::move(replay));
  Start(components_.back());
}

void Supervisor::Reload() {
  SdNotify("RELOADING=1");
  auto fresh = LoadConfig(config_path_);
  if (!fresh.ok()) {
    LOG(ERROR)
        << "mailfarmd: reload refused, keeping the running configuration: "
        << fresh.status().message();
  } else {
    config_ = std::move(*fresh);
    LOG(INFO) << "mailfarmd: configuration reloaded; forwarding SIGHUP "
              << "(added or removed channels take effect at the next restart)";
  }
  for (const Component& c : components_) {
    if (c.pid > 0 && !c.one_shot) ::kill(c.pid, SIGHUP);
  }
  SdNotify("READY=1");
}

void Supervisor::Stop() {
  SdNotify("STOPPING=1");
  int64_t timeout = config_.supervisor().stop_timeout_ms();
  // Reverse start order: front end, scheduler, then the farms.
  for (auto it = components_.rbegin(); it != components_.rend(); ++it) {
    Component& c = *it;
    if (c.pid <= 0) continue;
    ::kill(c.pid, SIGTERM);
    int64_t deadline = NowMs() + timeout;
    for (;;) {
      int status = 0;
      pid_t got = ::waitpid(c.pid, &status, WNOHANG);
      if (got == c.pid) break;
      if (NowMs() >= deadline) {
        LOG(WARNING) << "mailfarmd: " << c.name << " did not stop in "
                     << timeout << " ms; killing its process group";
        ::kill(-c.pid, SIGKILL);
        ::waitpid(c.pid, &status, 0);
        break;
      }
      ::usleep(20 * 1000);
    }
    // Anything left in its group (a farm child past its manager) goes too.
    ::kill(-c.pid, SIGKILL);
    LOG(INFO) << "mailfarmd: stopped " << c.name;
    c.pid = 0;
  }
  // Reap whatever else is left.
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace farm
