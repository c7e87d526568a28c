// pipe_transport.cc: command delivery (see pipe_transport.h).
#include "transport/pipe_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "farm/clock.h"
#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "transport/delivery.h"
#include "transport/line_encoder.h"
#include "transport/template.h"

namespace transport {

namespace {

constexpr size_t kStderrKeep = 4096;
constexpr size_t kWriteBytes = 64 * 1024;

// A spawned command; the destructor kills its process group and reaps it if
// it is still running (so no path leaves a zombie or a stray command).
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Non-blocking reap; true when it has exited (status filled).
  bool TryReap(int* status) {
    pid_t r = ::waitpid(pid_, status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

 private:
  pid_t pid_;
};

// Drives the pipes of one command: writes stdin, collects stderr, watches
// the deadline.
class CommandIo {
 public:
  CommandIo(farm::UniqueFd in, farm::UniqueFd err, int64_t deadline)
      : in_(std::move(in)), err_(std::move(err)), deadline_(deadline) {}

  // Writes `data` to stdin (dropping it when the command closed stdin),
  // reading stderr meanwhile. kTempFail at the deadline.
  farm::Status Write(std::string_view data) {
    while (!data.empty() && in_.valid()) {
      MAILFARM_RETURN_IF_ERROR(Wait(true));
      if (!in_.valid()) break;
      ssize_t n = ::write(in_.get(), data.data(), data.size());
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
      } else if (n < 0 && errno == EPIPE) {
        in_.Reset();  // it stopped reading; its exit status will tell why
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return farm::Status::FromErrno("write to command", errno);
      }
    }
    return farm::Status::Ok();
  }
  void CloseStdin() { in_.Reset(); }
  // Reads what stderr has within `wait_ms` (bounded by the deadline).
  void PollStderr(int wait_ms) {
    if (err_.valid()) {
      Wait(false, wait_ms);
    } else if (wait_ms > 0) {
      ::usleep(5000);  // stderr closed; the caller is waiting for the exit
    }
  }
  bool expired() const { return farm::RealClock()->MonotonicMs() >= deadline_; }
  std::string FirstStderrLine() const {
    size_t start = stderr_.find_first_not_of("\r\n \t");
    if (start == std::string::npos) return "";
    size_t end = stderr_.find_first_of("\r\n", start);
    return stderr_.substr(start, end == std::string::npos ? end : end - start);
  }

 private:
  farm::Status Wait(bool want_write, int max_wait_ms = 1000) {
    pollfd fds[2];
    int n = 0;
    if (err_.valid()) fds[n++] = {err_.get(), POLLIN, 0};
    int in_index = -1;
    if (want_write && in_.valid()) {
      in_index = n;
      fds[n++] = {in_.get(), POLLOUT, 0};
    }
    int64_t left = deadline_ - farm::RealClock()->MonotonicMs();
    if (left <= 0) return farm::Status::TempFail("time limit");
    int r =
        ::poll(fds, n, static_cast<int>(std::min<int64_t>(left, max_wait_ms)));
    if (r < 0 && errno != EINTR) return farm::Status::FromErrno("poll", errno);
    if (r <= 0) return farm::Status::Ok();
    if (err_.valid() && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      ssize_t got = ::read(err_.get(), buf, sizeof(buf));
      if (got > 0) {
        size_t keep =
            std::min(kStderrKeep - std::min(kStderrKeep, stderr_.size()),
                     static_cast<size_t>(got));
        stderr_.append(buf, keep);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        err_.Reset();
      }
    }
    if (in_index >= 0 && (fds[in_index].revents & (POLLERR | POLLHUP))) {
      in_.Reset();  // reader gone
    }
    return farm::Status::Ok();
  }

  farm::UniqueFd in_;
  farm::UniqueFd err_;
  int64_t deadline_;
  std::string stderr_;
};

// Pipe with both ends close-on-exec; [0] read end, [1] write end.
farm::Status MakePipe(farm::UniqueFd* read_end, farm::UniqueFd* write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return farm::Status::FromErrno("pipe2", errno);
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return farm::Status::Ok();
}

// posix_spawn's attribute and file-action objects, destroyed on every path.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnSetup() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

CommandExit RunCommand(const std::vector<std::string>& argv,
                       const std::vector<std::string>& env,
                       const StdinProducer& producer, int timeout_ms) {
  CommandExit result;
  if (argv.empty()) {
    result.spawn = farm::Status::Invalid("empty command");
    return result;
  }
  farm::UniqueFd in_read, in_write, err_read, err_write;
  result.spawn = MakePipe(&in_read, &in_write);
  if (result.spawn.ok()) result.spawn = MakePipe(&err_read, &err_write);
  if (!result.spawn.ok()) return result;

  SpawnSetup setup;
  // Own process group, so the time limit kills whatever the command started;
  // default signal handling and an empty mask, whatever the farm child has.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETPGROUP |
                                            POSIX_SPAWN_SETSIGDEF |
                                            POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&setup.attr, 0);
  posix_spawnattr_setsigdefault(&setup.attr, &all);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawn_file_actions_adddup2(&setup.actions, in_read.get(), 0);
  posix_spawn_file_actions_addopen(&setup.actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions, err_write.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);

