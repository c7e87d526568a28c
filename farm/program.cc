// program.cc: common start-up of every mailfarm binary.
#include "farm/program.h"

#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

DEFINE_string(
    config, farm::kDefaultConfigPath,
    "Path of the configuration file (a textproto of proto/config.proto).");

namespace farm {

namespace {

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 ||
        std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "-help") == 0) {
      return true;
    }
    if (std::strcmp(argv[i], "--") == 0) break;
  }
  return false;
}

}  // namespace

void InitLogging(const char* argv0) {
  // With TZ unset glibc stats /etc/localtime at every log line's timestamp;
  // naming the file once makes that a single read (a line per message).
  ::setenv("TZ", ":/etc/localtime", /*overwrite=*/0);
  FLAGS_logtostderr = true;
  FLAGS_colorlogtostderr = false;
  google::InitGoogleLogging(argv0);
}

void InitProgram(int* argc, char*** argv, const std::string& help_text) {
  // Our own --help: gflags' would list every flag of every linked library.
  if (WantsHelp(*argc, *argv)) {
    std::fputs(help_text.c_str(), stdout);
    std::exit(kExitOk);
  }
  gflags::SetUsageMessage(help_text);
  gflags::AllowCommandLineReparsing();
  // Flags gflags does not know end the program with a usage error (64).
  std::string unknown;
  for (int i = 1; i < *argc; ++i) {
    const char* arg = (*argv)[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-' || arg[1] == '\0') continue;
    std::string name = arg + (arg[1] == '-' ? 2 : 1);
    name = name.substr(0, name.find('='));
    gflags::CommandLineFlagInfo info;
    if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info) &&
        !(name.rfind("no", 0) == 0 &&
          gflags::GetCommandLineFlagInfo(name.substr(2).c_str(), &info))) {
      unknown = arg;
      break;
    }
  }
  if (!unknown.empty()) {
    std::fprintf(stderr, "%s: unknown option %s (see --help)\n", (*argv)[0],
                 unknown.c_str());
    std::exit(kExitUsage);
  }
  gflags::ParseCommandLineNonHelpFlags(argc, argv, true);
  InitLogging((*argv)[0]);
}

Config LoadConfigOrDie() {
  auto config = LoadConfig(FLAGS_config);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    LOG(ERROR) << "configuration error: " << config.status().message();
    std::exit(kExitConfig);
  }
  return std::move(*config);
}

}  // namespace farm
