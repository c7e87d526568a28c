// data_reader_test.cc: unit tests of the DATA reader, including the SMTP
// smuggling cases (bare LF / bare CR / fake end-of-data).
#include "smtpd/data_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace smtpd {
namespace {

struct Result {
  std::string body;
  size_t consumed = 0;
  bool done = false;
  uint32_t flags = 0;
};

// Feeds `input` in pieces of `step` bytes (0: all at once).
Result Feed(const std::string& input, size_t step = 0,
            uint64_t max_bytes = 1 << 20) {
  DataReader r(1000, max_bytes);
  Result res;
  size_t pos = 0;
  while (pos < input.size() && !r.done()) {
    size_t n =
        step == 0 ? input.size() - pos : std::min(step, input.size() - pos);
    size_t used = r.Feed(input.data() + pos, n, &res.body);
    pos += used;
    if (used < n) break;
  }
  res.consumed = pos;
  res.done = r.done();
  res.flags = r.flags();
  return res;
}

TEST(DataReaderTest, PlainMessageAndUnstuffing) {
  std::string in = "Subject: x\r\n\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n";
  for (size_t step : {0, 1, 2, 3, 7}) {
    Result r = Feed(in, step);
    EXPECT_TRUE(r.done) << step;
    EXPECT_EQ(r.flags, 0u);
    EXPECT_EQ(r.body, "Subject: x\r\n\r\nhello\r\n.dot\r\n") << step;
    EXPECT_EQ(in.substr(r.consumed), "QUIT\r\n") << step;
  }
}

TEST(DataReaderTest, EmptyMessage) {
  Result r = Feed(".\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.consumed, 3u);
}

TEST(DataReaderTest, NotDoneWithoutTerminator) {
  Result r = Feed("line\r\n.\r");
  EXPECT_FALSE(r.done);
  EXPECT_EQ(r.consumed, 8u);
}

// The smuggling cases: each fake end of data is followed by a smuggled
// transaction, then the real end. The reader must end only at the real one.
TEST(DataReaderTest, FakeEndsOfDataDoNotEndTheMessage) {
  const std::string smuggled =
      "MAIL FROM:<evil@x.org>\r\nRCPT TO:<v@y.org>\r\nDATA\r\nevil\r\n";
  for (const std::string fake : {"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r",
                                 "\r\n.\r", "\r.\r\n", "\n.\r"}) {
    std::string in =
        "Subject: a\r\n\r\nbody" + fake + smuggled + ".\r\nQUIT\r\n";
    Result r = Feed(in);
    EXPECT_TRUE(r.done);
    EXPECT_EQ(in.substr(r.consumed), "QUIT\r\n")
        << "fake end: " << testing::PrintToString(fake);
    EXPECT_NE(r.flags, 0u) << testing::PrintToString(fake);
  }
}

TEST(DataReaderTest, BareLfAndBareCrAreFlagged) {
  EXPECT_EQ(Feed("a\nb\r\n.\r\n").flags, DataReader::kBareLf);
  EXPECT_EQ(Feed("a\rb\r\n.\r\n").flags, DataReader::kBareCr);
  EXPECT_EQ(Feed("a\r\r\n.\r\n").flags, DataReader::kBareCr);
  EXPECT_EQ(Feed(".\rb\r\n.\r\n").flags, DataReader::kBareCr);
  // After a bare LF, ".\r\n" is not <CRLF>.<CRLF>: the message goes on.
  Result r = Feed("a\n.\r\nmore\r\n.\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, std::string("a\n.\r\nmore\r\n.\r\n").size());
}

TEST(DataReaderTest, NulAndLongLines) {
  EXPECT_EQ(Feed(std::string("a\0b\r\n.\r\n", 8)).flags, DataReader::kNul);
  std::string ok_line(998, 'x');
  EXPECT_EQ(Feed(ok_line + "\r\n.\r\n").flags, 0u);
  EXPECT_EQ(Feed(ok_line + "x\r\n.\r\n").flags, DataReader::kLongLine);
  EXPECT_EQ(Feed(ok_line + "x\r\n.\r\n", 100).flags, DataReader::kLongLine);
  // A stuffed dot counts: the line on the wire is 1001 octets.
  EXPECT_EQ(Feed("." + ok_line + "\r\n.\r\n").flags, DataReader::kLongLine);
}

TEST(DataReaderTest, SizeLimit) {
  EXPECT_EQ(Feed("12345678\r\n.\r\n", 0, 10).flags, 0u);
  Result r = Feed("123456789\r\n.\r\n", 0, 10);
  EXPECT_EQ(r.flags, DataReader::kTooBig);
  EXPECT_TRUE(r.done);
}

TEST(DataReaderTest, NothingAppendedAfterAFlag) {
  Result r = Feed("good\r\nbad\nmore text\r\n.\r\n");
  EXPECT_EQ(r.body, "good\r\nbad");
}

}  // namespace
}  // namespace smtpd
