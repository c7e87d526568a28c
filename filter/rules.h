// rules.h: the content filter's header and body rules (FilterConfig.rule),
// compiled with PCRE2 and evaluated against a Message by FilterHandler.
//
// Why PCRE2 and not std::regex: std::regex backtracks without any bound (a
// pattern like (a+)+$ on a long line runs for minutes or overflows the stack),
// offers no match or depth limits to stop that, and is an order of magnitude
// slower than PCRE2's JIT. PCRE2 is what Postfix's pcre tables use, and its
// match context lets every match carry a limit, so one hostile message cannot
// pin a filter child.
#ifndef MAILFARM_FILTER_RULES_H_
#define MAILFARM_FILTER_RULES_H_

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.pb.h"
#include "farm/status.h"
#include "filter/message.h"
#include "wire.pb.h"

namespace filter {

using Deadline = std::chrono::steady_clock::time_point;

struct RuleDecision {
  enum class Kind { kNone, kAccept, kReject, kDiscard, kHold, kTimeout };
  Kind kind = Kind::kNone;  // kNone: no terminal rule matched
  std::string rule;         // name of the deciding rule
  std::string text;         // its text (reject/hold/discard reason)
  std::vector<mailfarm::Header>
      add_headers;  // from every matching ADD_HEADER rule
};

// Splits "Name: value" (ADD_HEADER text); fails on a missing colon or a bad
// name.
farm::StatusOr<mailfarm::Header> ParseHeaderLine(std::string_view text);

// Not thread-safe: match data is reused between calls (one RuleSet per child).
class RuleSet {
 public:
  // Compiles every rule; an error names the rule (position and name) and the
  // PCRE2 message with its offset in the pattern.
  static farm::StatusOr<RuleSet> Compile(
      const mailfarm::config::FilterConfig& config);

  // Rules are tried in config order, each against every header line ("Name:
  // value", unfolded) or every body line (without its line end). ADD_HEADER
  // rules add their header (once) and go on; the first other rule that matches
  // decides. Past `deadline` the evaluation stops with kTimeout. A match that
  // exceeds the PCRE2 limits counts as no match (logged), as in Postfix.
  RuleDecision Evaluate(const Message& message, Deadline deadline) const;

  size_t size() const { return rules_.size(); }

 private:
  struct CodeFree {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
  };
  struct MatchDataFree {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
  };
  struct ContextFree {
    void operator()(pcre2_match_context* c) const {
      pcre2_match_context_free(c);
    }
  };
  struct Compiled {
    mailfarm::config::FilterRule rule;
    std::string name;  // rule.name or "rule[i]"
    std::unique_ptr<pcre2_code, CodeFree> code;
    std::unique_ptr<pcre2_match_data, MatchDataFree> match_data;
    mailfarm::Header header;  // ADD_HEADER only
  };

  // True when `rule` matches `subject`; limit errors are logged, count as
  // false.
  bool Matches(const Compiled& rule, std::string_view subject) const;

  std::vector<Compiled> rules_;
  std::unique_ptr<pcre2_match_context, ContextFree> context_;
};

}  // namespace filter

#endif  // MAILFARM_FILTER_RULES_H_
