// inject_main.cc: mailfarm-inject, the sendmail-compatible submission command.
// Reads a message on stdin and hands it to the scheduler over inject.sock;
// exits 0 only once the scheduler has it on stable storage. Works under the
// name `sendmail` (a symlink), so programs that call sendmail just work.
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>

#include "farm/clock.h"
#include "farm/config.h"
#include "farm/inject_client.h"
#include "farm/program.h"
#include "farm/sockets.h"
#include "scheduler/inject_server.h"
#include "scheduler/maildrop_file.h"
#include "scheduler/sendmail_args.h"

namespace {

const char kHelp[] = R"(NAME
    mailfarm-inject, sendmail - submit a message to the mailfarm queue

SYNOPSIS
    mailfarm-inject [--config FILE] [-f sender] [-F name] [-t] [-i|-oi] [rcpt ...] < message

DESCRIPTION
    Reads one message from standard input and queues it for the recipients
    named as arguments (and, with -t, those in its To, Cc and Bcc headers).
    The message is handed to mailfarm-scheduler over run_dir/inject.sock; the
    command exits 0 only after the scheduler reports it on stable storage.
    LF line endings become CRLF; missing From, Date and Message-ID headers
    are added; a Bcc header is removed. Addresses without a domain get
    "@hostname". A malformed address is refused before anything is sent.
    Installed as `sendmail` (a symlink), it behaves the same.

OPTIONS
    --config FILE, -C FILE   configuration (default /etc/mailfarm/mailfarm.conf)
    -f ADDR, -r ADDR         envelope sender; -f "" or -f "<>" is the null sender
                             (default: the invoking user @ hostname)
    -F NAME                  full name for an added From header
    -t                       take recipients from the To, Cc and Bcc headers too
    -i, -oi                  a line with a single "." does not end the input
    -o*, -odb, -v, -B, -N    accepted for compatibility and ignored
    --help                   this text

EXIT STATUS
    0   queued (durably)
    64  usage error (bad option, no recipients)
    65  malformed address, or the message was refused for its content or size
    67  a recipient was refused
    75  temporary failure: scheduler unreachable, disk full, try again later
    77  not allowed to submit (inject.sock peer-credential check)
    78  configuration error

FILES
    run_dir/inject.sock      the scheduler's injection socket
)";

int Fail(int code, const std::string& text) {
  std::fprintf(stderr, "mailfarm-inject: %s\n", text.c_str());
  return code;
}

int ExitCodeForReject(const std::string& dsn) {
  if (dsn.rfind("5.1.", 0) == 0 && dsn != "5.1.7") return farm::kExitNoUser;
  if (dsn.rfind("5.7.", 0) == 0) return farm::kExitNoPerm;
  return farm::kExitDataErr;
}

std::string InvokingUser() {
  if (passwd* pw = ::getpwuid(::getuid()); pw != nullptr) return pw->pw_name;
  return "uid" + std::to_string(::getuid());
}

