// main.cc: mailfarm-router, the routing farm. A handler plugged into the job
// farm skeleton (farm/job_server.h); the skeleton forks, accepts and speaks
// Hello.
#include "farm/job_server.h"
#include "router/router_handler.h"

namespace {

constexpr char kHelp[] = R"(NAME
    mailfarm-router - the mailfarm routing farm

SYNOPSIS
    mailfarm-router [--config PATH]

DESCRIPTION
    A preforked farm (one manager, N children) that answers the scheduler's
    routing jobs on run_dir/router.sock. For each recipient it returns the
    routes (address, channel, nexthop) or a failure with its DSN code.

    Recipients in routing.local_domains are expanded through routing.aliases_file
    (/etc/aliases syntax: "name: a, b@x, \user, \"|command\", /path/file,
    :include:/path", '#' comments, continuation lines starting with a blank)
    with loop detection, duplicate suppression and a depth limit
    (routing.alias_max_depth). Local parts are case-insensitive unless
    routing.case_sensitive_local_parts; "user+tag" is looked up as itself, then
    as "user" (routing.recipient_delimiter). A local user exists when listed in
    routing.local_users or when routing.local_users_any is true; an unknown one
    fails with 5.1.1. Mailboxes route to routing.local_channel as user@domain,
    "|command" to routing.pipe_channel (nexthop = the command), /path to
    routing.file_channel (nexthop = the path).

    Every other domain is looked up in routing.route: the exact domain, then the
    most specific ".parent" entry, then "*"; no match fails with 5.4.4.

    The manager does no routing itself. SIGHUP starts a new generation of
    children, which re-read the config and the aliases file; jobs in flight
    finish in the old children. SIGTERM stops the farm.

OPTIONS
    --config PATH   the mailfarm configuration (textproto), default
                    /etc/mailfarm/mailfarm.conf
    --help          this text

EXIT STATUS
    0 on an orderly stop; 78 (EX_CONFIG) for a configuration error, including
    an invalid routing table or an unreadable or malformed aliases file at
    start; 64 for a bad command line.

FILES
    run_dir/router.sock      the socket the scheduler connects to
    run_dir/router.scoreboard  the children's scoreboard (mailfarmctl status)
    routing.aliases_file     the aliases table, re-read on SIGHUP
)";

}  // namespace

int main(int argc, char** argv) {
  farm::JobFarmDefinition definition;
  definition.help_text = kHelp;
  definition.identify = [](const mailfarm::config::Config& config)
      -> farm::StatusOr<farm::FarmIdentity> {
    // Refuse to start on tables the children could not use.
    farm::Status ok = router::CheckRouterConfig(config);
    if (!ok.ok()) return ok;
    return farm::FarmIdentity{"router", config.router()};
  };
  definition.make_handler = router::MakeRouterHandler;
  return farm::JobFarmMain(argc, argv, definition);
}
