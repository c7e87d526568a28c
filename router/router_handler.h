// router_handler.h: the router farm's JobHandler. Each farm child builds one
// after fork (so a SIGHUP graceful restart reloads the tables) and answers a
// STAGE_ROUTE Job with one RecipientResult per recipient.
#ifndef MAILFARM_ROUTER_ROUTER_HANDLER_H_
#define MAILFARM_ROUTER_ROUTER_HANDLER_H_

#include <memory>

#include "config.pb.h"
#include "farm/job_server.h"
#include "router/recipient_resolver.h"

namespace router {

// Not thread-safe (one per child, like every JobHandler).
class RouterHandler : public farm::JobHandler {
 public:
  explicit RouterHandler(RouterTables tables);
  // Fills result->recipients in the job's order; a job that is not
  // STAGE_ROUTE gets a job-level TEMPFAIL (a scheduler bug, logged).
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override;

 private:
  std::unique_ptr<RouterTables> tables_;  // heap: the resolver points into it
  RecipientResolver resolver_;
};

// The manager's start-up check: the tables load strictly (a bad aliases file
// is an error) and every channel an alias needs (pipe_channel for "|command",
// file_channel for /path) is configured. Errors name the alias.
farm::Status CheckRouterConfig(const mailfarm::config::Config& config);

// Loads the tables from `config` and builds the handler. Never nullptr: a bad
// aliases file makes local recipients tempfail instead (see LoadRouterTables);
// a bad routing table (which the manager's start-up check refuses) gives a
// handler that tempfails every job.
std::unique_ptr<farm::JobHandler> MakeRouterHandler(
    const mailfarm::config::Config& config);

}  // namespace router

#endif  // MAILFARM_ROUTER_ROUTER_HANDLER_H_
