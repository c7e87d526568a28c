// job_server.cc: the job-farm skeleton (Hello, then Job -> Result) and the
// main() that router, filter and transport farms share.
#include "farm/job_server.h"

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>

#include "farm/clock.h"
#include "farm/farm_manager.h"
#include "farm/framed_stream.h"
#include "farm/program.h"
#include "farm/sockets.h"

namespace farm {

namespace {

constexpr int kIdleTickMs = 1000;

// Adapts a JobHandler to the farm skeleton's connection interface.
class JobConnectionHandler : public ConnectionHandler {
 public:
  JobConnectionHandler(std::unique_ptr<JobHandler> handler,
                       size_t max_frame_bytes)
      : handler_(std::move(handler)), max_frame_bytes_(max_frame_bytes) {}

  void Serve(UniqueFd conn, ChildContext& ctx) override {
    ServeJobConnection(conn.get(), ctx.farm_name(), max_frame_bytes_, *handler_,
                       ctx);
  }

 private:
  std::unique_ptr<JobHandler> handler_;
  size_t max_frame_bytes_;
};

}  // namespace

void ServeJobConnection(int fd, const std::string& farm_name,
                        size_t max_frame_bytes, JobHandler& handler,
                        ChildContext& ctx) {
  FramedStream stream(fd, max_frame_bytes);
  mailfarm::ChildFrame hello;
  hello.mutable_hello()->set_farm(farm_name);
  hello.mutable_hello()->set_pid(::getpid());
  hello.mutable_hello()->set_generation(ctx.generation());
  hello.mutable_hello()->set_slot(ctx.slot());
  if (!stream.Write(hello).ok()) return;
  ctx.MarkConnected();
  while (!ctx.ShouldExit()) {
    if (!stream.WaitReadable(kIdleTickMs)) {
      handler.Idle();
      continue;
    }
    mailfarm::Job job;
    Status read = stream.Read(&job, 30000);
    if (!read.ok()) {
      if (read.code() != Status::Code::kClosed) {
        LOG(WARNING) << farm_name
                     << ": bad frame from the scheduler: " << read.message()
                     << "; closing the connection";
      }
      break;
    }
    ctx.MarkBusy();
    int64_t started = RealClock()->MonotonicMs();
    mailfarm::ChildFrame reply;
    mailfarm::Result* result = reply.mutable_result();
    result->set_qid(job.qid());
    handler.Handle(job, result);
    result->set_delay_ms(
        static_cast<uint32_t>(RealClock()->MonotonicMs() - started));
    Status write = stream.Write(reply);
    ctx.JobDone();
    ctx.MarkConnected();
    if (!write.ok()) break;
  }
  handler.ConnectionClosed();
}

int JobFarmMain(int argc, char** argv, const JobFarmDefinition& definition) {
  InitProgram(&argc, &argv, definition.help_text);
  // Shared between the manager's reload hook and the factory, both in the
  // manager process; each child gets the copy current when it was forked.
  auto config = std::make_shared<Config>(LoadConfigOrDie());
  auto identity = definition.identify(*config);
  if (!identity.ok()) {
    std::cerr << FLAGS_config << ": " << identity.status().message() << "\n";
    return kExitConfig;
  }
  std::string run_dir = RunDir(*config);
  ::mkdir(run_dir.c_str(), 0750);  // mailfarmd normally made it already
  std::string socket_path = FarmSocketPath(*config, identity->name);
  auto listener = ListenUnix(socket_path, 0600);
  if (!listener.ok()) {
    LOG(ERROR) << identity->name << ": " << listener.status().message();
    return kExitOsErr;
  }
  FarmSpec spec;
  spec.name = identity->name;
  spec.pool = identity->pool;
  spec.scoreboard_path = ScoreboardPath(*config, identity->name);
  spec.listeners.push_back(std::move(*listener));
  spec.reload = [config, name = identity->name]() {
    auto fresh = LoadConfig(FLAGS_config);
    if (!fresh.ok()) {
      LOG(ERROR) << name << ": reload refused, keeping the old configuration: "
                 << fresh.status().message();
      return;
    }
    *config = std::move(*fresh);
    LOG(INFO) << name << ": configuration reloaded";
  };
  size_t max_frame = identity->pool.max_frame_bytes();
  auto make_handler = definition.make_handler;
  int rc = RunFarm(std::move(spec),
                   [config, make_handler,
                    max_frame]() -> std::unique_ptr<ConnectionHandler> {
                     std::unique_ptr<JobHandler> handler =
                         make_handler(*config);
                     if (!handler) return nullptr;
                     return std::make_unique<JobConnectionHandler>(
                         std::move(handler), max_frame);
                   });
  ::unlink(socket_path.c_str());
  return rc;
}

}  // namespace farm
