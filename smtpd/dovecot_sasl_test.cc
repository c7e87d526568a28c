// dovecot_sasl_test.cc: unit tests of the Dovecot auth protocol parsing
// (dovecot_sasl.h); the exchange with a real Dovecot is tested in
// tests/smtpd/smtpd_submission_test.py.
#include "smtpd/dovecot_sasl.h"

#include <gtest/gtest.h>

namespace smtpd {
namespace {

TEST(DovecotSasl, UnescapesValues) {
  EXPECT_EQ(DovecotUnescape("plain"), "plain");
  EXPECT_EQ(DovecotUnescape("a\001tb\001nc\0011d"), "a\tb\nc\001d");
  EXPECT_EQ(DovecotUnescape(std::string("x\0010y", 4)), std::string("x\0y", 3));
  EXPECT_EQ(DovecotUnescape("trailing\001"), "trailing\001");
}

TEST(DovecotSasl, SplitsAtTabs) {
  auto f = SplitDovecotLine("OK\t7\tuser=al\001tice");
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0], "OK");
  EXPECT_EQ(f[1], "7");
  EXPECT_EQ(f[2], "user=al\tice");
}

TEST(DovecotSasl, OkNamesTheUser) {
  auto step = DovecotStep(SplitDovecotLine("OK\t3\tuser=alice"), 3);
  ASSERT_TRUE(step.ok()) << step.status().message();
  EXPECT_EQ(step->kind, SaslStep::Kind::kOk);
  EXPECT_EQ(step->user, "alice");
}

TEST(DovecotSasl, OkWithoutUserIsAnError) {
  EXPECT_FALSE(DovecotStep(SplitDovecotLine("OK\t3"), 3).ok());
}

TEST(DovecotSasl, ContinueCarriesTheChallenge) {
  auto step = DovecotStep(SplitDovecotLine("CONT\t1\tVXNlcm5hbWU6"), 1);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ(step->kind, SaslStep::Kind::kContinue);
  EXPECT_EQ(step->challenge, "VXNlcm5hbWU6");
}

TEST(DovecotSasl, FailAndTemporaryFail) {
  auto fail =
      DovecotStep(SplitDovecotLine("FAIL\t2\tuser=bob\treason=Disabled"), 2);
  ASSERT_TRUE(fail.ok());
  EXPECT_EQ(fail->kind, SaslStep::Kind::kFail);
  EXPECT_EQ(fail->reason, "Disabled");
  EXPECT_EQ(fail->user, "bob");
  auto temp = DovecotStep(SplitDovecotLine("FAIL\t2\ttemp"), 2);
  ASSERT_TRUE(temp.ok());
  EXPECT_EQ(temp->kind, SaslStep::Kind::kTempFail);
  auto code = DovecotStep(SplitDovecotLine("FAIL\t2\tcode=temp_fail"), 2);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(code->kind, SaslStep::Kind::kTempFail);
}

TEST(DovecotSasl, RefusesAnotherRequestsAnswer) {
  EXPECT_FALSE(DovecotStep(SplitDovecotLine("OK\t4\tuser=alice"), 3).ok());
  EXPECT_FALSE(DovecotStep(SplitDovecotLine("OK\tx\tuser=alice"), 3).ok());
  EXPECT_FALSE(DovecotStep(SplitDovecotLine("DONE"), 3).ok());
  EXPECT_FALSE(DovecotStep(SplitDovecotLine("SPID\t3"), 3).ok());
}

TEST(DovecotSasl, UnreachableServiceIsAnError) {
  DovecotSasl sasl("/nonexistent/auth-client", 1000);
  EXPECT_FALSE(sasl.Mechanisms().ok());
  EXPECT_FALSE(sasl.Start("PLAIN", std::nullopt, SaslClientInfo{}).ok());
}

}  // namespace
}  // namespace smtpd
