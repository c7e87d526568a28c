// message_test.cc: splitting stored messages into header fields and body, and
// reading the Job's byte range of a queue file.
#include "filter/message.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace filter {
namespace {

TEST(MessageTest, SplitsHeadersAndBody) {
  Message m = ParseMessage(
      "From: Alice <alice@example.com>\r\n"
      "Subject: hello\r\n"
      "\tworld\r\n"
      "X-Empty:\r\n"
      "Obs-Form : yes\r\n"
      "\r\n"
      "Body line\r\n");
  ASSERT_EQ(m.headers.size(), 4u);
  EXPECT_EQ(m.headers[1].name, "Subject");
  EXPECT_EQ(m.headers[1].raw_value, " hello\r\n\tworld");
  EXPECT_EQ(m.headers[1].value, "hello\tworld");
  EXPECT_EQ(m.headers[2].value, "");
  EXPECT_EQ(m.headers[3].name, "Obs-Form");
  EXPECT_EQ(m.body(), "Body line\r\n");
  EXPECT_EQ(m.FirstValue("SUBJECT"), "hello\tworld");
  EXPECT_EQ(m.FirstValue("missing"), "");
}

TEST(MessageTest, BodyStartsAtFirstNonHeaderLine) {
  Message m = ParseMessage("Subject: x\r\nthis is not a header\r\nmore\r\n");
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.body(), "this is not a header\r\nmore\r\n");
}

TEST(MessageTest, HeadersOnlyAndBareLf) {
  Message m = ParseMessage("Subject: x\nTo: y\n");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.body(), "");
  Message empty = ParseMessage("");
  EXPECT_TRUE(empty.headers.empty());
  EXPECT_EQ(empty.body(), "");
}

TEST(MessageTest, Addresses) {
  EXPECT_EQ(ExtractAddress("Alice <alice@Example.COM>"), "alice@Example.COM");
  EXPECT_EQ(ExtractAddress("bob@example.org (Bob)"), "bob@example.org");
  EXPECT_EQ(ExtractAddress("\"x, y\" <c@d.e>"), "c@d.e");
  EXPECT_EQ(ExtractAddress("undisclosed"), "");
  EXPECT_EQ(AddressDomain("a@Example.COM"), "example.com");
  EXPECT_EQ(AddressDomain("nobody"), "");
  EXPECT_EQ(AddressDomain(""), "");
}

TEST(MessageTest, ReadsTheJobRange) {
  char path[] = "/tmp/message_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path, std::ios::binary);
    out << "ENVELOPE"
        << "Subject: s\r\n\r\nbody\r\n"
        << "TRAILER";
  }
  auto data = ReadMessageRange(path, 8, 20);
  ASSERT_TRUE(data.ok()) << data.status().message();
  EXPECT_EQ(data.value(), "Subject: s\r\n\r\nbody\r\n");
  auto past_end = ReadMessageRange(path, 8, 1000);
  ASSERT_FALSE(past_end.ok());
  EXPECT_NE(past_end.status().message().find("file ends at"),
            std::string::npos);
  std::remove(path);
  auto missing = ReadMessageRange(path, 0, 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

}  // namespace
}  // namespace filter
