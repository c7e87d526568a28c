// smtp_command_test.cc: unit tests of the SMTP command and path grammar.
#include "smtpd/smtp_command.h"

#include <gtest/gtest.h>

namespace smtpd {
namespace {

TEST(SmtpCommandTest, Verbs) {
  EXPECT_EQ(ParseCommand("EHLO example.com").verb, Verb::kEhlo);
  EXPECT_EQ(ParseCommand("ehlo example.com").args, "example.com");
  EXPECT_EQ(ParseCommand("MaIl FROM:<a@b>").verb, Verb::kMail);
  EXPECT_EQ(ParseCommand("DATA").verb, Verb::kData);
  EXPECT_EQ(ParseCommand("DATA").args, "");
  EXPECT_EQ(ParseCommand("starttls").verb, Verb::kStartTls);
  EXPECT_EQ(ParseCommand("EXPN list").verb, Verb::kNotImplemented);
  EXPECT_EQ(ParseCommand("BDAT 10 LAST").verb, Verb::kNotImplemented);
  EXPECT_EQ(ParseCommand("FOO").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("DATAX").verb, Verb::kUnknown);
}

PathArgs Ok(std::string_view args, std::string_view kw, bool null_ok,
            bool utf8 = false) {
  PathArgs p;
  EXPECT_EQ(ParsePathArgs(args, kw, null_ok, utf8, &p), PathError::kNone)
      << args;
  return p;
}

PathError Err(std::string_view args, std::string_view kw, bool null_ok,
              bool utf8 = false) {
  PathArgs p;
  return ParsePathArgs(args, kw, null_ok, utf8, &p);
}

TEST(SmtpCommandTest, MailPaths) {
  EXPECT_EQ(Ok("FROM:<a@example.com>", "FROM:", true).mailbox, "a@example.com");
  EXPECT_EQ(Ok("from: <a@example.com>", "FROM:", true).mailbox,
            "a@example.com");
  EXPECT_EQ(Ok("FROM:<>", "FROM:", true).mailbox, "");
  EXPECT_EQ(Ok("FROM:<\"a b@c\"@example.com>", "FROM:", true).mailbox,
            "\"a b@c\"@example.com");
  EXPECT_EQ(Ok("FROM:<@relay.example:a@example.com>", "FROM:", true).mailbox,
            "a@example.com");
  EXPECT_EQ(Ok("FROM:<a@[192.0.2.1]>", "FROM:", true).mailbox, "a@[192.0.2.1]");
  EXPECT_EQ(Ok("FROM:<a@[IPv6:2001:db8::1]>", "FROM:", true).mailbox,
            "a@[IPv6:2001:db8::1]");
  EXPECT_EQ(Ok("FROM:<a@example.com.>", "FROM:", true).mailbox,
            "a@example.com.");
}

TEST(SmtpCommandTest, Params) {
  PathArgs p =
      Ok("FROM:<a@b.c> SIZE=1000 body=8BITMIME SMTPUTF8", "FROM:", true);
  ASSERT_EQ(p.params.size(), 3u);
  EXPECT_EQ(p.params[0].first, "SIZE");
  EXPECT_EQ(p.params[0].second, "1000");
  EXPECT_EQ(p.params[1].first, "BODY");
  EXPECT_EQ(p.params[1].second, "8BITMIME");
  EXPECT_EQ(p.params[2].first, "SMTPUTF8");
  EXPECT_EQ(p.params[2].second, "");
  EXPECT_EQ(Err("FROM:<a@b.c> SIZE=", "FROM:", true), PathError::kBadParam);
  EXPECT_EQ(Err("FROM:<a@b.c>SIZE=1", "FROM:", true), PathError::kBadParam);
  EXPECT_EQ(Err("FROM:<a@b.c> =1", "FROM:", true), PathError::kBadParam);
}

TEST(SmtpCommandTest, BadPaths) {
  EXPECT_EQ(Err("FROM:a@b.c", "FROM:", true), PathError::kSyntax);
  EXPECT_EQ(Err("TO:<a@b.c>", "FROM:", true), PathError::kSyntax);
  EXPECT_EQ(Err("FROM:<a@b.c", "FROM:", true), PathError::kSyntax);
  EXPECT_EQ(Err("", "FROM:", true), PathError::kSyntax);
  EXPECT_EQ(Err("TO:<>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<nobody>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<a@>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<@b.c>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<a b@c.d>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<a@-bad.com>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<a@b..c>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<a@[300.1.1.1]>", "TO:", false), PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<" + std::string(65, 'x') + "@b.c>", "TO:", false),
            PathError::kBadAddress);
  EXPECT_EQ(Err("TO:<a@" + std::string(260, 'x') + ">", "TO:", false),
            PathError::kBadAddress);
}

TEST(SmtpCommandTest, PostmasterWithoutDomain) {
  EXPECT_EQ(Ok("TO:<Postmaster>", "TO:", false).mailbox, "postmaster");
}

TEST(SmtpCommandTest, Utf8Addresses) {
  std::string addr = "TO:<j\xc3\xb6rg@b\xc3\xbc\x63her.example>";
  EXPECT_EQ(Err(addr, "TO:", false, false), PathError::kBadAddress);
  EXPECT_EQ(Ok(addr, "TO:", false, true).mailbox,
            addr.substr(4, addr.size() - 5));
  EXPECT_EQ(Err("TO:<a\xc3@b.c>", "TO:", false, true),
            PathError::kBadAddress);  // truncated
  EXPECT_EQ(Err("TO:<a\xc0\xaf@b.c>", "TO:", false, true),
            PathError::kBadAddress);  // overlong
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));  // surrogate
  EXPECT_TRUE(HasNonAscii("\xc3\xa9"));
  EXPECT_FALSE(HasNonAscii("plain"));
}

TEST(SmtpCommandTest, Helpers) {
  EXPECT_EQ(DomainOf("a@Example.COM."), "example.com");
  EXPECT_EQ(DomainOf("\"x@y\"@z.org"), "z.org");
  EXPECT_EQ(LocalPartOf("\"x@y\"@z.org"), "\"x@y\"");
  EXPECT_EQ(DomainOf("postmaster"), "");
  EXPECT_TRUE(IsValidHeloArgument("mail.example.com"));
  EXPECT_TRUE(IsValidHeloArgument("[192.0.2.1]"));
  EXPECT_FALSE(IsValidHeloArgument(""));
  EXPECT_FALSE(IsValidHeloArgument("two words"));
  EXPECT_FALSE(IsValidHeloArgument("[999.1.1.1]"));
}

}  // namespace
}  // namespace smtpd