  std::vector<char*> c_argv;
  for (const std::string& a : argv)
    c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (const std::string& e : env)
    c_env.push_back(const_cast<char*>(e.c_str()));
  c_env.push_back(nullptr);

  int64_t deadline = farm::RealClock()->MonotonicMs() + timeout_ms;
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, c_argv[0], &setup.actions, &setup.attr,
                        c_argv.data(), c_env.data());
  if (rc != 0) {
    result.spawn = farm::Status::FromErrno("cannot run " + argv[0], rc);
    return result;
  }
  ChildProcess child(pid);
  in_read.Reset();
  err_write.Reset();
  farm::SetNonBlocking(in_write.get(), true);
  farm::SetNonBlocking(err_read.get(), true);
  CommandIo io(std::move(in_write), std::move(err_read), deadline);

  farm::Status fed =
      producer([&io](std::string_view data) { return io.Write(data); });
  io.CloseStdin();
  if (!fed.ok() && !io.expired()) {
    result.spawn = fed;  // reading the queue file failed: ~ChildProcess kills
    return result;
  }
  int status = 0;
  bool exited = false;
  while (!(exited = child.TryReap(&status)) && !io.expired()) {
    io.PollStderr(20);
  }
  // What it wrote just before exiting is still in the pipe.
  for (int i = 0; exited && i < 4; ++i) io.PollStderr(0);
  result.first_stderr_line = io.FirstStderrLine();
  if (!exited) {
    result.timed_out = true;
    return result;  // ~ChildProcess kills the group and reaps
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  // Its own descendants may outlive it in the group: stop them too.
  ::kill(-pid, SIGKILL);
  return result;
}

PipeTransport::PipeTransport(const mailfarm::config::ChannelConfig& channel,
                             std::string hostname)
    : config_(channel.pipe()),
      hostname_(std::move(hostname)),
      per_recipient_(false) {
  for (const std::string& arg : config_.argv()) {
    for (const char* name : {"recipient", "user", "domain"}) {
      if (TemplateUses(arg, name)) per_recipient_ = true;
    }
  }
  // A command that stops reading must not kill this child with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
}

namespace {

RecipientOutcome Interpret(const CommandExit& exit, const std::string& command,
                           int timeout_ms) {
  std::string detail =
      exit.first_stderr_line.empty() ? "" : ": " + exit.first_stderr_line;
  if (!exit.spawn.ok()) {
    return {mailfarm::OUTCOME_TEMPFAIL, "4.3.0", exit.spawn.message()};
  }
  if (exit.timed_out) {
    return {mailfarm::OUTCOME_TEMPFAIL, "4.3.0",
            "command " + command + " exceeded its time limit of " +
                std::to_string(timeout_ms) + " ms and was killed" + detail};
  }
  if (exit.signal != 0) {
    return {mailfarm::OUTCOME_TEMPFAIL, "4.3.0",
            "command " + command + " killed by signal " +
                std::to_string(exit.signal) + detail};
  }
  if (exit.exit_code == 0) {
    return {mailfarm::OUTCOME_OK, "2.0.0", "delivered via " + command};
  }
  std::string text = "command " + command + " exit status " +
                     std::to_string(exit.exit_code) + detail;
  if (exit.exit_code == 75) return {mailfarm::OUTCOME_TEMPFAIL, "4.3.0", text};
  return {mailfarm::OUTCOME_PERMFAIL, "5.3.0", text};
}

}  // namespace

farm::StatusOr<std::vector<std::string>> PipeTransport::Argv(
    const mailfarm::Job& job, const mailfarm::JobRecipient* recipient) const {
  if (!job.nexthop().empty()) {
    auto words = SplitCommand(job.nexthop());
    if (!words.ok()) {
      return farm::Status::Invalid("bad alias command: " +
                                   words.status().message());
    }
    return words;
  }
  TemplateVars vars{{"sender", job.sender()}, {"qid", job.qid()}};
  if (recipient != nullptr) {
    AddressParts parts = SplitAddress(recipient->address());
    vars["recipient"] = recipient->address();
    vars["user"] = parts.local;
    vars["domain"] = parts.domain;
  }
  std::vector<std::string> argv;
  for (const std::string& arg : config_.argv()) {
    auto expanded = ExpandTemplate(arg, vars);
    if (!expanded.ok()) {
      return farm::Status::Invalid("bad pipe argv: " +
                                   expanded.status().message());
    }
    argv.push_back(std::move(*expanded));
  }
  return argv;
}

RecipientOutcome PipeTransport::RunFor(const mailfarm::Job& job,
                                       const MessageReader& message,
                                       const mailfarm::JobRecipient* recipient,
                                       int timeout_ms) const {
  auto argv = Argv(job, recipient);
  if (!argv.ok()) {
    // A configuration (or alias) error: defer so that a fix delivers it.
    return {mailfarm::OUTCOME_TEMPFAIL, "4.3.5", argv.status().message()};
  }
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                  "SENDER=" + job.sender(), "QID=" + job.qid()};
  if (recipient != nullptr) env.push_back("RECIPIENT=" + recipient->address());
  std::string prefix =
      MessagePrefix(job, hostname_, TraceKind::kLocal, recipient);
  StdinProducer producer = [&](const auto& write) -> farm::Status {
    LineEncoder encoder(LineEncoder::Mode::kUnix);
    std::string out;
    encoder.Feed(prefix, &out);
    MAILFARM_RETURN_IF_ERROR(
        message.ForEachChunk([&](std::string_view chunk) -> farm::Status {
          encoder.Feed(chunk, &out);
          if (out.size() < kWriteBytes) return farm::Status::Ok();
          farm::Status s = write(out);
          out.clear();
          return s;
        }));
    encoder.Finish(&out);
    return write(out);
  };
  CommandExit exit = RunCommand(*argv, env, producer, timeout_ms);
  return Interpret(exit, (*argv)[0], timeout_ms);
}

