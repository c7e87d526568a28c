// dsn_test.cc: the DSN is a well-formed RFC 3464 multipart/report.
#include "scheduler/dsn.h"

#include <gtest/gtest.h>

namespace mailfarm::scheduler {
namespace {

TEST(Dsn, Rfc3464Shape) {
  DsnInput in;
  in.reporting_mta = "mx.test";
  in.from = "MAILER-DAEMON@mx.test";
  in.postmaster = "postmaster@mx.test";
  in.qid = "0192a3b4c5d60001";
  in.sender = "alice@example.com";
  in.arrival_unix_ms = 1'700'000'000'000;
  in.now_unix_ms = 1'700'000'100'000;
  in.recipients.push_back({"list@example.org", "bob@example.org", "5.1.1",
                           "550 5.1.1 no\r\nsuch user",
                           "mx.example.org[192.0.2.1]:25"});
  in.original_headers = "Subject: hi\r\nFrom: alice@example.com\r\n";
  std::string m = BuildDsn(in);
  EXPECT_NE(
      m.find("Content-Type: multipart/report; report-type=delivery-status;"),
      std::string::npos);
  EXPECT_NE(m.find("Content-Type: message/delivery-status\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("Reporting-MTA: dns; mx.test\r\n"), std::string::npos);
  EXPECT_NE(m.find("Final-Recipient: rfc822; bob@example.org\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("Original-Recipient: rfc822; list@example.org\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("Action: failed\r\nStatus: 5.1.1\r\n"), std::string::npos);
  EXPECT_NE(m.find("Remote-MTA: dns; mx.example.org\r\n"), std::string::npos);
  EXPECT_NE(m.find("Diagnostic-Code: smtp; 550 5.1.1 no  such user\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\n"),
            std::string::npos);
  EXPECT_NE(m.find("Auto-Submitted: auto-replied\r\n"), std::string::npos);
  // Every line ends in CRLF and the closing boundary is there.
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      ASSERT_TRUE(i > 0 && m[i - 1] == '\r') << "bare LF at " << i;
    }
  }
  std::string boundary = "0192a3b4c5d60001.1700000100000/mx.test";
  EXPECT_NE(m.find("--" + boundary + "--\r\n"), std::string::npos);
}

TEST(Dsn, HeaderBlock) {
  EXPECT_EQ(HeaderBlock("A: 1\r\nB: 2\r\n\r\nbody\r\n"), "A: 1\r\nB: 2\r\n");
  EXPECT_EQ(HeaderBlock("A: 1\r\nB: 2\r\n", 8), "A: 1\r\n");
  EXPECT_EQ(Rfc5322Date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
}

}  // namespace
}  // namespace mailfarm::scheduler
