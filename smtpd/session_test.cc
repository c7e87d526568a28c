// session_test.cc: unit tests of the SMTP session state machine on in-memory
// streams: sequencing, limits, relay control, pipelining, STARTTLS reset,
// smuggling, PROXY, queue failures.
#include "smtpd/session.h"

#include <gtest/gtest.h>

#include <sstream>

#include "smtpd/memory_transport.h"

namespace smtpd {
namespace {

class SessionTest : public testing::Test {
 protected:
  SessionTest() {
    options_.hostname = "mx.test";
    options_.local_domains = {"local.test"};
    options_.relay_domains = {"relay.test"};
    options_.trusted_networks = *CidrList::Parse({"127.0.0.1/32", "::1/128"});
    options_.max_errors = 5;
    options_.max_recipients = 3;
    options_.max_message_bytes = 1000;
    options_.now = [] { return time_t{1700000000}; };
  }

  // Runs a session from `peer`; each string is one Read() segment.
  std::string Run(std::vector<std::string> segments,
                  const std::string& peer = "192.0.2.1") {
    transport_.input.assign(segments.begin(), segments.end());
    session_ = std::make_unique<Session>(options_, &transport_, &sink_,
                                         PeerAddress{peer, 4000});
    session_->Run();
    return transport_.written;
  }

  // The reply codes, one per reply (the last line of a multi-line reply).
  static std::vector<std::string> Codes(const std::string& out) {
    std::vector<std::string> codes;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() >= 4 && line[3] == ' ')
        codes.push_back(line.substr(0, 3));
    }
    return codes;
  }

  static std::vector<std::string> V(std::initializer_list<const char*> l) {
    return std::vector<std::string>(l.begin(), l.end());
  }

  SessionOptions options_;
  MemoryTransport transport_;
  MemorySink sink_;
  std::unique_ptr<Session> session_;
};

TEST_F(SessionTest, PlainMessageIsQueued) {
  std::string out = Run({"EHLO client.test\r\n", "MAIL FROM:<a@b.test>\r\n",
                         "RCPT TO:<u@local.test>\r\n", "DATA\r\n",
                         "Subject: hi\r\n\r\n..body\r\n.\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "250", "221"}));
  EXPECT_NE(out.find("250 2.0.0 Ok: queued as Q1"), std::string::npos);
  EXPECT_NE(out.find("250-PIPELINING"), std::string::npos);
  EXPECT_NE(out.find("250-SIZE 1000"), std::string::npos);
  EXPECT_EQ(out.find("STARTTLS"), std::string::npos);  // no certificate
  ASSERT_EQ(sink_.accepted.size(), 1u);
  const auto& m = sink_.accepted[0];
  EXPECT_EQ(m.envelope.sender, "a@b.test");
  EXPECT_EQ(m.envelope.recipients, V({"u@local.test"}));
  EXPECT_EQ(m.envelope.client.address, "192.0.2.1");
  EXPECT_EQ(m.envelope.client.helo, "client.test");
  EXPECT_EQ(m.envelope.client.protocol, "ESMTP");
  EXPECT_EQ(m.data.rfind("Received: from client.test ([192.0.2.1])\r\n\tby "
                         "mx.test (mailfarm) with ESMTP\r\n"
                         "\tfor <u@local.test>; ",
                         0),
            0u)
      << m.data;
  EXPECT_NE(m.data.find("\r\nSubject: hi\r\n\r\n.body\r\n"), std::string::npos);
  EXPECT_EQ(session_->end_reason(), "quit");
}

TEST_F(SessionTest, PipelinedRepliesLeaveInOneWrite) {
  std::string out = Run({"EHLO c\r\n",
                         "MAIL FROM:<a@b.test>\r\nRCPT "
                         "TO:<u@local.test>\r\nRCPT TO:<v@local.test>\r\n"
                         "DATA\r\n",
                         "x\r\n.\r\nQUIT\r\n"});
  EXPECT_EQ(Codes(out),
            V({"220", "250", "250", "250", "250", "354", "250", "221"}));
  // Greeting, EHLO, the batch MAIL+RCPT+RCPT+DATA, then 250+221.
  EXPECT_EQ(transport_.write_calls, 4);
}

TEST_F(SessionTest, BadSequence) {
  options_.max_errors = 10;
  std::string out =
      Run({"MAIL FROM:<a@b.test>\r\n", "HELO c\r\n",
           "RCPT TO:<u@local.test>\r\n", "DATA\r\n", "MAIL FROM:<a@b.test>\r\n",
           "MAIL FROM:<a@b.test>\r\n", "DATA\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out),
            V({"220", "503", "250", "503", "503", "250", "503", "503", "221"}));
}

TEST_F(SessionTest, UnknownAndUnimplemented) {
  std::string out =
      Run({"HELO c\r\n", "FOO\r\n", "EXPN x\r\n", "VRFY u\r\n", "VRFY\r\n",
           "NOOP\r\n", "HELP\r\n", "RSET x\r\n", "RSET\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "500", "502", "252", "501", "250",
                           "214", "501", "250", "221"}));
}

TEST_F(SessionTest, RelayDeniedFromUntrustedAllowedFromTrusted) {
  auto script = [] {
    return std::vector<std::string>{
        "EHLO c\r\n",
        "MAIL FROM:<a@b.test>\r\n",
        "RCPT TO:<x@elsewhere.test>\r\n",
        "RCPT TO:<u@LOCAL.test>\r\n",
        "RCPT TO:<u@relay.test>\r\n",
        "RCPT TO:<u%elsewhere.test@local.test>\r\n",
        "RCPT TO:<\"u@elsewhere.test\"@local.test>\r\n",
        "RCPT TO:<u@[192.0.2.9]>\r\n",
        "QUIT\r\n"};
  };
  std::string out = Run(script(), "192.0.2.1");
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "554", "250", "250", "554",
                           "554", "554", "221"}));
  EXPECT_NE(out.find("554 5.7.1 <x@elsewhere.test>: Relay access denied"),
            std::string::npos);
  transport_ = MemoryTransport();
  options_.max_errors = 10;
  options_.max_recipients = 10;
  out = Run(script(), "127.0.0.1");
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "250", "250", "250",
                           "250", "250", "221"}));
}

