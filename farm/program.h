// program.h: the start of every mailfarm main(): flags, --help, logging,
// config. Keeps each binary's main() to its own job.
#ifndef MAILFARM_FARM_PROGRAM_H_
#define MAILFARM_FARM_PROGRAM_H_

#include <gflags/gflags_declare.h>

#include <string>

#include "farm/config.h"

DECLARE_string(config);

namespace farm {

// Parses gflags, prints `help_text` and exits 0 on --help / -h, exits 64 on an
// unknown flag, and sets up glog (stderr, with program name and pid).
void InitProgram(int* argc, char*** argv, const std::string& help_text);

// Logging only, for tools with their own argument syntax (mailfarm-inject).
void InitLogging(const char* argv0);

// Loads FLAGS_config; on error prints "path:line:col: what" and exits 78.
Config LoadConfigOrDie();

}  // namespace farm

#endif  // MAILFARM_FARM_PROGRAM_H_