void PipeTransport::Handle(const mailfarm::Job& job, mailfarm::Result* result) {
  DeliveryReport report(job, result);
  // A nexthop is an alias's "|command" (the router's pipe_channel route): it
  // replaces pipe.argv, split into words without a shell, and runs once per
  // recipient (each alias owner), like Postfix local(8).
  const bool alias_command = !job.nexthop().empty();
  auto message = MessageReader::Open(job);
  if (!message.ok() || (!alias_command && config_.argv_size() == 0)) {
    report.AddAll(mailfarm::OUTCOME_TEMPFAIL, "4.3.0",
                  message.ok() ? "pipe channel " + job.channel() +
                                     " has no command (pipe.argv)"
                               : message.status().message(),
                  "pipe");
    report.Finish();
    return;
  }
  int timeout_ms = static_cast<int>(config_.timeout_ms());
  if (job.deadline_unix_ms() > 0) {
    // Stop the command before the scheduler gives up on the job.
    int64_t left = job.deadline_unix_ms() - farm::RealClock()->NowUnixMs();
    timeout_ms = static_cast<int>(
        std::max<int64_t>(1000, std::min<int64_t>(timeout_ms, left)));
  }
  if (per_recipient_ || alias_command) {
    for (const mailfarm::JobRecipient& recipient : job.recipients()) {
      RecipientOutcome out = RunFor(job, *message, &recipient, timeout_ms);
      report.Add(recipient, out.outcome, out.dsn, out.text, "pipe");
    }
  } else {
    RecipientOutcome out = RunFor(job, *message, nullptr, timeout_ms);
    report.AddAll(out.outcome, out.dsn, out.text, "pipe");
  }
  report.Finish();
}

}  // namespace transport
