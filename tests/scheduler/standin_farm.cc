// standin_farm.cc: mailfarm-standin-farm, a router, content filter or
// transport farm built from the farm library for the scheduler's integration
// tests (the real ones are written separately). Behaviour is chosen by the
// recipient's local part, so one test message can exercise every outcome:
//   router:    unknown*  -> permfail 5.1.1     routefail* -> tempfail
//              alias2-X  -> two routes (a1-X, a2-X)      else -> channel 1,
//              nexthop = domain
//   filter:    body with FILTER-REJECT / FILTER-HOLD / FILTER-DISCARD, else
//   accept
//              (adds "X-Standin-Filter: pass")
//   transport: permfail* -> 5.1.1   tempfail-once* -> 4.4.1 the first time only
//              tempfail* -> always 4.4.1   slow* -> sleeps --slow_ms first
//              crash-once* -> the child aborts the first time   else -> ok
// Every OK delivery appends "qid address sender kind" to --record (kind is
// "dsn" for a multipart/report, else "msg"); DSN bodies are saved in
// --state_dir.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "farm/config.h"
#include "farm/job_server.h"

DEFINE_string(role, "transport", "router, filter or transport");
DEFINE_string(channel, "test", "transport: the channel this farm serves");
DEFINE_string(record, "", "transport: append one line per delivery here");
DEFINE_string(state_dir, "",
              "marker files for the *-once behaviours, saved DSNs");
DEFINE_int32(slow_ms, 3000, "transport: how long slow* recipients take");

namespace {

const char kHelp[] = R"(NAME
    mailfarm-standin-farm - a test farm standing in for router, filter or transport

SYNOPSIS
    mailfarm-standin-farm --config FILE --role router|filter|transport
        [--channel NAME] [--record FILE] [--state_dir DIR] [--slow_ms N]

DESCRIPTION
    Behaviour depends on the recipient's local part; see the source's header.
    Used by tests/scheduler and bench/inject only.

EXIT STATUS
    0 after an orderly stop; 78 on a configuration error.
)";

