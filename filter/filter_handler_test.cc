// filter_handler_test.cc: whole filter jobs through FilterHandler: each
// action, size limit, unreadable message, scanner verdicts and fail_open, DKIM
// for the right domain only, and the Result's outcome mirroring the verdict.
#include "filter/filter_handler.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <cstdio>
#include <fstream>

namespace filter {
namespace {

using Verdict = mailfarm::FilterVerdict;

class FilterHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/filter_handler_test_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    EVP_PKEY* key = EVP_RSA_gen(1024);
    std::FILE* f = std::fopen((dir_ + "/key.pem").c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    EVP_PKEY_free(key);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::unique_ptr<FilterHandler> Make(const std::string& extra) {
    mailfarm::config::FilterConfig config;
    std::string text = R"(
      rule { name: "bad" where: HEADER pattern: "^Subject: .*REJECTME" action: REJECT text: "go away" }
      rule { name: "drop" where: BODY pattern: "DISCARDME" action: DISCARD }
      rule { name: "park" where: HEADER pattern: "^X-Hold: yes" action: HOLD text: "review" }
      rule { name: "ok" where: HEADER pattern: "^X-Trusted: yes" action: ACCEPT }
      rule { name: "tag" where: BODY pattern: "TAGME" action: ADD_HEADER text: "X-Tagged: 1" }
      dkim { domain: "example.com" selector: "s1" private_key_file: ")" +
                       dir_ + R"(/key.pem" }
    )" + extra;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
        << text;
    auto tables = LoadFilterTables(config);
    EXPECT_TRUE(tables.ok()) << tables.status().message();
    return std::make_unique<FilterHandler>(std::move(tables.value()),
                                           [] { return 1234; });
  }

  mailfarm::Result Run(FilterHandler& h, const std::string& message,
                       const std::string& sender = "s@example.org") {
    std::string path = dir_ + "/q" + std::to_string(++n_);
    std::ofstream(path, std::ios::binary) << "ENVELOPE" << message;
    mailfarm::Job job;
    job.set_qid("Q" + std::to_string(n_));
    job.set_stage(mailfarm::STAGE_FILTER);
    job.set_sender(sender);
    job.set_message_path(path);
    job.set_body_offset(8);
    job.set_body_size(message.size());
    mailfarm::Result result;
    h.Handle(job, &result);
    return result;
  }

  static std::vector<std::string> Names(const mailfarm::Result& r) {
    std::vector<std::string> out;
    for (const auto& h : r.verdict().add_headers()) out.push_back(h.name());
    return out;
  }

  std::string dir_;
  int n_ = 0;
};

using V = std::vector<std::string>;

TEST_F(FilterHandlerTest, AcceptSignsForTheFromDomain) {
  auto h = Make("");
  auto r = Run(*h, "From: a@Example.com\r\nSubject: hi\r\n\r\nTAGME\r\n");
  EXPECT_EQ(r.verdict().action(), Verdict::ACCEPT);
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_OK);
  EXPECT_EQ(Names(r), (V{"X-Tagged", "DKIM-Signature"}));
  EXPECT_NE(
      r.verdict().add_headers(1).value().find("d=example.com; s=s1; t=1234;"),
      std::string::npos);
  // Another domain in From:, envelope sender in a signing domain: signed by
  // that.
  auto env = Run(*h, "From: a@other.org\r\n\r\nx\r\n", "bounce@example.com");
  EXPECT_EQ(Names(env), V{"DKIM-Signature"});
  // Neither: not signed.
  EXPECT_EQ(Names(Run(*h, "From: a@other.org\r\n\r\nx\r\n")), V{});
}

