// mailfarmctl.cc: the operator's tool. Queue verbs go to the scheduler over
// control.sock (wire.proto ControlRequest/ControlReply); `farms` reads the
// scoreboards straight from run_dir; `reload` and `stop` signal mailfarmd.
// Also answers as `mailq` (argv[0]) with the queue listing.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "farm/clock.h"
#include "farm/config.h"
#include "farm/framed_stream.h"
#include "farm/program.h"
#include "farm/scoreboard.h"
#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "wire.pb.h"

DEFINE_bool(json, false,
            "Print JSON (one object per line for lists) for scripts.");
DEFINE_string(
    state, "",
    "queue list: only jobs in this state (active, deferred, hold, ...).");
DEFINE_string(domain, "", "Select jobs with a recipient in this domain.");
DEFINE_string(sender, "", "Select jobs from this envelope sender.");
DEFINE_bool(all, false, "Select every job (flush, delete, hold, release).");
DEFINE_bool(yes, false, "Confirm a bulk delete (--all or --domain).");
DEFINE_int32(timeout_ms, 30000, "How long to wait for the scheduler's answer.");

namespace {

// Exit codes a script can rely on.
constexpr int kExitOk = 0;
constexpr int kExitNothing = 1;  // not found, nothing matched
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 69;
constexpr int kExitTempFail = 75;

const char kHelp[] = R"(NAME
    mailfarmctl - inspect and control a running mailfarm

SYNOPSIS
    mailfarmctl [--config FILE] [--json] COMMAND [ARGS]
    mailq [--config FILE]            (the same as: mailfarmctl queue list)

COMMANDS
    queue list [--state S] [--domain D] [--sender A]
        Every queued job, a mailq-like table: queue id, size, arrival, sender,
        state and next attempt, then its recipients and the last error.
        States: active (being routed, filtered or delivered, or waiting
        for its destination's window or rate), deferred (waiting for its
        next attempt or a dead destination), hold.
    queue show QID
        One job: envelope, client, added headers, recipients delivered, and
        the history of attempts with the remote replies.
    flush [QID... | --domain D | --all]
        Retry now (clears a destination's suspension with --domain).
    delete QID... | --domain D --yes | --all --yes
        Remove jobs without delivering them or sending a DSN.
    hold QID... | --domain D | --all
    release QID... | --domain D | --all
        Park jobs in the hold queue, or give them back to the scheduler.
    bounce QID...
        Give up now: every undelivered recipient bounces with a DSN.
    stats
        Counts by state and channel, rates, dead destinations.
    farms
        Every farm's scoreboard (the mail equivalent of Apache's
        server-status): children starting/idle/connected/busy, the age of
        each current job, jobs done, generation. Read from run_dir/*.scoreboard;
        works without the scheduler.
    reload
        Send SIGHUP to mailfarmd (configuration reload, graceful farm restart).
    stop
        Send SIGTERM to mailfarmd (orderly stop).

OPTIONS
    --config FILE   the configuration (default /etc/mailfarm/mailfarm.conf)
    --json          JSON for scripts: one object per job for lists
    --state, --domain, --sender, --all, --yes   selectors, see above
    --timeout_ms N  how long to wait for the scheduler (default 30000)

EXIT STATUS
    0   success
    1   no such job, or nothing matched the selection
    2   usage error
    69  the scheduler (or mailfarmd) is not running or refused the connection
    75  the scheduler did not answer in time; try again
    78  configuration error

FILES
    run_dir/control.sock    the scheduler's control socket (owner and root only)
    run_dir/*.scoreboard    farm scoreboards
    run_dir.pid             the supervisor's pid (paths.pid_file)
)";

int Usage(const std::string& why) {
  std::fprintf(stderr, "mailfarmctl: %s (see mailfarmctl --help)\n",
               why.c_str());
  return kExitUsage;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  // Scripts get every key, even empty ones (the null sender is "").
  options.always_print_primitive_fields = true;
  google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm local{};
  localtime_r(&secs, &local);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%a %b %e %H:%M:%S", &local);
  return buf;
}

// One request/answer exchange with the scheduler. Replies with more=true are
// collected until the last one.
class ControlClient {
 public:
  explicit ControlClient(const farm::Config& config) : config_(config) {}

  // Returns an exit code on failure (69/75), 0 on success.
  int Call(const mailfarm::ControlRequest& request,
           std::vector<mailfarm::ControlReply>* replies) {
    std::string path = farm::ControlSocketPath(config_);
    auto fd = farm::ConnectUnix(path);
    if (!fd.ok()) {
      std::fprintf(stderr, "mailfarmctl: the scheduler is not reachable: %s\n",
                   fd.status().message().c_str());
      return kExitUnavailable;
    }
    farm::FramedStream stream(fd->get(), 64 << 20);
    if (!stream.Write(request).ok()) {
      std::fprintf(
          stderr, "mailfarmctl: the scheduler closed the control connection\n");
      return kExitUnavailable;
    }
    for (;;) {
      mailfarm::ControlReply reply;
      farm::Status status = stream.Read(&reply, FLAGS_timeout_ms);
      if (status.code() == farm::Status::Code::kTempFail) {
        std::fprintf(stderr,
                     "mailfarmctl: no answer from the scheduler in %d ms\n",
                     FLAGS_timeout_ms);
        return kExitTempFail;
      }
      if (!status.ok()) {
        std::fprintf(stderr, "mailfarmctl: control connection failed: %s\n",
                     status.message().c_str());
        return kExitUnavailable;
      }
      bool more = reply.more();
      replies->push_back(std::move(reply));
      if (!more) return kExitOk;
    }
  }

 private:
  const farm::Config& config_;
};

// Maps the scheduler's status to an exit code, printing its text.
int ReplyExitCode(const mailfarm::ControlReply& reply) {
  switch (reply.status()) {
    case mailfarm::ControlReply::OK:
      return kExitOk;
    case mailfarm::ControlReply::NOT_FOUND:
      std::fprintf(
          stderr, "mailfarmctl: %s\n",
          reply.text().empty() ? "nothing matched" : reply.text().c_str());
      return kExitNothing;
    case mailfarm::ControlReply::BAD_REQUEST:
      std::fprintf(stderr, "mailfarmctl: %s\n", reply.text().c_str());
      return kExitUsage;
    default:
      std::fprintf(stderr, "mailfarmctl: scheduler: %s\n",
                   reply.text().c_str());
      return kExitUnavailable;
  }
}

void PrintQueueEntry(const mailfarm::QueueEntry& e) {
  // The mailq layout people already read at a glance.
  std::string id = e.qid();
  if (e.state() == "hold") id += "!";
  if (e.state() == "active") id += "*";
  std::printf("%-20s %8llu %s  %s\n", id.c_str(),
              static_cast<unsigned long long>(e.size()),
              FormatTime(e.arrival_unix_ms()).c_str(),
              e.sender().empty() ? "MAILER-DAEMON" : e.sender().c_str());
  std::string state = e.state();
  if (e.next_attempt_unix_ms() > 0)
    state += ", next attempt " + FormatTime(e.next_attempt_unix_ms());
  if (e.attempts() > 0)
    state += ", " + std::to_string(e.attempts()) + " attempts";
  std::printf("    (%s%s%s)\n", state.c_str(),
              e.last_error().empty() ? "" : ": ", e.last_error().c_str());
  for (const std::string& rcpt : e.recipients())
    std::printf("                                         %s\n", rcpt.c_str());
  std::printf("\n");
}

mailfarm::Selector SelectorFrom(const std::vector<std::string>& qids) {
  mailfarm::Selector selector;
  for (const std::string& qid : qids) selector.add_qids(qid);
  selector.set_domain(FLAGS_domain);
  selector.set_sender(FLAGS_sender);
  selector.set_all(FLAGS_all);
  selector.set_state(FLAGS_state);
  return selector;
}

int QueueList(const farm::Config& config) {
  mailfarm::ControlRequest request;
  *request.mutable_queue_list() = SelectorFrom({});
  std::vector<mailfarm::ControlReply> replies;
  if (int rc = ControlClient(config).Call(request, &replies)) return rc;
  size_t jobs = 0;
  uint64_t bytes = 0;
  for (const auto& reply : replies) {
    if (reply.status() != mailfarm::ControlReply::OK)
      return ReplyExitCode(reply);
    for (const auto& entry : reply.entries()) {
      ++jobs;
      bytes += entry.size();
      if (FLAGS_json) {
        std::printf("%s\n", ToJson(entry).c_str());
      } else {
        if (jobs == 1) {
          std::printf("%-20s %8s %-19s  %s\n", "-Queue ID-", "--Size--",
                      "----Arrival Time---", "-Sender/Recipient-------");
        }
        PrintQueueEntry(entry);
      }
    }
  }
  if (!FLAGS_json) {
    if (jobs == 0) {
      std::printf("Mail queue is empty\n");
    } else {
      std::printf("-- %llu Kbytes in %zu Request%s.\n",
                  static_cast<unsigned long long>((bytes + 1023) / 1024), jobs,
                  jobs == 1 ? "" : "s");
    }
  }
  return kExitOk;
}

int QueueShow(const farm::Config& config, const std::string& qid) {
  mailfarm::ControlRequest request;
  request.set_queue_show(qid);
  std::vector<mailfarm::ControlReply> replies;
  if (int rc = ControlClient(config).Call(request, &replies)) return rc;
  const auto& reply = replies.back();
  if (reply.status() != mailfarm::ControlReply::OK) return ReplyExitCode(reply);
  const auto& d = reply.detail();
  if (FLAGS_json) {
    std::printf("%s\n", ToJson(d).c_str());
    return kExitOk;
  }
  const auto& e = d.entry();
  std::printf("queue id:     %s\n", e.qid().c_str());
  std::printf("state:        %s\n", e.state().c_str());
  std::printf("arrival:      %s\n", FormatTime(e.arrival_unix_ms()).c_str());
  std::printf("size:         %llu\n",
              static_cast<unsigned long long>(e.size()));
  std::printf("sender:       <%s>\n", e.sender().c_str());
  for (const auto& r : e.recipients())
    std::printf("recipient:    <%s>\n", r.c_str());
  for (const auto& r : d.delivered())
    std::printf("delivered:    <%s>\n", r.c_str());
  if (!d.client().address().empty()) {
    std::printf("client:       %s [%s] helo=%s %s\n",
                d.client().hostname().c_str(), d.client().address().c_str(),
                d.client().helo().c_str(), d.client().protocol().c_str());
  }
  std::printf("attempts:     %u\n", e.attempts());
  if (e.next_attempt_unix_ms() > 0) {
    std::printf("next attempt: %s\n",
                FormatTime(e.next_attempt_unix_ms()).c_str());
  }
  if (!e.last_error().empty())
    std::printf("last error:   %s\n", e.last_error().c_str());
  for (const auto& hdr : d.added_headers()) {
    std::printf("added header: %s: %s\n", hdr.name().c_str(),
                hdr.value().c_str());
  }
  if (d.history_size() > 0) std::printf("history:\n");
  for (const auto& a : d.history()) {
    std::printf("  %s  <%s> %s dsn=%s relay=%s (%s)\n",
                FormatTime(a.unix_ms()).c_str(), a.recipient().c_str(),
                mailfarm::Outcome_Name(a.outcome()).c_str(), a.dsn().c_str(),
                a.relay().c_str(), a.text().c_str());
  }
  return kExitOk;
}

int Mutate(const farm::Config& config, const std::string& verb,
           const std::vector<std::string>& qids) {
  bool bulk = FLAGS_all || !FLAGS_domain.empty() || !FLAGS_sender.empty();
  if (qids.empty() && !bulk && verb != "flush") {
    return Usage(verb + " needs queue ids, --domain D or --all");
  }
  if (verb == "bounce" && qids.empty()) return Usage("bounce needs queue ids");
  if (verb == "delete" && bulk && !FLAGS_yes) {
    return Usage("a bulk delete needs --yes");
  }
  mailfarm::Selector selector = SelectorFrom(qids);
  selector.clear_state();
  if (verb == "flush" && qids.empty() && !bulk) selector.set_all(true);
  mailfarm::ControlRequest request;
  if (verb == "flush") *request.mutable_flush() = selector;
  if (verb == "delete") *request.mutable_delete_() = selector;
  if (verb == "hold") *request.mutable_hold() = selector;
  if (verb == "release") *request.mutable_release() = selector;
  if (verb == "bounce") *request.mutable_bounce() = selector;
  std::vector<mailfarm::ControlReply> replies;
  if (int rc = ControlClient(config).Call(request, &replies)) return rc;
  const auto& reply = replies.back();
  if (FLAGS_json) {
    std::printf("%s\n", ToJson(reply).c_str());
  } else if (reply.status() == mailfarm::ControlReply::OK) {
    std::printf("%s: %u job%s\n", verb.c_str(), reply.affected(),
                reply.affected() == 1 ? "" : "s");
  }
  if (reply.status() == mailfarm::ControlReply::OK && reply.affected() == 0 &&
      !qids.empty()) {
    std::fprintf(stderr, "mailfarmctl: nothing matched\n");
    return kExitNothing;
  }
  return ReplyExitCode(reply);
}

int Stats(const farm::Config& config) {
  mailfarm::ControlRequest request;
  request.set_stats(true);
  std::vector<mailfarm::ControlReply> replies;
  if (int rc = ControlClient(config).Call(request, &replies)) return rc;
  const auto& reply = replies.back();
  if (reply.status() != mailfarm::ControlReply::OK) return ReplyExitCode(reply);
  if (FLAGS_json) {
    std::printf("%s\n", ToJson(reply.stats()).c_str());
    return kExitOk;
  }
  for (const auto& sample : reply.stats().samples()) {
    std::string labels;
    std::vector<std::pair<std::string, std::string>> sorted(
        sample.labels().begin(), sample.labels().end());
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [k, v] : sorted)
      labels += (labels.empty() ? "" : " ") + k + "=" + v;
    std::printf("%-40s %-40s %g\n", sample.name().c_str(), labels.c_str(),
                sample.value());
  }
  return kExitOk;
}

// The scoreboards of every farm under run_dir, like Apache's server-status.
int Farms(const farm::Config& config) {
  std::string run_dir = farm::RunDir(config);
  std::vector<std::string> boards = farm::ListScoreboards(run_dir);
  if (boards.empty()) {
    std::fprintf(
        stderr, "mailfarmctl: no scoreboards under %s (is mailfarm running?)\n",
        run_dir.c_str());
    return kExitUnavailable;
  }
  using S = farm::SlotState;
  int64_t now = farm::RealClock()->MonotonicMs();
  for (const std::string& path : boards) {
    auto board = farm::Scoreboard::OpenReadOnly(path);
    if (!board.ok()) {
      std::fprintf(stderr, "mailfarmctl: %s\n",
                   board.status().message().c_str());
      continue;
    }
    farm::ScoreboardCounts c = farm::CountScoreboard(**board);
    bool manager_alive = c.manager_pid > 0 && ::kill(c.manager_pid, 0) == 0;
    std::string rows, json_slots;
    for (int i = 0; i < (*board)->slot_count(); ++i) {
      const auto& slot = (*board)->slot(i);
      auto state = static_cast<S>(slot.state.load());
      if (state == S::kFree) continue;
      int64_t started = slot.job_started_ms.load();
      long long age = started > 0 ? static_cast<long long>(now - started) : -1;
      auto gen = static_cast<unsigned long long>(slot.generation.load());
      auto jobs = static_cast<unsigned long long>(slot.jobs_done.load());
      char row[160];
      std::snprintf(
          row, sizeof(row), "  %5d %-10s gen %-3llu jobs %-8llu %s\n",
          slot.pid.load(), farm::SlotStateName(state), gen, jobs,
          age >= 0 ? ("job age " + std::to_string(age) + " ms").c_str() : "");
      rows += row;
      char js[200];
      std::snprintf(js, sizeof(js),
                    "%s{\"pid\":%d,\"state\":\"%s\",\"generation\":%llu,"
                    "\"jobs_done\":%llu,\"job_age_ms\":%lld}",
                    json_slots.empty() ? "" : ",", slot.pid.load(),
                    farm::SlotStateName(state), gen, jobs, age);
      json_slots += js;
    }
    auto gen = static_cast<unsigned long long>(c.generation);
    auto total_jobs = static_cast<unsigned long long>(c.total_jobs);
    auto total_children = static_cast<unsigned long long>(c.total_children);
    if (FLAGS_json) {
      std::printf(
          "{\"farm\":\"%s\",\"manager_pid\":%d,\"manager_alive\":%s,"
          "\"generation\":%llu,"
          "\"starting\":%d,\"idle\":%d,\"connected\":%d,\"busy\":%d,"
          "\"exiting\":%d,"
          "\"total_jobs\":%llu,\"total_children\":%llu,\"children\":[%s]}\n",
          c.farm.c_str(), c.manager_pid, manager_alive ? "true" : "false", gen,
          c.of(S::kStarting), c.of(S::kIdle), c.of(S::kConnected),
          c.of(S::kBusy), c.of(S::kExiting), total_jobs, total_children,
          json_slots.c_str());
      continue;
    }
    std::printf(
        "%s: manager %d%s, generation %llu, %d starting, %d idle, %d "
        "connected, %d busy, "
        "%d exiting; %llu jobs by %llu children\n",
        c.farm.c_str(), c.manager_pid, manager_alive ? "" : " (not running)",
        gen, c.of(S::kStarting), c.of(S::kIdle), c.of(S::kConnected),
        c.of(S::kBusy), c.of(S::kExiting), total_jobs, total_children);
    std::printf("%s", rows.c_str());
  }
  return kExitOk;
}

// reload/stop go to mailfarmd, which owns every component.
int SignalSupervisor(const farm::Config& config, int signo, const char* what) {
  std::string pid_path = farm::PidFilePath(config);
  std::ifstream in(pid_path);
  long pid = 0;
  // mailfarmd holds the file's lock while it runs: a pid in an unlocked file
  // is stale (a process of that number may now be another program).
  farm::UniqueFd lock(
      ::open(pid_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  bool locked = lock && ::flock(lock.get(), LOCK_SH | LOCK_NB) != 0 &&
                errno == EWOULDBLOCK;
  if (!locked || !(in >> pid) || pid <= 0) {
    std::fprintf(stderr,
                 "mailfarmctl: mailfarmd is not running (no pid in %s)\n",
                 pid_path.c_str());
    return kExitUnavailable;
  }
  if (::kill(static_cast<pid_t>(pid), signo) != 0) {
    std::fprintf(stderr, "mailfarmctl: cannot signal mailfarmd (pid %ld): %s\n",
                 pid, std::strerror(errno));
    return kExitUnavailable;
  }
  std::printf("%s: sent to mailfarmd (pid %ld)\n", what, pid);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::string self = argv[0];
  bool as_mailq =
      self.size() >= 5 && self.compare(self.size() - 5, 5, "mailq") == 0;
  farm::InitProgram(&argc, &argv, kHelp);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (as_mailq) args = {"queue", "list"};
  if (args.empty()) return Usage("no command given");
  farm::Config config = farm::LoadConfigOrDie();
  const std::string& verb = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (verb == "queue") {
    if (rest.empty()) return Usage("queue needs list or show");
    if (rest[0] == "list")
      return rest.size() == 1 ? QueueList(config)
                              : Usage("queue list takes no arguments");
    if (rest[0] == "show")
      return rest.size() == 2 ? QueueShow(config, rest[1])
                              : Usage("queue show QID");
    return Usage("unknown queue command \"" + rest[0] + "\"");
  }
  if (verb == "flush" || verb == "delete" || verb == "hold" ||
      verb == "release" || verb == "bounce") {
    return Mutate(config, verb, rest);
  }
  if (!rest.empty()) return Usage(verb + " takes no arguments");
  if (verb == "stats") return Stats(config);
  if (verb == "farms") return Farms(config);
  if (verb == "reload") return SignalSupervisor(config, SIGHUP, "reload");
  if (verb == "stop") return SignalSupervisor(config, SIGTERM, "stop");
  return Usage("unknown command \"" + verb + "\"");
}
