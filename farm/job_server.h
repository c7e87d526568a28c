// job_server.h: the skeleton of a job farm (router, filter, transports). The
// child says Hello, then reads Job and answers Result on the scheduler's
// persistent connection. A component supplies a JobHandler and a main() of a
// few lines calling JobFarmMain.
#ifndef MAILFARM_FARM_JOB_SERVER_H_
#define MAILFARM_FARM_JOB_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "farm/config.h"
#include "farm/status.h"
#include "wire.pb.h"

namespace farm {

// One instance per child; only that child's thread uses it. Blocking is fine.
class JobHandler {
 public:
  virtual ~JobHandler() = default;
  // Fills `result` for `job`. result->qid is preset. Never throws; a failure is
  // a TEMPFAIL or PERMFAIL outcome with dsn and text.
  virtual void Handle(const mailfarm::Job& job, mailfarm::Result* result) = 0;
  // Called about once a second while waiting for the next job (e.g. to close an
  // SMTP session past its idle timeout).
  virtual void Idle() {}
  // Called when the scheduler's connection closes.
  virtual void ConnectionClosed() {}
};

struct FarmIdentity {
  std::string name;  // e.g. "router" or "transport-smtp"
  mailfarm::config::FarmConfig pool;
};

struct JobFarmDefinition {
  std::string help_text;  // --help, man-page style
  // Picks the farm's name and pool from the loaded config (and flags such as
  // --channel). A non-ok Status is a config error: printed, exit 78.
  std::function<StatusOr<FarmIdentity>(const mailfarm::config::Config&)>
      identify;
  // Builds the handler in each child after fork. nullptr = child exits.
  std::function<std::unique_ptr<JobHandler>(const mailfarm::config::Config&)>
      make_handler;
};

// main() of a job farm: flags, config, logging, binds run/<name>.sock, runs
// the manager. Returns the process exit code.
int JobFarmMain(int argc, char** argv, const JobFarmDefinition& definition);

// Serves one scheduler connection with `handler` (exposed for tests and for
// in-process use): Hello, then Job/Result until EOF or ctx.ShouldExit().
class ChildContext;
void ServeJobConnection(int fd, const std::string& farm_name,
                        size_t max_frame_bytes, JobHandler& handler,
                        ChildContext& ctx);

}  // namespace farm

#endif  // MAILFARM_FARM_JOB_SERVER_H_
