// main.cc: mailfarm-filter, the content-filter farm. A handler plugged into the
// job farm skeleton (farm/job_server.h); the skeleton forks, accepts and speaks
// Hello.
#include "farm/job_server.h"
#include "filter/filter_handler.h"

namespace {

constexpr char kHelp[] = R"(NAME
    mailfarm-filter - the mailfarm content-filter farm

SYNOPSIS
    mailfarm-filter [--config PATH]

DESCRIPTION
    A preforked farm (one manager, N children) that answers the scheduler's
    filter jobs on run_dir/filter.sock. A child reads the queued message
    read-only (Job.message_path, bytes [body_offset, body_offset+body_size))
    and answers with a verdict: ACCEPT, REJECT (5.7.1), DISCARD, HOLD or
    TEMPFAIL, plus headers to add before the message. The queue file is never
    rewritten.

    In order: the size limit (filter_rules.max_message_bytes, 5.3.4); the
    rules (filter_rules.rule: PCRE2 patterns matched against each unfolded
    header line "Name: value" or each body line; in config order, ADD_HEADER
    rules add their header and go on, the first other matching rule decides;
    ACCEPT skips the scanner); the external scanner (filter_rules.scanner.argv,
    run without a shell in its own process group, message on stdin; exit 0
    accepts, 1 rejects unless accept_exit_codes/reject_exit_codes say otherwise;
    a scanner that hangs past timeout_ms, dies or exits otherwise gives
    TEMPFAIL, or ACCEPT with an "unchecked" header when fail_open); and DKIM
    signing (filter_rules.dkim: rsa-sha256, relaxed/relaxed) for the domain of
    the From: header or else of the envelope sender, over the added headers
    followed by the stored message, as transports emit it.

    The whole job runs within filter_rules.time_limit_ms (and the job's own
    deadline); each PCRE2 match within regex_match_limit/regex_depth_limit.

    SIGHUP starts a new generation of children, which re-read the config,
    rules and keys; jobs in flight finish in the old children. SIGTERM stops
    the farm.

OPTIONS
    --config PATH   the mailfarm configuration (textproto), default
                    /etc/mailfarm/mailfarm.conf
    --help          this text

EXIT STATUS
    0 on an orderly stop; 78 (EX_CONFIG) for a configuration error, including
    a bad rule pattern, a bad ADD_HEADER text or an unreadable DKIM key at
    start; 64 for a bad command line.

FILES
    run_dir/filter.sock        the socket the scheduler connects to
    run_dir/filter.scoreboard  the children's scoreboard (mailfarmctl status)
    filter_rules.dkim.private_key_file  PEM private keys, read at each (re)start
)";

}  // namespace

int main(int argc, char** argv) {
  farm::JobFarmDefinition definition;
  definition.help_text = kHelp;
  definition.identify = [](const mailfarm::config::Config& config)
      -> farm::StatusOr<farm::FarmIdentity> {
    // Refuse to start on rules or keys the children could not use.
    auto tables = filter::LoadFilterTables(config.filter_rules());
    if (!tables.ok()) return tables.status();
    return farm::FarmIdentity{"filter", config.filter()};
  };
  definition.make_handler = filter::MakeFilterHandler;
  return farm::JobFarmMain(argc, argv, definition);
}
