// filter_handler.h: the content-filter farm's JobHandler. For a STAGE_FILTER
// Job it reads the queued message read-only, applies the size limit, the
// PCRE2 rules, the external scanner and DKIM signing within a time limit, and
// answers with a FilterVerdict (action, DSN, text, headers to add).
#ifndef MAILFARM_FILTER_FILTER_HANDLER_H_
#define MAILFARM_FILTER_FILTER_HANDLER_H_

#include <functional>
#include <memory>
#include <vector>

#include "config.pb.h"
#include "farm/job_server.h"
#include "filter/dkim.h"
#include "filter/rules.h"
#include "filter/scanner.h"

namespace filter {

// Everything the filter loads from the config, compiled once per child.
struct FilterTables {
  mailfarm::config::FilterConfig config;
  RuleSet rules;
  std::vector<DkimSigner> signers;
};

// Compiles the rules and loads the DKIM keys; the first error names the rule
// or key. The manager calls it at start (exit 78 on error), each child after
// fork.
farm::StatusOr<FilterTables> LoadFilterTables(
    const mailfarm::config::FilterConfig& config);

// Not thread-safe (one per child).
class FilterHandler : public farm::JobHandler {
 public:
  using UnixClock = std::function<int64_t()>;  // seconds, for DKIM t=
  explicit FilterHandler(FilterTables tables, UnixClock now = nullptr);

  // Sets result->verdict and the job-level outcome: OK for ACCEPT, DISCARD
  // and HOLD, PERMFAIL for REJECT, TEMPFAIL for TEMPFAIL (unreadable message,
  // time limit, failed scanner without fail_open, signing error).
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override;

 private:
  // Fills `verdict` for the parsed message; the caller mirrors it into Result.
  void Decide(const mailfarm::Job& job, const Message& message,
              Deadline deadline, mailfarm::FilterVerdict* verdict);
  // Adds the DKIM-Signature for the sender's domain, if a key exists.
  void MaybeSign(const mailfarm::Job& job, const Message& message,
                 mailfarm::FilterVerdict* verdict);

  FilterTables tables_;
  Scanner scanner_;
  UnixClock now_;
};

// Builds the handler from `config` (in each child). A config that no longer
// loads (changed since start) gives a handler that tempfails every job.
std::unique_ptr<farm::JobHandler> MakeFilterHandler(
    const mailfarm::config::Config& config);

}  // namespace filter

#endif  // MAILFARM_FILTER_FILTER_HANDLER_H_