// Hands the message to mailfarm-postdrop (beside this program, setgid to
// the maildrop's group) on its standard input; its exit code is ours.
int Postdrop(const farm::Config& config, const std::string& config_path,
             const mailfarm::InjectRequest& request, const std::string& body,
             const std::string& why_not_inject) {
  std::string helper = farm::BinDir(config) + "/mailfarm-postdrop";
  std::string record = mailfarm::scheduler::EncodeMaildropFile(request, body);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    return Fail(farm::kExitOsErr, std::string("pipe: ") + strerror(errno));
  farm::UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, read_end.get(), STDIN_FILENO);
  std::vector<std::string> args = {helper, "--config", config_path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int spawned = ::posix_spawn(&pid, helper.c_str(), &actions, nullptr,
                              argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    return Fail(farm::kExitTempFail, "cannot reach the scheduler (" +
                                         why_not_inject + ") nor run " +
                                         helper + ": " + strerror(spawned));
  }
  read_end.Reset();
  farm::Status written =
      farm::WriteFull(write_end.get(), record.data(), record.size());
  write_end.Reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : farm::kExitTempFail;
  if (code == farm::kExitOk && !written.ok()) code = farm::kExitTempFail;
  if (code != farm::kExitOk) {
    return Fail(code, "cannot reach the scheduler (" + why_not_inject +
                          ") and the maildrop did not take the message");
  }
  return farm::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  using mailfarm::scheduler::AddressProblem;
  farm::InitLogging(argv[0]);
  // A scheduler that refuses at once, or a postdrop that exits early, closes
  // its end: that is an error to report with its exit code, not a SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  mailfarm::scheduler::SendmailOptions options;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (std::string error =
          mailfarm::scheduler::ParseSendmailArgs(args, &options);
      !error.empty()) {
    return Fail(farm::kExitUsage, error + " (see --help)");
  }
  if (options.help) {
    std::fputs(kHelp, stdout);
    return farm::kExitOk;
  }
  std::string config_path = options.config_path.empty()
                                ? farm::kDefaultConfigPath
                                : options.config_path;
  auto config = farm::LoadConfig(config_path);
  if (!config.ok()) return Fail(farm::kExitConfig, config.status().message());
  std::string hostname = farm::Hostname(*config);

  std::string sender = options.sender == "<>" ? "" : options.sender;
  if (!options.sender_given) sender = InvokingUser() + "@" + hostname;
  sender = mailfarm::scheduler::Qualify(sender, hostname);
  if (std::string why = AddressProblem(sender, true); !why.empty()) {
    return Fail(farm::kExitDataErr, "bad sender: " + why);
  }

  std::string input((std::istreambuf_iterator<char>(std::cin)),
                    std::istreambuf_iterator<char>());
  std::string message =
      mailfarm::scheduler::NormalizeMessage(input, options.ignore_dots);
  std::vector<std::string> recipients = options.recipients;
  if (options.recipients_from_headers) {
    for (auto& r : mailfarm::scheduler::HeaderRecipients(message))
      recipients.push_back(r);
  }
  if (recipients.empty()) return Fail(farm::kExitUsage, "no recipients given");
  for (auto& r : recipients) {
    r = mailfarm::scheduler::Qualify(r, hostname);
    if (std::string why = AddressProblem(r, false); !why.empty()) {
      return Fail(farm::kExitDataErr, "bad recipient: " + why);
    }
  }
  message = mailfarm::scheduler::CompleteHeaders(
      message, sender, options.full_name, hostname, InvokingUser(),
      farm::RealClock()->NowUnixMs());

  mailfarm::InjectRequest request;
  request.set_sender(sender);
  for (const auto& r : recipients) request.add_recipients(r);
  request.set_size(message.size());
  request.mutable_client()->set_protocol("local");
  request.mutable_client()->set_uid(::getuid());
  bool eight_bit = false;
  for (unsigned char c : message) eight_bit |= c >= 0x80;
  request.set_eight_bit(eight_bit);

  auto client = farm::InjectClient::Connect(
      farm::InjectSocketPath(*config), config->scheduler().max_frame_bytes());
  if (!client.ok()) {
    // The scheduler is down, or this user may not reach inject.sock: the
    // message waits in the maildrop (Postfix's postdrop) and exit 0 means it
    // is there durably.
    return Postdrop(*config, config_path, request, message,
                    client.status().message());
  }
  farm::Status sent = (*client)->Begin(request);
  if (sent.ok()) sent = (*client)->Write(message);
  if (!sent.ok())
    return Fail(farm::kExitTempFail,
                "sending to the scheduler: " + sent.message());
  auto reply = (*client)->Finish(300'000);
  if (!reply.ok()) return Fail(farm::kExitTempFail, reply.status().message());
  switch (reply->status()) {
    case mailfarm::InjectReply::ACCEPTED:
      return farm::kExitOk;
    case mailfarm::InjectReply::REJECT:
      return Fail(ExitCodeForReject(reply->dsn()),
                  reply->dsn() + " " + reply->text());
    default:
      return Fail(farm::kExitTempFail, reply->dsn() + " " + reply->text());
  }
}
