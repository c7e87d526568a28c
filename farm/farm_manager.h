// farm_manager.h: the prefork skeleton (Postfix's single_server, Apache's
// prefork MPM). A component hands RunFarm its listening sockets and a handler
// factory; the manager forks children that accept() and serve, keeps the spare
// pool, recycles, kills stuck children, throttles crash loops, and does no mail
// work.
#ifndef MAILFARM_FARM_FARM_MANAGER_H_
#define MAILFARM_FARM_FARM_MANAGER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.pb.h"
#include "farm/unique_fd.h"

namespace farm {

class Scoreboard;

// What a child knows about itself; handed to the handler. Updates go to the
// child's scoreboard slot.
class ChildContext {
 public:
  ChildContext(Scoreboard* scoreboard, int slot, uint64_t generation,
               uint32_t max_jobs, std::string farm_name, int manager_pid);

  // The child works on a job or session (state busy, job clock started).
  void MarkBusy();
  // The child holds a persistent connection and waits for its next job.
  void MarkConnected();
  // One job finished: counts it and stops the job clock.
  void JobDone();
  // True once the child should leave after what it is doing: its generation is
  // old (graceful restart), the farm is stopping, or max_jobs is reached.
  bool ShouldExit() const;

  int slot() const { return slot_; }
  uint64_t generation() const { return generation_; }
  uint64_t jobs_done() const { return jobs_done_; }
  const std::string& farm_name() const { return farm_name_; }

 private:
  Scoreboard* scoreboard_;
  int slot_;
  uint64_t generation_;
  uint32_t max_jobs_;
  uint64_t jobs_done_ = 0;
  std::string farm_name_;
  int manager_pid_;
};

// Serves one accepted connection in a child. Blocking code is fine here.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // Serves `conn` until it closes or ctx.ShouldExit(). The handler marks itself
  // busy/connected through ctx; the skeleton marks it idle afterwards.
  virtual void Serve(UniqueFd conn, ChildContext& ctx) = 0;
};

// Called once in each new child, after fork, before its first accept().
// Returning nullptr makes the child exit (counted as an early death).
using HandlerFactory = std::function<std::unique_ptr<ConnectionHandler>()>;

struct FarmSpec {
  std::string name;  // "router", "transport-smtp", "smtpd", "echo"
  mailfarm::config::FarmConfig pool;  // spares, limits, timeouts
  std::string scoreboard_path;
  std::vector<UniqueFd>
      listeners;  // bound and listening; all children accept on all
  // Called in the manager on SIGHUP before the new generation is forked (e.g.
  // to re-read the config that the handler factory uses). May be empty.
  std::function<void()> reload;
};

// Runs the manager loop in the calling process until SIGTERM/SIGINT (graceful
// stop, then SIGKILL after pool.stop_grace_ms). SIGHUP starts a new generation.
// Returns a process exit code. Children never return from this call: they
// _exit() when done.
int RunFarm(FarmSpec spec, HandlerFactory factory);

}  // namespace farm

#endif  // MAILFARM_FARM_FARM_MANAGER_H_
