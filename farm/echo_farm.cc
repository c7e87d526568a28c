// echo_farm.cc: mailfarm-echo-farm, a farm built from the library whose handler
// echoes frames back. The farm library's integration tests and
// bench/farm_dispatch drive it; it is the smallest complete farm.
//
// Protocol: the child sends ChildFrame{hello}; every Job it receives is
// answered with Result{qid = job.qid}. Special qids for tests: "sleep:MS"
// sleeps MS ms before answering (a busy child), "crash" aborts the child (a
// dead child).
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "farm/job_server.h"

DEFINE_bool(crash_on_start, false,
            "Every child dies at once (tests the crash-loop throttle).");

namespace {

const char kHelp[] = R"(NAME
    mailfarm-echo-farm - a no-op job farm for tests and benchmarks

SYNOPSIS
    mailfarm-echo-farm --config FILE [--crash_on_start]

DESCRIPTION
    Binds run_dir/echo.sock and runs a preforked farm (pool settings from the
    config's `router` block) whose children answer every Job with an empty
    Result carrying the job's qid. A job whose qid is "sleep:MS" is answered
    after MS milliseconds; "crash" makes the child abort.

EXIT STATUS
    0 after an orderly stop; 78 on a configuration error.
)";

class EchoHandler : public farm::JobHandler {
 public:
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override {
    const std::string& qid = job.qid();
    if (qid.rfind("sleep:", 0) == 0) {
      ::usleep(static_cast<useconds_t>(std::atoi(qid.c_str() + 6)) * 1000);
    } else if (qid == "crash") {
      std::abort();
    }
    result->set_outcome(mailfarm::OUTCOME_OK);
  }
};

}  // namespace

int main(int argc, char** argv) {
  farm::JobFarmDefinition definition;
  definition.help_text = kHelp;
  definition.identify =
      [](const farm::Config& config) -> farm::StatusOr<farm::FarmIdentity> {
    return farm::FarmIdentity{"echo", config.router()};
  };
  definition.make_handler =
      [](const farm::Config&) -> std::unique_ptr<farm::JobHandler> {
    if (FLAGS_crash_on_start) std::abort();
    return std::make_unique<EchoHandler>();
  };
  return farm::JobFarmMain(argc, argv, definition);
}
