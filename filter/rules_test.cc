// rules_test.cc: PCRE2 rule matching: header and body rules, each action,
// order, case, ADD_HEADER, compile errors, match limits and the deadline.
#include "filter/rules.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace filter {
namespace {

using Kind = RuleDecision::Kind;

mailfarm::config::FilterConfig Config(const std::string& text) {
  mailfarm::config::FilterConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

Deadline Far() {
  return std::chrono::steady_clock::now() + std::chrono::hours(1);
}

constexpr char kRules[] = R"(
  rule { name: "tag-list" where: HEADER pattern: "^List-Id:" action: ADD_HEADER text: "X-List: yes" }
  rule { name: "vip" where: HEADER pattern: "^From:.*@vip\\.example$" action: ACCEPT }
  rule { name: "spam-subject" where: HEADER pattern: "^Subject:.*viagra" action: REJECT text: "no spam here" }
  rule { name: "casefull" where: HEADER pattern: "^X-Exact: ABC$" caseless: false action: DISCARD }
  rule { name: "quarantine" where: BODY pattern: "^-----BEGIN PGP" action: HOLD text: "pgp review" }
  rule { name: "drop-test" where: BODY pattern: "DROPME" action: DISCARD }
  rule { name: "tag-body" where: BODY pattern: "unsubscribe" action: ADD_HEADER text: "X-Bulk: maybe" }
)";

RuleDecision Eval(const RuleSet& rules, const std::string& message) {
  return rules.Evaluate(ParseMessage(message), Far());
}

TEST(RulesTest, EachAction) {
  auto rules = RuleSet::Compile(Config(kRules));
  ASSERT_TRUE(rules.ok()) << rules.status().message();

  auto none = Eval(*rules, "Subject: hi\r\n\r\nhello\r\n");
  EXPECT_EQ(none.kind, Kind::kNone);
  EXPECT_TRUE(none.add_headers.empty());

  auto reject = Eval(*rules, "Subject: cheap VIAGRA\r\n\r\nx\r\n");
  EXPECT_EQ(reject.kind, Kind::kReject);
  EXPECT_EQ(reject.rule, "spam-subject");
  EXPECT_EQ(reject.text, "no spam here");

  auto accept = Eval(
      *rules, "From: boss@vip.example\r\nSubject: viagra\r\n\r\nDROPME\r\n");
  EXPECT_EQ(accept.kind, Kind::kAccept);  // earlier rule wins
  EXPECT_EQ(accept.rule, "vip");

  auto hold =
      Eval(*rules, "Subject: x\r\n\r\nhi\r\n-----BEGIN PGP MESSAGE-----\r\n");
  EXPECT_EQ(hold.kind, Kind::kHold);
  EXPECT_EQ(hold.text, "pgp review");

  auto discard = Eval(*rules, "Subject: x\r\n\r\nplease DROPME now");
  EXPECT_EQ(discard.kind, Kind::kDiscard);
  EXPECT_EQ(discard.rule, "drop-test");
}

TEST(RulesTest, AddHeaderAccumulatesAndContinues) {
  auto rules = RuleSet::Compile(Config(kRules));
  ASSERT_TRUE(rules.ok());
  auto d = Eval(
      *rules,
      "List-Id: <x.example>\r\nSubject: hi\r\n\r\nto unsubscribe click\r\n");
  EXPECT_EQ(d.kind, Kind::kNone);
  ASSERT_EQ(d.add_headers.size(), 2u);
  EXPECT_EQ(d.add_headers[0].name(), "X-List");
  EXPECT_EQ(d.add_headers[0].value(), "yes");
  EXPECT_EQ(d.add_headers[1].name(), "X-Bulk");
  auto both = Eval(*rules, "List-Id: <x>\r\nSubject: viagra\r\n\r\n");
  EXPECT_EQ(both.kind, Kind::kReject);
  EXPECT_EQ(both.add_headers.size(), 1u);
}

TEST(RulesTest, CaseAndFolding) {
  auto rules = RuleSet::Compile(Config(kRules));
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(Eval(*rules, "X-Exact: ABC\r\n\r\n").kind, Kind::kDiscard);
  EXPECT_EQ(Eval(*rules, "X-Exact: abc\r\n\r\n").kind,
            Kind::kNone);  // caseless: false
  // A folded Subject is matched unfolded.
  EXPECT_EQ(Eval(*rules, "Subject: cheap\r\n viagra\r\n\r\n").kind,
            Kind::kReject);
  // Header rules do not look at the body, nor body rules at headers.
  EXPECT_EQ(Eval(*rules, "X: y\r\n\r\nSubject: viagra\r\n").kind, Kind::kNone);
  EXPECT_EQ(Eval(*rules, "X-DROPME: y\r\n\r\nclean\r\n").kind, Kind::kNone);
}

TEST(RulesTest, CompileErrorsNameTheRule) {
  struct Bad {
    const char* text;
    const char* error;
  };
  const Bad cases[] = {
      {R"(rule { name: "broken" pattern: "(unclosed" })",
       "rule[0] (broken): bad pattern at offset 9"},
      {R"(rule { pattern: "" })", "rule[0] (rule[0]): empty pattern"},
      {R"(rule { pattern: "x" } rule { name: "h" pattern: "x" action: ADD_HEADER text: "NoColon" })",
       "rule[1] (h): header \"NoColon\": expected"},
      {R"(rule { name: "h" pattern: "x" action: ADD_HEADER text: "Bad Name: v" })",
       "bad field name"},
  };
  for (const Bad& c : cases) {
    auto rules = RuleSet::Compile(Config(c.text));
    ASSERT_FALSE(rules.ok()) << c.text;
    EXPECT_NE(rules.status().message().find(c.error), std::string::npos)
        << rules.status().message();
  }
}

TEST(RulesTest, BacktrackingBlowupIsBounded) {
  // (a+)+$ against "aaaa...b" is exponential without a match limit.
  auto rules = RuleSet::Compile(Config(R"(
    regex_match_limit: 10000
    rule { name: "evil" where: BODY pattern: "^(a+)+$" action: REJECT }
    rule { name: "after" where: BODY pattern: "b$" action: HOLD })"));
  ASSERT_TRUE(rules.ok());
  std::string body(5000, 'a');
  body += "b\r\n";
  auto start = std::chrono::steady_clock::now();
  auto d = Eval(*rules, "Subject: x\r\n\r\n" + body);
  // The limit stops the evil rule (counted as no match); the next rule runs.
  EXPECT_EQ(d.kind, Kind::kHold);
  EXPECT_EQ(d.rule, "after");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(RulesTest, DeadlineStopsEvaluation) {
  auto rules = RuleSet::Compile(
      Config(R"(rule { name: "slow" where: BODY pattern: "zzz" })"));
  ASSERT_TRUE(rules.ok());
  auto past = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  auto d = rules->Evaluate(ParseMessage("Subject: x\r\n\r\nline\r\n"), past);
  EXPECT_EQ(d.kind, Kind::kTimeout);
  EXPECT_EQ(d.rule, "slow");
}

TEST(RulesTest, HeaderLineParser) {
  auto ok = ParseHeaderLine("X-Filtered:   by mailfarm");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->name(), "X-Filtered");
  EXPECT_EQ(ok->value(), "by mailfarm");
  EXPECT_FALSE(ParseHeaderLine(": v").ok());
  EXPECT_FALSE(ParseHeaderLine("X: a\r\nInjected: b").ok());
}

}  // namespace
}  // namespace filter
