// scanner.h: the filter's external scanner hook (FilterConfig.scanner): runs a
// command such as spamc or clamdscan with the message on stdin (argv, never a
// shell) and maps its exit code and first line of output to a verdict.
// Used by FilterHandler once per message.
#ifndef MAILFARM_FILTER_SCANNER_H_
#define MAILFARM_FILTER_SCANNER_H_

#include <chrono>
#include <string>
#include <string_view>

#include "config.pb.h"

namespace filter {

struct ScanResult {
  enum class Verdict { kAccept, kReject, kTempFail };
  Verdict verdict = Verdict::kTempFail;
  std::string first_line;  // the scanner's first line of stdout (trimmed)
  std::string reason;  // why: "exit 1", "killed by signal 9", "timed out after
                       // 30000 ms"
  bool failed =
      false;  // the scanner itself failed (hang, crash, exec error, odd exit)
  int exit_code = -1;  // -1 when it did not exit normally
};

// Stateless; each Scan runs one process.
class Scanner {
 public:
  explicit Scanner(mailfarm::config::ScannerConfig config)
      : config_(std::move(config)) {}

  bool enabled() const { return config_.argv_size() > 0; }
  const mailfarm::config::ScannerConfig& config() const { return config_; }

  // Runs the scanner in its own process group with `message` on stdin. Waits
  // until min(timeout_ms, deadline); past that the whole process group is
  // killed (SIGKILL) and the result is a failed kTempFail. Exit codes:
  // accept_exit_codes/reject_exit_codes first, then 0 accept, 1 reject, any
  // other code (and death by a signal, or a command that cannot be run) is a
  // failed kTempFail. fail_open is applied by the caller.
  ScanResult Scan(std::string_view message,
                  std::chrono::steady_clock::time_point deadline) const;

 private:
  mailfarm::config::ScannerConfig config_;
};

}  // namespace filter

#endif  // MAILFARM_FILTER_SCANNER_H_
