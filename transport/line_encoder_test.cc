// line_encoder_test.cc: dot-stuffing, CRLF and From_ quoting, including input
// split at every possible chunk boundary.
#include "transport/line_encoder.h"

#include <gtest/gtest.h>

namespace transport {
namespace {

using Mode = LineEncoder::Mode;

std::string Encode(Mode mode, std::string_view in) {
  LineEncoder enc(mode);
  std::string out;
  enc.Feed(in, &out);
  enc.Finish(&out);
  return out;
}

// The same input fed one byte at a time, and split at every position.
void ExpectChunkingInvariant(Mode mode, std::string_view in) {
  std::string whole = Encode(mode, in);
  LineEncoder bytewise(mode);
  std::string out;
  for (char c : in) bytewise.Feed(std::string_view(&c, 1), &out);
  bytewise.Finish(&out);
  EXPECT_EQ(out, whole) << "byte-wise feeding of \"" << in << "\"";
  for (size_t split = 0; split <= in.size(); ++split) {
    LineEncoder two(mode);
    std::string o;
    two.Feed(in.substr(0, split), &o);
    two.Feed(in.substr(split), &o);
    two.Finish(&o);
    EXPECT_EQ(o, whole) << "split at " << split;
  }
}

TEST(LineEncoderTest, SmtpDotStuffing) {
  EXPECT_EQ(Encode(Mode::kSmtpData, ".\r\n..x\r\na.b\r\n"),
            "..\r\n...x\r\na.b\r\n.\r\n");
}

TEST(LineEncoderTest, SmtpNoFinalNewline) {
  EXPECT_EQ(Encode(Mode::kSmtpData, "Subject: x\r\n\r\nlast"),
            "Subject: x\r\n\r\nlast\r\n.\r\n");
  EXPECT_EQ(Encode(Mode::kSmtpData, "a\r\n."), "a\r\n..\r\n.\r\n");
}

TEST(LineEncoderTest, SmtpEmptyBody) {
  EXPECT_EQ(Encode(Mode::kSmtpData, ""), ".\r\n");
}

TEST(LineEncoderTest, SmtpBareLfBecomesCrlfBareCrKept) {
  EXPECT_EQ(Encode(Mode::kSmtpData, "a\nb\rc\r\n.d\n"),
            "a\r\nb\rc\r\n..d\r\n.\r\n");
}

TEST(LineEncoderTest, SmtpTrailingCr) {
  EXPECT_EQ(Encode(Mode::kSmtpData, "a\r"), "a\r\n.\r\n");
}

TEST(LineEncoderTest, UnixLineEnds) {
  EXPECT_EQ(Encode(Mode::kUnix, "a\r\n.b\r\nc"), "a\n.b\nc\n");
  EXPECT_EQ(Encode(Mode::kUnix, "From me\r\n"), "From me\n");
}

TEST(LineEncoderTest, MboxFromQuoting) {
  EXPECT_EQ(Encode(Mode::kMbox, "From x\r\nFrom\r\nFro\r\n>From y\r\nFrom "),
            ">From x\nFrom\nFro\n>From y\n>From \n");
  EXPECT_EQ(Encode(Mode::kMbox, "a From b\r\nFromage\r\n"),
            "a From b\nFromage\n");
  EXPECT_EQ(Encode(Mode::kMbox, "Fr\rom\r\n"), "Fr\rom\n");
}

TEST(LineEncoderTest, ChunkingNeverChangesOutput) {
  const char* cases[] = {
      ".\r\n..\r\n.x\r\nend", "From a\r\nFrom b\r\nFro", "\r\n\r\n.\r\n",
      "a\rb\r\r\n.\r.\n",     "Fro\rm \r\nFrom\n From ", "",
  };
  for (Mode mode : {Mode::kSmtpData, Mode::kUnix, Mode::kMbox}) {
    for (const char* c : cases) ExpectChunkingInvariant(mode, c);
  }
}

// Undoes kSmtpData the way a receiving server does (RFC 5321 4.5.2).
std::string Unstuff(std::string_view data) {
  std::string out;
  size_t i = 0;
  while (i < data.size()) {
    size_t eol = data.find("\r\n", i);
    std::string_view line = data.substr(i, eol - i);
    if (line == ".") break;
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    out.append(line);
    out.append("\r\n");
    i = eol + 2;
  }
  return out;
}

TEST(LineEncoderTest, SmtpRoundTrip) {
  std::string body;
  for (int i = 0; i < 200; ++i) {
    body += std::string(i % 7, '.') + "line " + std::to_string(i) + "\r\n";
  }
  EXPECT_EQ(Unstuff(Encode(Mode::kSmtpData, body)), body);
  EXPECT_EQ(Unstuff(Encode(Mode::kSmtpData, body + ".tail")),
            body + ".tail\r\n");
}

}  // namespace
}  // namespace transport