std::string LocalPart(const std::string& address) {
  return address.substr(0, address.find('@'));
}
std::string Domain(const std::string& address) {
  size_t at = address.find('@');
  return at == std::string::npos ? "" : address.substr(at + 1);
}
bool StartsWith(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

// True the first time it is called for `key` (across all children).
bool FirstTime(const std::string& key) {
  std::string path = FLAGS_state_dir + "/once-" + key;
  for (char& c : path) {
    if (c == '@') c = '_';
  }
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

std::string ReadBody(const mailfarm::Job& job) {
  std::ifstream in(job.message_path(), std::ios::binary);
  std::string body(job.body_size(), '\0');
  in.seekg(static_cast<std::streamoff>(job.body_offset()));
  in.read(body.data(), static_cast<std::streamsize>(body.size()));
  return body;
}

void Record(const std::string& line) {
  if (FLAGS_record.empty()) return;
  int fd = ::open(FLAGS_record.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return;
  [[maybe_unused]] ssize_t n =
      ::write(fd, line.data(), line.size());  // one write: atomic append
  ::close(fd);
}

class Router : public farm::JobHandler {
 public:
  explicit Router(std::string channel) : channel_(std::move(channel)) {}
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override {
    for (const auto& r : job.recipients()) {
      auto* rr = result->add_recipients();
      rr->set_index(r.index());
      std::string local = LocalPart(r.address());
      if (StartsWith(local, "unknown")) {
        rr->set_outcome(mailfarm::OUTCOME_PERMFAIL);
        rr->set_dsn("5.1.1");
        rr->set_text("no such user here");
      } else if (StartsWith(local, "routefail")) {
        rr->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
        rr->set_dsn("4.3.0");
        rr->set_text("routing table unavailable");
      } else if (StartsWith(local, "alias2-")) {
        rr->set_outcome(mailfarm::OUTCOME_OK);
        for (const char* p : {"a1-", "a2-"}) {
          auto* route = rr->add_routes();
          route->set_address(p + local.substr(7) + "@" + Domain(r.address()));
          route->set_channel(channel_);
          route->set_nexthop(Domain(r.address()));
        }
      } else {
        rr->set_outcome(mailfarm::OUTCOME_OK);
        auto* route = rr->add_routes();
        route->set_address(r.address());
        route->set_channel(channel_);
        route->set_nexthop(Domain(r.address()));
      }
    }
  }

 private:
  std::string channel_;
};

class Filter : public farm::JobHandler {
 public:
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override {
    std::string body = ReadBody(job);
    auto* v = result->mutable_verdict();
    v->set_rule("standin");
    if (body.find("FILTER-REJECT") != std::string::npos) {
      v->set_action(mailfarm::FilterVerdict::REJECT);
      v->set_text("rejected by the stand-in filter");
    } else if (body.find("FILTER-HOLD") != std::string::npos) {
      v->set_action(mailfarm::FilterVerdict::HOLD);
      v->set_text("held by the stand-in filter");
    } else if (body.find("FILTER-DISCARD") != std::string::npos) {
      v->set_action(mailfarm::FilterVerdict::DISCARD);
    } else {
      v->set_action(mailfarm::FilterVerdict::ACCEPT);
      auto* h = v->add_add_headers();
      h->set_name("X-Standin-Filter");
      h->set_value("pass");
    }
    result->set_outcome(mailfarm::OUTCOME_OK);
  }
};

class Transport : public farm::JobHandler {
 public:
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override {
    std::string body;
    for (const auto& r : job.recipients()) {
      auto* rr = result->add_recipients();
      rr->set_index(r.index());
      rr->set_relay("standin[127.0.0.1]:25");
      std::string local = LocalPart(r.address());
      if (StartsWith(local, "permfail")) {
        rr->set_outcome(mailfarm::OUTCOME_PERMFAIL);
        rr->set_dsn("5.1.1");
        rr->set_text("550 5.1.1 mailbox unavailable");
        continue;
      }
      if (StartsWith(local, "tempfail-once") &&
          FirstTime(job.qid() + "-" + r.address())) {
        rr->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
        rr->set_dsn("4.4.1");
        rr->set_text("451 4.4.1 try again later (once)");
        continue;
      }
      if (StartsWith(local, "tempfail") &&
          !StartsWith(local, "tempfail-once")) {
        rr->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
        rr->set_dsn("4.4.1");
        rr->set_text("451 4.4.1 try again later");
        continue;
      }
      if (StartsWith(local, "crash-once") && FirstTime("crash-" + job.qid()))
        std::abort();
      if (StartsWith(local, "slow"))
        ::usleep(static_cast<useconds_t>(FLAGS_slow_ms) * 1000);
      if (body.empty()) body = ReadBody(job);
      bool dsn = body.find("multipart/report") != std::string::npos;
      if (dsn && !FLAGS_state_dir.empty()) {
        std::ofstream(FLAGS_state_dir + "/dsn-" + job.qid(), std::ios::binary)
            << body;
      }
      std::ostringstream line;
      line << job.qid() << " " << r.address() << " "
           << (job.sender().empty() ? "<>" : job.sender()) << " "
           << (dsn ? "dsn" : "msg") << " headers=" << job.added_headers_size()
           << "\n";
      Record(line.str());
      rr->set_outcome(mailfarm::OUTCOME_OK);
      rr->set_dsn("2.0.0");
      rr->set_text("250 2.0.0 ok");
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  farm::JobFarmDefinition definition;
  definition.help_text = kHelp;
  definition.identify =
      [](const farm::Config& config) -> farm::StatusOr<farm::FarmIdentity> {
    if (FLAGS_role == "router")
      return farm::FarmIdentity{"router", config.router()};
    if (FLAGS_role == "filter")
      return farm::FarmIdentity{"filter", config.filter()};
    if (FLAGS_role != "transport")
      return farm::Status::Invalid(
          "--role must be router, filter or transport");
    const auto* channel = farm::FindChannel(config, FLAGS_channel);
    if (channel == nullptr)
      return farm::Status::Invalid("no channel named " + FLAGS_channel);
    return farm::FarmIdentity{farm::TransportFarmName(FLAGS_channel),
                              channel->farm()};
  };
  definition.make_handler =
      [](const farm::Config& config) -> std::unique_ptr<farm::JobHandler> {
    if (FLAGS_role == "router") {
      return std::make_unique<Router>(
          config.channel_size() > 0 ? config.channel(0).name() : "test");
    }
    if (FLAGS_role == "filter") return std::make_unique<Filter>();
    return std::make_unique<Transport>();
  };
  return farm::JobFarmMain(argc, argv, definition);
}
