// session_submission_test.cc: unit tests of the submission side of the
// session (session_submission.cc) on in-memory streams with a scripted SASL
// back end: STARTTLS before AUTH and MAIL, AUTH PLAIN/LOGIN, relay after
// AUTH, implicit TLS. The real Dovecot is in
// tests/smtpd/smtpd_submission_test.py.
#include <gtest/gtest.h>

#include "smtpd/memory_transport.h"
#include "smtpd/session.h"

namespace smtpd {
namespace {

// alice/secret; PLAIN and LOGIN the way Dovecot runs them.
class FakeSasl : public SaslServer {
 public:
  bool down = false;
  int cancels = 0;
  SaslClientInfo last_client;

  farm::StatusOr<std::vector<std::string>> Mechanisms() override {
    if (down) return farm::Status::Error("connect: refused");
    return std::vector<std::string>{"PLAIN", "LOGIN"};
  }
  farm::StatusOr<SaslStep> Start(std::string_view mechanism,
                                 const std::optional<std::string>& initial,
                                 const SaslClientInfo& client) override {
    last_client = client;
    mechanism_ = std::string(mechanism);
    if (mechanism_ == "PLAIN") {
      if (!initial || initial->empty()) return Step(SaslStep::Kind::kContinue);
      return Check(*initial == "AGFsaWNlAHNlY3JldA==");
    }
    login_step_ = 0;
    return Step(SaslStep::Kind::kContinue, "VXNlcm5hbWU6");
  }
  farm::StatusOr<SaslStep> Continue(std::string_view response) override {
    if (mechanism_ == "PLAIN") return Check(response == "AGFsaWNlAHNlY3JldA==");
    if (login_step_++ == 0) {
      login_user_ = std::string(response);
      return Step(SaslStep::Kind::kContinue, "UGFzc3dvcmQ6");
    }
    return Check(login_user_ == "YWxpY2U=" && response == "c2VjcmV0");
  }
  void Cancel() override { ++cancels; }

 private:
  static SaslStep Step(SaslStep::Kind kind, std::string challenge = "") {
    SaslStep s;
    s.kind = kind;
    s.challenge = std::move(challenge);
    return s;
  }
  static SaslStep Check(bool good) {
    SaslStep s = Step(good ? SaslStep::Kind::kOk : SaslStep::Kind::kFail);
    if (good) s.user = "alice";
    return s;
  }
  std::string mechanism_;
  int login_step_ = 0;
  std::string login_user_;
};

class SubmissionTest : public testing::Test {
 protected:
  SubmissionTest() {
    options_.hostname = "mx.test";
    options_.local_domains = {"local.test"};
    options_.offer_auth = true;
    options_.require_auth = true;
    options_.now = [] { return time_t{1700000000}; };
    transport_.tls_available = true;
  }

  // `plain` is read before the (STARTTLS or implicit) handshake, `tls` after.
  std::string Run(std::vector<std::string> plain,
                  std::vector<std::string> tls) {
    transport_.input.assign(plain.begin(), plain.end());
    transport_.tls_input.assign(tls.begin(), tls.end());
    session_ = std::make_unique<Session>(options_, &transport_, &sink_,
                                         PeerAddress{"192.0.2.7", 4000});
    session_->set_sasl(&sasl_);
    session_->Run();
    return transport_.written;
  }
  static bool Has(const std::string& out, const std::string& text) {
    return out.find(text) != std::string::npos;
  }