TEST_F(FilterHandlerTest, EachRuleAction) {
  auto h = Make("");
  auto reject =
      Run(*h, "From: a@example.com\r\nSubject: REJECTME\r\n\r\nx\r\n");
  EXPECT_EQ(reject.verdict().action(), Verdict::REJECT);
  EXPECT_EQ(reject.verdict().dsn(), "5.7.1");
  EXPECT_EQ(reject.verdict().text(), "go away");
  EXPECT_EQ(reject.verdict().rule(), "bad");
  EXPECT_EQ(reject.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(Names(reject), V{});

  auto discard = Run(*h, "From: a@example.com\r\n\r\nDISCARDME\r\n");
  EXPECT_EQ(discard.verdict().action(), Verdict::DISCARD);
  EXPECT_EQ(discard.outcome(), mailfarm::OUTCOME_OK);

  auto hold = Run(*h, "From: a@example.com\r\nX-Hold: yes\r\n\r\nx\r\n");
  EXPECT_EQ(hold.verdict().action(), Verdict::HOLD);
  EXPECT_EQ(hold.verdict().text(), "review");
  EXPECT_EQ(Names(hold),
            V{"DKIM-Signature"});  // signed for when it is released

  auto accept = Run(*h, "X-Trusted: yes\r\nSubject: REJECTME\r\n\r\n");
  EXPECT_EQ(accept.verdict().action(), Verdict::REJECT);  // "bad" comes first
}

TEST_F(FilterHandlerTest, SizeLimitAndUnreadableMessage) {
  auto h = Make("max_message_bytes: 10");
  auto big = Run(*h, "From: a@example.com\r\n\r\nbody\r\n");
  EXPECT_EQ(big.verdict().action(), Verdict::REJECT);
  EXPECT_EQ(big.verdict().dsn(), "5.3.4");

  auto ok = Make("");
  mailfarm::Job job;
  job.set_qid("Q");
  job.set_stage(mailfarm::STAGE_FILTER);
  job.set_message_path(dir_ + "/missing");
  job.set_body_size(10);
  mailfarm::Result r;
  ok->Handle(job, &r);
  EXPECT_EQ(r.verdict().action(), Verdict::TEMPFAIL);
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_NE(r.text().find("missing"), std::string::npos);

  job.set_stage(mailfarm::STAGE_ROUTE);
  mailfarm::Result wrong;
  ok->Handle(job, &wrong);
  EXPECT_EQ(wrong.verdict().action(), Verdict::TEMPFAIL);
}

TEST_F(FilterHandlerTest, ScannerVerdicts) {
  const std::string scanner =
      R"(scanner { argv: "/bin/sh" argv: "-c" argv: "if grep -q VIRUS; then echo 'Eicar FOUND'; exit 1; fi; echo clean" })";
  auto h = Make(scanner);
  auto clean = Run(*h, "From: a@example.com\r\n\r\nhello\r\n");
  EXPECT_EQ(clean.verdict().action(), Verdict::ACCEPT);
  ASSERT_EQ(Names(clean), (V{"X-Scanner-Result", "DKIM-Signature"}));
  EXPECT_EQ(clean.verdict().add_headers(0).value(), "clean");
  auto virus = Run(*h, "From: a@example.com\r\n\r\nVIRUS\r\n");
  EXPECT_EQ(virus.verdict().action(), Verdict::REJECT);
  EXPECT_EQ(virus.verdict().text(), "rejected by content scanner: Eicar FOUND");
  // An ACCEPT rule skips the scanner.
  auto trusted = Run(*h, "X-Trusted: yes\r\n\r\nVIRUS\r\n");
  EXPECT_EQ(trusted.verdict().action(), Verdict::ACCEPT);
}

TEST_F(FilterHandlerTest, HangingScannerTempfailsUnlessFailOpen) {
  auto h = Make(R"(scanner { argv: "sleep" argv: "30" timeout_ms: 300 })");
  auto r = Run(*h, "From: a@example.com\r\n\r\nx\r\n");
  EXPECT_EQ(r.verdict().action(), Verdict::TEMPFAIL);
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_EQ(r.verdict().text(),
            "content scanner failed: timed out after 300 ms");

  auto open = Make(
      R"(scanner { argv: "sleep" argv: "30" timeout_ms: 300 fail_open: true })");
  auto o = Run(*open, "From: a@example.com\r\n\r\nx\r\n");
  EXPECT_EQ(o.verdict().action(), Verdict::ACCEPT);
  ASSERT_EQ(Names(o), (V{"X-Scanner-Result", "DKIM-Signature"}));
  EXPECT_EQ(o.verdict().add_headers(0).value(),
            "unchecked (scanner failed: timed out after 300 ms)");
}

TEST_F(FilterHandlerTest, EmptyAndHeaderlessMessages) {
  auto h = Make(R"(scanner { argv: "wc" argv: "-c" })");
  auto empty = Run(*h, "");
  EXPECT_EQ(empty.verdict().action(), Verdict::ACCEPT);
  ASSERT_EQ(Names(empty), V{"X-Scanner-Result"});  // no From: nothing to sign
  EXPECT_EQ(empty.verdict().add_headers(0).value(), "0");
  auto bare = Run(*h, "no headers at all\r\n", "x@example.com");
  EXPECT_EQ(bare.verdict().action(), Verdict::ACCEPT);
  EXPECT_EQ(Names(bare), V{"X-Scanner-Result"});
}

TEST_F(FilterHandlerTest, TimeLimitTempfails) {
  auto h = Make(
      R"(time_limit_ms: 1500 scanner { argv: "sleep" argv: "30" timeout_ms: 60000 })");
  auto r = Run(*h, "From: a@example.com\r\n\r\nx\r\n");
  EXPECT_EQ(r.verdict().action(), Verdict::TEMPFAIL);
  EXPECT_EQ(r.verdict().text(),
            "content scanner failed: message time limit reached");
}

TEST(FilterTablesTest, ErrorsNameTheCulprit) {
  mailfarm::config::FilterConfig config;
  auto* key = config.add_dkim();
  key->set_domain("example.com");
  key->set_selector("s");
  key->set_private_key_file("/nonexistent.pem");
  auto t = LoadFilterTables(config);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("filter_rules.dkim[0]"),
            std::string::npos);
  mailfarm::config::FilterConfig bad_rule;
  bad_rule.add_rule()->set_pattern("[");
  t = LoadFilterTables(bad_rule);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("filter_rules.rule[0]"),
            std::string::npos);
}

}  // namespace
}  // namespace filter

namespace filter {
namespace {

TEST(MakeFilterHandlerTest, ConfigThatNoLongerLoadsTempfailsEveryJob) {
  mailfarm::config::Config config;
  config.mutable_filter_rules()->add_rule()->set_pattern("(");
  auto handler = MakeFilterHandler(config);
  ASSERT_NE(handler, nullptr);
  mailfarm::Job job;
  job.set_stage(mailfarm::STAGE_FILTER);
  mailfarm::Result result;
  handler->Handle(job, &result);
  EXPECT_EQ(result.verdict().action(), mailfarm::FilterVerdict::TEMPFAIL);
  EXPECT_EQ(result.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_NE(result.text().find("filter_rules.rule[0]"), std::string::npos);
}

}  // namespace
}  // namespace filter
