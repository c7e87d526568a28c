// scanner.cc: runs the external scanner (see scanner.h). The message goes in
// through a socketpair (so a scanner that stops reading gives EPIPE without a
// SIGPIPE: send(MSG_NOSIGNAL)), its output comes back through a pipe, and
// the scanner runs in its own process group so a timeout kills everything it
// started, not only the first process.
#include "filter/scanner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "farm/unique_fd.h"

extern char** environ;

namespace filter {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxOutputBytes = 64 * 1024;  // more is read and dropped
constexpr int kExitPollMs = 20;  // how often to look for the scanner's exit

ScanResult Failed(std::string reason) {
  ScanResult r;
  r.verdict = ScanResult::Verdict::kTempFail;
  r.failed = true;
  r.reason = std::move(reason);
  return r;
}

bool Listed(const google::protobuf::RepeatedField<uint32_t>& codes, int code) {
  return std::find(codes.begin(), codes.end(), static_cast<uint32_t>(code)) !=
         codes.end();
}

std::string FirstLine(const std::string& output) {
  std::string line = output.substr(0, output.find('\n'));
  while (!line.empty() &&
         (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.pop_back();
  }
  return line;
}

// True once `pid` has exited; it stays a zombie (WNOWAIT), so its process
// group id cannot be reused before we kill the group.
bool HasExited(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  if (::waitid(P_PID, static_cast<id_t>(pid), &info,
               WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;
  }
  return info.si_pid == pid;
}

// Owns the spawn attributes and file actions for one posix_spawn call.
class SpawnSetup {
 public:
  SpawnSetup(int stdin_fd, int stdout_fd) {
    posix_spawn_file_actions_init(&actions_);
    posix_spawn_file_actions_adddup2(&actions_, stdin_fd, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions_, stdout_fd, STDOUT_FILENO);
    // The child must not inherit the scheduler connection or the listener.
    posix_spawn_file_actions_addclosefrom_np(&actions_, 3);
    posix_spawnattr_init(&attr_);
    posix_spawnattr_setpgroup(&attr_,
                              0);  // its own process group, id = its pid
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2,
                    SIGALRM, SIGQUIT}) {
      sigaddset(&defaults, sig);
    }
    posix_spawnattr_setsigmask(&attr_, &empty);
    posix_spawnattr_setsigdefault(&attr_, &defaults);
    posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETPGROUP |
                                         POSIX_SPAWN_SETSIGMASK |
                                         POSIX_SPAWN_SETSIGDEF);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  const posix_spawn_file_actions_t* actions() const { return &actions_; }
  const posix_spawnattr_t* attr() const { return &attr_; }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

}  // namespace

ScanResult Scanner::Scan(std::string_view message,
                         Clock::time_point deadline) const {
  if (!enabled()) return Failed("no scanner command configured");
  const Clock::time_point own_deadline =
      Clock::now() + std::chrono::milliseconds(config_.timeout_ms());
  const bool own_limit = own_deadline <= deadline;
  deadline = std::min(deadline, own_deadline);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Failed(std::string("socketpair: ") + std::strerror(errno));
  }
  farm::UniqueFd in_ours(sv[0]), in_theirs(sv[1]);
  int pp[2];
  if (::pipe2(pp, O_CLOEXEC) != 0)
    return Failed(std::string("pipe: ") + std::strerror(errno));
  farm::UniqueFd out_ours(pp[0]), out_theirs(pp[1]);

  std::vector<char*> argv;
  for (const auto& arg : config_.argv())
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  {
    SpawnSetup setup(in_theirs.get(), out_theirs.get());
    int rc = ::posix_spawnp(&pid, argv[0], setup.actions(), setup.attr(),
                            argv.data(), environ);
    if (rc != 0)
      return Failed("cannot run " + config_.argv(0) + ": " + std::strerror(rc));
  }
  in_theirs.Reset();
  out_theirs.Reset();
  ::fcntl(in_ours.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(out_ours.get(), F_SETFL, O_NONBLOCK);

  size_t written = 0;
  if (message.empty()) in_ours.Reset();
  std::string output;
  bool exited = false;
  bool timed_out = false;
  while (out_ours.valid() || !exited) {
    if (!exited && HasExited(pid)) {
      exited = true;
      ::kill(-pid, SIGKILL);  // leftovers of its group still holding our pipes
      in_ours.Reset();
    }
    if (exited && !out_ours.valid()) break;
    auto now = Clock::now();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    int wait_ms =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - now)
                             .count()) +
        1;
    if (!exited) wait_ms = std::min(wait_ms, kExitPollMs);
    pollfd fds[2];
    nfds_t n = 0;
    if (in_ours.valid()) fds[n++] = {in_ours.get(), POLLOUT, 0};
    if (out_ours.valid()) fds[n++] = {out_ours.get(), POLLIN, 0};
    if (n == 0) {
      ::poll(nullptr, 0, wait_ms);
      continue;
    }
    if (::poll(fds, n, wait_ms) < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_ours.get()) {
        ssize_t w = ::send(in_ours.get(), message.data() + written,
                           message.size() - written, MSG_NOSIGNAL);
        if (w > 0) written += static_cast<size_t>(w);
        // Done, or the scanner stopped reading (EPIPE): either way no more
        // input.
        if (written == message.size() ||
            (w < 0 && errno != EAGAIN && errno != EINTR)) {
          in_ours.Reset();
        }
      } else {
        char buf[8192];
        ssize_t r = ::read(out_ours.get(), buf, sizeof buf);
        if (r > 0 && output.size() < kMaxOutputBytes)
          output.append(buf, static_cast<size_t>(r));
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
          out_ours.Reset();
      }
    }
  }
  if (timed_out || !exited) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    int ms = own_limit ? static_cast<int>(config_.timeout_ms()) : -1;
    ScanResult r =
        Failed(ms >= 0 ? "timed out after " + std::to_string(ms) + " ms"
                       : "message time limit reached");
    r.first_line = FirstLine(output);
    return r;
  }

  ScanResult result;
  result.first_line = FirstLine(output);
  if (WIFSIGNALED(status)) {
    result.failed = true;
    result.verdict = ScanResult::Verdict::kTempFail;
    result.reason = "killed by signal " + std::to_string(WTERMSIG(status));
    return result;
  }
  result.exit_code = WEXITSTATUS(status);
  result.reason = "exit " + std::to_string(result.exit_code);
  if (Listed(config_.accept_exit_codes(), result.exit_code)) {
    result.verdict = ScanResult::Verdict::kAccept;
  } else if (Listed(config_.reject_exit_codes(), result.exit_code)) {
    result.verdict = ScanResult::Verdict::kReject;
  } else if (result.exit_code == 0) {
    result.verdict = ScanResult::Verdict::kAccept;
  } else if (result.exit_code == 1) {
    result.verdict = ScanResult::Verdict::kReject;
  } else {
    result.verdict = ScanResult::Verdict::kTempFail;
    result.failed = true;
  }
  return result;
}

}  // namespace filter