  SessionOptions options_;
  MemoryTransport transport_;
  MemorySink sink_;
  FakeSasl sasl_;
  std::unique_ptr<Session> session_;
};

TEST_F(SubmissionTest, Port587RefusesAuthAndMailBeforeStartTls) {
  options_.require_tls = true;
  std::string out =
      Run({"EHLO c.test\r\n", "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
           "MAIL FROM:<alice@local.test>\r\n", "QUIT\r\n"},
          {});
  EXPECT_TRUE(Has(out, "250-STARTTLS"));
  EXPECT_FALSE(Has(out, "AUTH PLAIN"));  // not offered before TLS
  EXPECT_TRUE(Has(out,
                  "530 5.7.0 Must issue a STARTTLS command first\r\n"
                  "530 5.7.0 Must issue a STARTTLS command first\r\n"));
  EXPECT_FALSE(session_->auth_user().size());
}

TEST_F(SubmissionTest, Port587AuthPlainAfterStartTlsThenRelays) {
  options_.require_tls = true;
  std::string out = Run({"EHLO c.test\r\n", "STARTTLS\r\n"},
                        {"EHLO c.test\r\n", "MAIL FROM:<alice@local.test>\r\n",
                         "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                         "MAIL FROM:<alice@local.test> AUTH=<>\r\n",
                         "RCPT TO:<friend@elsewhere.example>\r\n", "DATA\r\n",
                         "hi\r\n.\r\n", "QUIT\r\n"});
  EXPECT_TRUE(Has(out, "250-AUTH PLAIN LOGIN\r\n"));
  EXPECT_TRUE(Has(out, "530 5.7.0 Authentication required\r\n"));
  EXPECT_TRUE(Has(out, "235 2.7.0 Authentication successful\r\n"));
  EXPECT_TRUE(Has(out, "250 2.1.5 Ok\r\n"));  // relay after AUTH
  EXPECT_TRUE(sasl_.last_client.secured);
  EXPECT_EQ(sasl_.last_client.remote_address, "192.0.2.7");
  ASSERT_EQ(sink_.accepted.size(), 1u);
  const auto& m = sink_.accepted[0];
  EXPECT_EQ(m.envelope.client.protocol, "ESMTPSA");
  EXPECT_EQ(m.envelope.client.sasl_method, "PLAIN");
  EXPECT_EQ(m.envelope.client.sasl_username, "alice");
  EXPECT_TRUE(Has(m.data,
                  "Received: from c.test ([192.0.2.7])\r\n"
                  "\t(Authenticated sender: alice)\r\n"
                  "\tby mx.test (mailfarm) with ESMTPSA"));
}

TEST_F(SubmissionTest, WrongPasswordIs535AndNoRelay) {
  options_.implicit_tls = true;
  std::string out =
      Run({}, {"EHLO c.test\r\n", "AUTH PLAIN AGJvYgB3cm9uZw==\r\n",
               "MAIL FROM:<alice@local.test>\r\n", "QUIT\r\n"});
  EXPECT_TRUE(Has(out, "535 5.7.8 Error: authentication failed: "));
  EXPECT_TRUE(Has(out, "530 5.7.0 Authentication required\r\n"));
  EXPECT_TRUE(sink_.accepted.empty());
}

TEST_F(SubmissionTest, AuthLoginRelaysChallenges) {
  options_.implicit_tls = true;
  std::string out = Run({}, {"EHLO c.test\r\n", "AUTH LOGIN\r\n",
                             "YWxpY2U=\r\n", "c2VjcmV0\r\n", "QUIT\r\n"});
  EXPECT_TRUE(Has(out, "220 mx.test"));  // banner after the handshake
  EXPECT_TRUE(Has(out,
                  "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
                  "235 2.7.0 Authentication successful\r\n"));
  EXPECT_EQ(session_->auth_user(), "alice");
}

TEST_F(SubmissionTest, ClientCancelsAndBadInputIsRefused) {
  options_.implicit_tls = true;
  std::string out =
      Run({}, {"EHLO c.test\r\n", "AUTH LOGIN\r\n", "*\r\n", "AUTH PLAIN\r\n",
               "not base64!\r\n", "AUTH CRAM-MD5\r\n", "AUTH PLAIN ???\r\n",
               "AUTH PLAIN =\r\n", "AGFsaWNlAHNlY3JldA==\r\n",
               "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "QUIT\r\n"});
  EXPECT_TRUE(Has(out, "501 5.7.0 Authentication aborted\r\n"));
  EXPECT_TRUE(Has(out, "501 5.5.2 Error: invalid base64 data\r\n"));
  EXPECT_TRUE(Has(out, "504 5.5.4 Unsupported authentication mechanism\r\n"));
  EXPECT_TRUE(
      Has(out, "501 5.5.2 Error: invalid base64 data in initial response\r\n"));
  EXPECT_TRUE(Has(out,
                  "235 2.7.0 Authentication successful\r\n"
                  "503 5.5.1 Error: already authenticated\r\n"));
  EXPECT_EQ(sasl_.cancels, 2);
}

TEST_F(SubmissionTest, UnreachableAuthServiceIs454) {
  options_.implicit_tls = true;
  sasl_.down = true;
  std::string out =
      Run({}, {"EHLO c.test\r\n", "AUTH PLAIN =\r\n", "QUIT\r\n"});
  EXPECT_FALSE(Has(out, "AUTH PLAIN"));
  EXPECT_TRUE(Has(out, "454 4.7.0 Temporary authentication failure\r\n"));
}

TEST_F(SubmissionTest, FailedImplicitHandshakeEndsTheSession) {
  options_.implicit_tls = true;
  transport_.fail_handshake = true;
  std::string out = Run({}, {"EHLO c.test\r\n"});
  EXPECT_EQ(out, "");  // no banner in plaintext
  EXPECT_EQ(session_->end_reason(), "TLS handshake failed");
}

TEST_F(SubmissionTest, PlainSmtpListenerDoesNotOfferAuth) {
  options_.offer_auth = false;
  options_.require_auth = false;
  std::string out = Run({"EHLO c.test\r\n", "AUTH PLAIN =\r\n",
                         "MAIL FROM:<a@b.test> AUTH=<>\r\n", "QUIT\r\n"},
                        {});
  EXPECT_FALSE(Has(out, "AUTH PLAIN"));
  EXPECT_TRUE(Has(out, "503 5.5.1 Error: authentication not enabled\r\n"));
  EXPECT_TRUE(Has(out, "555 5.5.4 Unsupported option: AUTH\r\n"));
}

}  // namespace
}  // namespace smtpd
