// config.h: loads and checks mailfarm.conf (a textproto of proto/config.proto)
// and derives the paths every process agrees on (sockets, scoreboards, spool).
// Used by every binary.
#ifndef MAILFARM_FARM_CONFIG_H_
#define MAILFARM_FARM_CONFIG_H_

#include <string>

#include "config.pb.h"
#include "farm/status.h"

namespace farm {

using mailfarm::config::Config;

// sysexits(3) codes the binaries share.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitDataErr = 65;
inline constexpr int kExitNoUser = 67;
inline constexpr int kExitUnavailable = 69;
inline constexpr int kExitSoftware = 70;
inline constexpr int kExitOsErr = 71;
inline constexpr int kExitCantCreate = 73;
inline constexpr int kExitIoErr = 74;
inline constexpr int kExitTempFail = 75;
inline constexpr int kExitNoPerm = 77;
inline constexpr int kExitConfig = 78;

// The configuration every binary reads without --config: the file the install
// puts there (CMake's MAILFARM_CONFIG_PATH, /etc/mailfarm/mailfarm.conf unless
// the build was configured otherwise).
extern const char kDefaultConfigPath[];

// Parses `path` with TextFormat and checks it (ValidateConfig). On error the
// Status reads "path:line:col: what" so an operator can go straight to it.
// Relative paths inside are made absolute against the current directory.
StatusOr<Config> LoadConfig(const std::string& path);

// Semantic checks TextFormat cannot make: unique channel names, routes naming
// existing channels, pool sizes that make sense, listener addresses.
Status ValidateConfig(const Config& config);

// A rate written "N/s", "N/m" or "N/h" (N > 0, a decimal number) in messages
// per second; an error names the text.
StatusOr<double> ParseRate(const std::string& text);

// Absolute form of `path` against the directory the process started in.
std::string ResolvePath(const std::string& path);

std::string SpoolDir(const Config& config);
std::string RunDir(const Config& config);
// mailfarmd's pid file: paths.pid_file, else run_dir + ".pid" (beside run_dir,
// in its parent, which the service account cannot write).
std::string PidFilePath(const Config& config);
std::string Hostname(const Config& config);  // config.hostname or gethostname()
// Where the sibling binaries are (mailfarmd's components, sendmail's
// mailfarm-postdrop): paths.bin_dir, or the running program's own dir.
std::string BinDir(const Config& config);

// Socket and scoreboard of a farm ("router", "filter", "transport-smtp",
// "smtpd").
std::string FarmSocketPath(const Config& config, const std::string& farm);
std::string ScoreboardPath(const Config& config, const std::string& farm);
std::string InjectSocketPath(const Config& config);
std::string ControlSocketPath(const Config& config);

// The farm name of a transport channel: "transport-<channel>".
std::string TransportFarmName(const std::string& channel);
// nullptr when no channel has that name.
const mailfarm::config::ChannelConfig* FindChannel(const Config& config,
                                                   const std::string& name);

}  // namespace farm

#endif  // MAILFARM_FARM_CONFIG_H_