TEST_F(SessionTest, EmptyTrustListIsNotAnOpenRelay) {
  options_.trusted_networks = CidrList();
  std::string out = Run({"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\n",
                         "RCPT TO:<x@elsewhere.test>\r\n", "QUIT\r\n"},
                        "127.0.0.1");
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "554", "221"}));
}

TEST_F(SessionTest, PostmasterWithoutDomainIsAccepted) {
  std::string out = Run({"EHLO c\r\n", "MAIL FROM:<>\r\n",
                         "RCPT TO:<Postmaster>\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "221"}));
}

TEST_F(SessionTest, TooManyRecipients) {
  std::string out = Run(
      {"EHLO c\r\n", "MAIL FROM:<a@b.test>\r\n", "RCPT TO:<a@local.test>\r\n",
       "RCPT TO:<b@local.test>\r\n", "RCPT TO:<c@local.test>\r\n",
       "RCPT TO:<d@local.test>\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out),
            V({"220", "250", "250", "250", "250", "250", "452", "221"}));
  EXPECT_NE(out.find("452 4.5.3"), std::string::npos);
}

TEST_F(SessionTest, SizeAnnouncedAndEnforced) {
  std::string big(1100, 'x');
  std::string body;
  for (int i = 0; i < 12; ++i) body += std::string(98, 'y') + "\r\n";
  std::string out =
      Run({"EHLO c\r\n", "MAIL FROM:<a@b.test> SIZE=2000\r\n",
           "MAIL FROM:<a@b.test> SIZE=500\r\n", "RCPT TO:<u@local.test>\r\n",
           "DATA\r\n", body + ".\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out),
            V({"220", "250", "552", "250", "250", "354", "552", "221"}));
  EXPECT_EQ(sink_.accepted.size(), 0u);
  EXPECT_EQ(sink_.aborted, 1);
}

TEST_F(SessionTest, MailParameters) {
  std::string out =
      Run({"EHLO c\r\n", "MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n",
           "MAIL FROM:<a@b.test> FOO=1\r\n", "MAIL FROM:<a@b.test> SIZE=x\r\n",
           "MAIL FROM:<j\xc3\xb6@b.test>\r\n",
           "MAIL FROM:<j\xc3\xb6@b.test> SMTPUTF8 BODY=8BITMIME\r\n",
           "RCPT TO:<\xc3\xbc@local.test>\r\n", "DATA\r\n", "x\r\n.\r\n",
           "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "501", "555", "501", "553", "250",
                           "250", "354", "250", "221"}));
  ASSERT_EQ(sink_.accepted.size(), 1u);
  EXPECT_TRUE(sink_.accepted[0].envelope.smtputf8);
  EXPECT_TRUE(sink_.accepted[0].envelope.eight_bit);
  EXPECT_EQ(sink_.accepted[0].envelope.client.protocol, "UTF8SMTP");
}

TEST_F(SessionTest, LongCommandLineIsSurvivable) {
  std::string out =
      Run({"EHLO c\r\n", "NOOP " + std::string(600, 'x'), std::string(600, 'y'),
           "\r\n", "NOOP " + std::string(505, 'x') + "\r\n", "NOOP\r\n",
           "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "500", "250", "250", "221"}));
  // Exactly 512 octets with CRLF is allowed.
  transport_ = MemoryTransport();
  out = Run({"NOOP " + std::string(505, 'x') + "\r\n",
             "NOOP " + std::string(506, 'x') + "\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "500", "221"}));
}

TEST_F(SessionTest, NulInCommand) {
  std::string out =
      Run({std::string("NOOP\0x\r\n", 8), "NOOP\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "500", "250", "221"}));
}

TEST_F(SessionTest, TooManyErrorsThen421) {
  std::string out =
      Run({"A\r\n", "B\r\n", "C\r\n", "D\r\n", "E\r\n", "NOOP\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "500", "500", "500", "500", "500", "421"}));
  EXPECT_EQ(session_->end_reason(), "too many errors");
}

TEST_F(SessionTest, CommandTimeout) {
  std::string out = Run({"EHLO c\r\n", MemoryTransport::kTimeout});
  EXPECT_EQ(Codes(out), V({"220", "250", "421"}));
  EXPECT_NE(out.find("421 4.4.2"), std::string::npos);
}

TEST_F(SessionTest, DataTimeoutAbortsTheMessage) {
  std::string out = Run(
      {"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n",
       "partial\r\n", MemoryTransport::kTimeout});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "421"}));
  EXPECT_EQ(sink_.accepted.size(), 0u);
  EXPECT_EQ(sink_.aborted, 1);
}

TEST_F(SessionTest, SmugglingIsRejectedAndNeverExecuted) {
  // A fake end of data ("\n.\n") followed by a smuggled transaction, sent in
  // the same packet; then the real end. The smuggled MAIL/RCPT/DATA must not
  // run.
  std::string out = Run(
      {"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n",
       "Subject: a\r\n\r\nhello\n.\nMAIL FROM:<evil@b.test>\r\nRCPT "
       "TO:<v@local.test>\r\nDATA\r\n"
       "Subject: smuggled\r\n\r\nevil\r\n.\r\n",
       "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "550", "221"}));
  EXPECT_EQ(sink_.accepted.size(), 0u);
}

TEST_F(SessionTest, BareCrAndNulAndLongLineInData) {
  std::string prefix =
      "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n";
  options_.max_message_bytes = 100000;
  std::string out =
      Run({prefix, "a\rb\r\n.\r\n",
           "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n",
           std::string("a\0b\r\n.\r\n", 8),
           "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n",
           std::string(1200, 'z') + "\r\n.\r\n",
           "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n",
           "fine\r\n.\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "550", "250",
                           "250", "354", "550", "250", "250", "354", "500",
                           "250", "250", "354", "250", "221"}));
  EXPECT_EQ(sink_.accepted.size(), 1u);
  EXPECT_EQ(sink_.aborted, 3);
}

TEST_F(SessionTest, QueueUnavailableAndVerdicts) {
  std::string txn =
      "MAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n";
  sink_.fail_begin = true;
  std::string out = Run({"EHLO c\r\n", txn, "QUIT\r\n"});
  // DATA gets 451 without 354; the pipelined... nothing else follows.
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "451", "221"}));

  transport_ = MemoryTransport();
  sink_ = MemorySink();
  sink_.fail_finish = true;
  out = Run({"EHLO c\r\n", txn, "x\r\n.\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "451", "221"}));
  EXPECT_EQ(out.find("queued"), std::string::npos);

  transport_ = MemoryTransport();
  sink_ = MemorySink();
  sink_.verdict = SinkReply::Kind::kTempFail;
  out = Run({"EHLO c\r\n", txn, "x\r\n.\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "451", "221"}));

  transport_ = MemoryTransport();
  sink_ = MemorySink();
  sink_.verdict = SinkReply::Kind::kReject;
  out = Run({"EHLO c\r\n", txn, "x\r\n.\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "354", "554", "221"}));
}

TEST_F(SessionTest, StartTlsResetsStateAndDropsPipelinedPlaintext) {
  transport_.tls_available = true;
  transport_.tls_input = {"MAIL FROM:<a@b.test>\r\n",
                          "EHLO c\r\n",
                          "MAIL FROM:<a@b.test>\r\n",
                          "RCPT TO:<u@local.test>\r\n",
                          "DATA\r\n",
                          "x\r\n.\r\n",
                          "QUIT\r\n"};
  // The plaintext RSET/MAIL pipelined behind STARTTLS must not be executed.
  std::string out =
      Run({"EHLO c\r\n", "STARTTLS\r\nMAIL FROM:<plain@b.test>\r\n",
           "RCPT TO:<p@local.test>\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "220", "503", "250", "250", "250",
                           "354", "250", "221"}));
  EXPECT_NE(out.find("250-STARTTLS"), std::string::npos);
  // The second EHLO (inside TLS) does not offer STARTTLS again.
  size_t second_ehlo = out.find("250-mx.test", out.find("220 2.0.0"));
  EXPECT_EQ(out.find("STARTTLS", second_ehlo), std::string::npos);
  ASSERT_EQ(sink_.accepted.size(), 1u);
  EXPECT_EQ(sink_.accepted[0].envelope.sender, "a@b.test");
  EXPECT_EQ(sink_.accepted[0].envelope.client.protocol, "ESMTPS");
  EXPECT_EQ(sink_.accepted[0].envelope.client.tls,
            "TLSv1.3 TLS_AES_256_GCM_SHA384");
  EXPECT_NE(sink_.accepted[0].data.find(
                "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384"),
            std::string::npos);
}

TEST_F(SessionTest, StartTlsUnavailableOrTwice) {
  std::string out = Run({"EHLO c\r\n", "STARTTLS\r\n", "QUIT\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "502", "221"}));
  transport_ = MemoryTransport();
  transport_.tls_available = true;
  transport_.tls_input = {"EHLO c\r\n", "STARTTLS\r\n", "QUIT\r\n"};
  out = Run({"EHLO c\r\n", "STARTTLS\r\n"});
  EXPECT_EQ(Codes(out), V({"220", "250", "220", "250", "503", "221"}));
}

TEST_F(SessionTest, ProxyHeaderSetsTheClient) {
  options_.proxy_protocol = true;
  options_.proxy_networks = *CidrList::Parse({"10.0.0.0/8"});
  std::string out = Run({"PROXY TCP4 127.0.0.1 10.0.0.2 5555 25\r\nEHLO c\r\n",
                         "MAIL FROM:<a@b.test>\r\n",
                         "RCPT TO:<x@elsewhere.test>\r\n", "QUIT\r\n"},
                        "10.1.1.1");
  // The real client 127.0.0.1 is trusted, so relaying is allowed.
  EXPECT_EQ(Codes(out), V({"220", "250", "250", "250", "221"}));
  EXPECT_EQ(session_->client().address, "127.0.0.1");
  EXPECT_EQ(session_->client().port, 5555);
}

TEST_F(SessionTest, ProxyRefusedFromUnlistedPeerOrMalformed) {
  options_.proxy_protocol = true;
  options_.proxy_networks = *CidrList::Parse({"10.0.0.0/8"});
  std::string out = Run(
      {"PROXY TCP4 127.0.0.1 10.0.0.2 5555 25\r\n", "EHLO c\r\n"}, "192.0.2.7");
  EXPECT_EQ(Codes(out), V({"421"}));
  transport_ = MemoryTransport();
  out = Run({"EHLO c\r\n"}, "10.1.1.1");
  EXPECT_EQ(Codes(out), V({"421"}));
}

TEST_F(SessionTest, EofMidSessionAbortsMessage) {
  Run({"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n",
       "partial\r\n"});
  EXPECT_EQ(sink_.accepted.size(), 0u);
  EXPECT_EQ(sink_.aborted, 1);
}

}  // namespace
}  // namespace smtpd
