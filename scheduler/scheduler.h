// scheduler.h: mailfarm-scheduler's process: takes the spool lock, opens the
// store, the farm links, inject.sock and control.sock, and runs the libevent
// loop until SIGTERM (or a control "stop"); SIGHUP reloads the configuration.
#ifndef MAILFARM_SCHEDULER_SCHEDULER_H_
#define MAILFARM_SCHEDULER_SCHEDULER_H_

#include <string>

#include "farm/config.h"

namespace mailfarm::scheduler {

// Runs the scheduler; returns the process exit code (0 after an orderly stop,
// 75 when another scheduler holds the spool, 71 when a socket cannot be bound).
// `config_path` is re-read on SIGHUP.
int RunScheduler(const farm::Config& config, const std::string& config_path);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SCHEDULER_H_
