// scheduler_main.cc: main() of mailfarm-scheduler, the only owner of the queue.
#include <glog/logging.h>

#include "farm/program.h"
#include "scheduler/scheduler.h"

namespace {

const char kHelp[] = R"(NAME
    mailfarm-scheduler - the mailfarm queue manager

SYNOPSIS
    mailfarm-scheduler [--config FILE]

DESCRIPTION
    The only owner of the mail queue. Accepts injections on run_dir/inject.sock
    (from mailfarm-smtpd children and mailfarm-inject) and acknowledges each one
    only after its queue file and directory entry are on stable storage
    (concurrent injections share their fsyncs: group commit). Moves every job
    through the router farm, the content-filter farm (scheduler.filter_enabled)
    and the transport farm of its channel, over persistent connections to
    run_dir/<farm>.sock; applies per-recipient results durably; retries with
    exponential backoff and jitter between scheduler.min_backoff_s and
    max_backoff_s; bounces (RFC 3464 DSN) permanent failures and jobs older
    than max_queue_lifetime_s. Operators reach it through run_dir/control.sock
    (mailfarmctl); mailfarm-replay hands it surviving jobs after a restart.

    Normally started by mailfarmd. Holds an exclusive lock on spool_dir/lock:
    a second scheduler on the same spool exits at once.

    SIGTERM or SIGINT: stop accepting, finish queued disk work, exit 0.
    SIGHUP: re-read the configuration (limits, backoff, concurrency, channels).

OPTIONS
    --config FILE    the configuration (default /etc/mailfarm/mailfarm.conf)
    --help           this text

EXIT STATUS
    0   orderly stop
    71  a socket could not be bound
    73  the spool could not be created
    75  another scheduler holds the spool lock
    78  configuration error

FILES
    spool_dir/queue/<h>/<qid>   queue files (see proto/spool.proto)
    spool_dir/tmp/              files being written (removed at start-up)
    spool_dir/corrupt/          quarantined files
    spool_dir/lock              the scheduler's lock (holds its pid)
    run_dir/inject.sock, run_dir/control.sock
)";

}  // namespace

int main(int argc, char** argv) {
  farm::InitProgram(&argc, &argv, kHelp);
  farm::Config config = farm::LoadConfigOrDie();
  return mailfarm::scheduler::RunScheduler(config, FLAGS_config);
}
