// pipe_transport.h: the pipe channel's handler: runs PipeConfig.argv (expanded,
// never through a shell) with the message on stdin, per recipient when the
// argv names one, else once per message. Exit 0 delivered, 75 deferred, other
// bounced with the first line of stderr; a time limit kills the command's
// process group. Created by transport/main.cc for type PIPE.
#ifndef MAILFARM_TRANSPORT_PIPE_TRANSPORT_H_
#define MAILFARM_TRANSPORT_PIPE_TRANSPORT_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config.pb.h"
#include "farm/job_server.h"
#include "farm/status.h"
#include "transport/delivery.h"

namespace transport {

// How a command ended.
struct CommandExit {
  farm::Status spawn;      // not ok: the command could not be started
  bool timed_out = false;  // killed (with its process group) at the limit
  int exit_code = -1;      // when it exited
  int signal = 0;          // when a signal ended it
  std::string first_stderr_line;
};

// Feeds the command's stdin: called once; it calls `write` with successive
// pieces of data and returns the first error (a command that stops reading is
// not an error: `write` then swallows the rest).
using StdinProducer = std::function<farm::Status(
    const std::function<farm::Status(std::string_view)>& write)>;

// Runs `argv` (argv[0] searched in PATH) in a new process group with stdin
// from `producer`, stdout to /dev/null and stderr captured, within
// `timeout_ms`. Blocking; the child is always reaped before returning.
CommandExit RunCommand(const std::vector<std::string>& argv,
                       const std::vector<std::string>& env,
                       const StdinProducer& producer, int timeout_ms);

// One per child; Handle is not thread-safe.
class PipeTransport : public farm::JobHandler {
 public:
  PipeTransport(const mailfarm::config::ChannelConfig& channel,
                std::string hostname);
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override;

 private:
  // The command for `recipient` (nullptr: once for the message): the alias
  // command of job.nexthop, or pipe.argv expanded. kInvalid naming the error.
  farm::StatusOr<std::vector<std::string>> Argv(
      const mailfarm::Job& job, const mailfarm::JobRecipient* recipient) const;
  // Runs the command once and maps how it ended to an outcome.
  RecipientOutcome RunFor(const mailfarm::Job& job,
                          const MessageReader& message,
                          const mailfarm::JobRecipient* recipient,
                          int timeout_ms) const;

  mailfarm::config::PipeConfig config_;
  std::string hostname_;
  bool per_recipient_;
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_PIPE_TRANSPORT_H_
