// smtp_reply_test.cc: SMTP reply lines, enhanced codes and EHLO keywords.
#include "transport/smtp_reply.h"

#include <gtest/gtest.h>

namespace transport {
namespace {

SmtpReply ParseAll(std::initializer_list<const char*> lines) {
  ReplyParser parser;
  bool done = false;
  for (const char* line : lines) {
    EXPECT_FALSE(done) << "reply ended before " << line;
    EXPECT_TRUE(parser.AddLine(line, &done).ok()) << line;
  }
  EXPECT_TRUE(done);
  return parser.reply();
}

TEST(SmtpReplyTest, SingleLineWithEnhancedCode) {
  SmtpReply r = ParseAll({"550 5.1.1 <x@y>: Recipient address rejected"});
  EXPECT_EQ(r.code, 550);
  EXPECT_EQ(r.Class(), 5);
  EXPECT_EQ(r.enhanced, "5.1.1");
  EXPECT_EQ(r.Dsn(), "5.1.1");
  EXPECT_EQ(r.Text(), "550 5.1.1 <x@y>: Recipient address rejected");
}

TEST(SmtpReplyTest, MultiLineJoinsAndDropsRepeatedCodes) {
  SmtpReply r =
      ParseAll({"451-4.7.1 first", "451-4.7.1 second", "451 4.7.1 third"});
  EXPECT_EQ(r.lines.size(), 3u);
  EXPECT_EQ(r.Text(), "451 4.7.1 first second third");
  EXPECT_EQ(r.Dsn(), "4.7.1");
}

TEST(SmtpReplyTest, NoEnhancedCodeDerivesFromClass) {
  SmtpReply r = ParseAll({"421 closing"});
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.Dsn(), "4.0.0");
  // An enhanced code of the wrong class is text, not a code.
  r = ParseAll({"250 5.1.1 odd"});
  EXPECT_EQ(r.enhanced, "");
  EXPECT_EQ(r.Dsn(), "2.0.0");
}

TEST(SmtpReplyTest, BareCodeLine) {
  SmtpReply r = ParseAll({"354"});
  EXPECT_EQ(r.code, 354);
  EXPECT_EQ(r.Text(), "354 ");
}

TEST(SmtpReplyTest, MalformedLines) {
  ReplyParser parser;
  bool done = false;
  EXPECT_FALSE(parser.AddLine("hello", &done).ok());
  EXPECT_FALSE(parser.AddLine("25", &done).ok());
  EXPECT_FALSE(parser.AddLine("250x", &done).ok());
  EXPECT_FALSE(parser.AddLine("650 bad class", &done).ok());
  EXPECT_TRUE(parser.AddLine("250-a", &done).ok());
  EXPECT_FALSE(done);
  EXPECT_FALSE(parser.AddLine("251 b", &done).ok());
  // After an error the parser starts a new reply.
  EXPECT_TRUE(parser.AddLine("220 ready", &done).ok());
  EXPECT_TRUE(done);
  EXPECT_EQ(parser.reply().code, 220);
}

TEST(SmtpReplyTest, ParserResetsBetweenReplies) {
  ReplyParser parser;
  bool done = false;
  ASSERT_TRUE(parser.AddLine("250 2.1.0 Ok", &done).ok());
  ASSERT_TRUE(done);
  ASSERT_TRUE(parser.AddLine("550 5.1.1 no", &done).ok());
  EXPECT_EQ(parser.reply().code, 550);
  EXPECT_EQ(parser.reply().lines.size(), 1u);
}

TEST(SmtpReplyTest, EhloCapabilities) {
  SmtpReply r = ParseAll({"250-mx.example.org Hello", "250-pipelining",
                          "250-SIZE 10240000", "250-8BITMIME", "250-STARTTLS",
                          "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"});
  EhloCapabilities caps = ParseEhlo(r);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.size_limit, 10240000u);
  EXPECT_TRUE(caps.eightbitmime);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.enhanced_status_codes);
  EXPECT_TRUE(caps.smtputf8);
}

TEST(SmtpReplyTest, EhloGreetingLineIsNotAKeyword) {
  SmtpReply r = ParseAll({"250-PIPELINING", "250 SIZE"});
  EhloCapabilities caps = ParseEhlo(r);
  EXPECT_FALSE(caps.pipelining);  // first line is the server's name
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.size_limit, 0u);
  EXPECT_FALSE(caps.starttls);
}

}  // namespace
}  // namespace transport
