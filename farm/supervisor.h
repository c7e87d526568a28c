// supervisor.h: the heart of mailfarmd. Starts every configured component
// (farms, scheduler, front end) as its own process group, restarts one that
// dies with exponential backoff, runs mailfarm-replay once the scheduler is up,
// forwards SIGHUP, and stops everything in order on SIGTERM.
#ifndef MAILFARM_FARM_SUPERVISOR_H_
#define MAILFARM_FARM_SUPERVISOR_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "farm/config.h"
#include "farm/status.h"
#include "farm/unique_fd.h"

namespace farm {

struct Component {
  std::string name;  // "scheduler", "router", "transport-smtp", "smtpd", ...
  std::vector<std::string> argv;  // argv[0] is an absolute path
  bool one_shot = false;          // mailfarm-replay: run once, never restarted
  // smtpd: gets the TCP listeners mailfarmd bound.
  bool takes_listeners = false;
  // The front end starts only once the scheduler takes injections, so its
  // first clients do not meet 451 while the scheduler is still opening the
  // spool.
  bool waits_for_scheduler = false;
  bool ever_started = false;
  pid_t pid = 0;
  int64_t started_ms = 0;
  int64_t next_start_ms = 0;  // when a dead component may start again
  int64_t backoff_ms = 0;
  bool finished = false;  // one-shot that has run
};

// The components a config asks for, in start order (farms, scheduler, front
// end); stop order is the reverse. Fails when a binary is missing.
StatusOr<std::vector<Component>> PlanComponents(const Config& config,
                                                const std::string& config_path,
                                                const std::string& bin_dir);

// Single-threaded; owns the component processes.
class Supervisor {
 public:
  // `listeners` are smtpd's bound TCP sockets (config.smtpd.listen order),
  // passed to it as fds 3.. (LISTEN_FDS) at every start, so they survive its
  // restarts and port 25 needs no root after mailfarmd's own start-up.
  Supervisor(Config config, std::string config_path, std::string bin_dir,
             std::vector<Component> components,
             std::vector<UniqueFd> listeners);
  // smtpd's TLS key, read by mailfarmd before it dropped root
  // (farm/inherited_key.h): passed to every smtpd start after the listeners.
  void SetTlsKey(UniqueFd key) { tls_key_ = std::move(key); }
  // Runs until SIGTERM/SIGINT and an orderly stop. Returns the exit code.
  int Run();

 private:
  void StartDue(int64_t now);
  void Start(Component& c);
  void ReapChildren(int64_t now);
  void Reload();
  void Stop();
  void CheckReady();
  void StartReplay();

  Config config_;
  std::string config_path_;
  std::string bin_dir_;
  std::vector<Component> components_;
  std::vector<UniqueFd> listeners_;
  UniqueFd tls_key_;
  bool ready_ = false;         // READY=1 sent
  bool scheduler_up_ = false;  // the current scheduler takes injections
  bool replay_again_ = false;  // a scheduler came up while replay still ran
};

// Binds the smtpd listeners of the config (none when smtpd is disabled).
StatusOr<std::vector<UniqueFd>> BindSmtpdListeners(const Config& config);

}  // namespace farm

#endif  // MAILFARM_FARM_SUPERVISOR_H_
