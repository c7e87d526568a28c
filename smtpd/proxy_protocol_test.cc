// proxy_protocol_test.cc: unit tests of the PROXY v1/v2 header parser.
#include "smtpd/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace smtpd {
namespace {

farm::Status Parse(const std::string& s, ProxyHeader* h, size_t* used) {
  return ParseProxyHeader(s.data(), s.size(), h, used);
}

TEST(ProxyProtocolTest, V1Tcp4) {
  std::string s = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n";
  ProxyHeader h;
  size_t used = 0;
  ASSERT_TRUE(Parse(s, &h, &used).ok());
  EXPECT_EQ(used, s.find("EHLO"));
  EXPECT_EQ(h.version, 1);
  EXPECT_TRUE(h.has_address);
  EXPECT_EQ(h.source_address, "192.0.2.1");
  EXPECT_EQ(h.source_port, 56324);
  EXPECT_EQ(h.dest_address, "198.51.100.2");
  EXPECT_EQ(h.dest_port, 25);
}

TEST(ProxyProtocolTest, V1Tcp6AndUnknown) {
  ProxyHeader h;
  size_t used = 0;
  ASSERT_TRUE(
      Parse("PROXY TCP6 2001:db8::1 2001:db8::2 1000 25\r\n", &h, &used).ok());
  EXPECT_EQ(h.source_address, "2001:db8::1");
  ASSERT_TRUE(Parse("PROXY UNKNOWN\r\n", &h, &used).ok());
  EXPECT_FALSE(h.has_address);
  ASSERT_TRUE(Parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &h, &used).ok());
  EXPECT_FALSE(h.has_address);
}

TEST(ProxyProtocolTest, V1NeedsMoreThenComplete) {
  std::string s = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n";
  ProxyHeader h;
  size_t used = 0;
  for (size_t n = 0; n < s.size(); ++n) {
    EXPECT_EQ(ParseProxyHeader(s.data(), n, &h, &used).code(),
              farm::Status::Code::kTempFail)
        << n;
  }
  EXPECT_TRUE(ParseProxyHeader(s.data(), s.size(), &h, &used).ok());
}

TEST(ProxyProtocolTest, V1Malformed) {
  ProxyHeader h;
  size_t used = 0;
  for (const char* bad : {
           "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",     // missing port
           "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",     // v6 in TCP4
           "PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",        // v4 in TCP6
           "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n",  // port range
           "PROXY TCP4 192.0.2.1 198.51.100.2 0025 25\r\n",   // leading zero
           "PROXY TCP4  192.0.2.1 198.51.100.2 1 25\r\n",     // double space
           "PROXY TCP4 192.0.2.1 198.51.100.2 1 25\n",        // bare LF
           "PROXY UDP4 192.0.2.1 198.51.100.2 1 25\r\n",      // protocol
           "EHLO example.com\r\n",  // no header at all
       }) {
    farm::Status s = Parse(bad, &h, &used);
    EXPECT_EQ(s.code(), farm::Status::Code::kInvalid) << bad;
  }
  std::string too_long = "PROXY TCP4 " + std::string(200, '1');
  EXPECT_EQ(Parse(too_long, &h, &used).code(), farm::Status::Code::kInvalid);
}

std::string V2(uint8_t ver_cmd, uint8_t fam, const std::string& body) {
  std::string s("\r\n\r\n\0\r\nQUIT\n", 12);
  s.push_back(static_cast<char>(ver_cmd));
  s.push_back(static_cast<char>(fam));
  s.push_back(static_cast<char>(body.size() >> 8));
  s.push_back(static_cast<char>(body.size() & 0xff));
  return s + body;
}

TEST(ProxyProtocolTest, V2Tcp4WithTlv) {
  std::string body = {'\xc0', '\x00', '\x02', '\x09', '\x0a', '\x00',
                      '\x00', '\x01', '\x30', '\x39', '\x00', '\x19'};
  body += std::string("\x04\x00\x02hi", 5);  // a TLV, ignored
  std::string s = V2(0x21, 0x11, body) + "EHLO";
  ProxyHeader h;
  size_t used = 0;
  ASSERT_TRUE(Parse(s, &h, &used).ok());
  EXPECT_EQ(used, s.size() - 4);
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.source_address, "192.0.2.9");
  EXPECT_EQ(h.source_port, 12345);
  EXPECT_EQ(h.dest_address, "10.0.0.1");
  EXPECT_EQ(h.dest_port, 25);
}

TEST(ProxyProtocolTest, V2Tcp6AndLocal) {
  std::string body(36, '\0');
  body[0] = '\x20';
  body[1] = '\x01';
  body[2] = '\x0d';
  body[3] = '\xb8';
  body[15] = '\x07';
  body[33] = '\x50';
  ProxyHeader h;
  size_t used = 0;
  ASSERT_TRUE(Parse(V2(0x21, 0x21, body), &h, &used).ok());
  EXPECT_EQ(h.source_address, "2001:db8::7");
  EXPECT_EQ(h.source_port, 0x50);
  ASSERT_TRUE(Parse(V2(0x20, 0x00, ""), &h, &used).ok());
  EXPECT_FALSE(h.has_address);
  EXPECT_EQ(used, 16u);
}

TEST(ProxyProtocolTest, V2Malformed) {
  ProxyHeader h;
  size_t used = 0;
  EXPECT_EQ(Parse(V2(0x11, 0x11, std::string(12, '\0')), &h, &used).code(),
            farm::Status::Code::kInvalid);  // version 1 in a v2 header
  EXPECT_EQ(Parse(V2(0x22, 0x11, std::string(12, '\0')), &h, &used).code(),
            farm::Status::Code::kInvalid);  // command 2
  EXPECT_EQ(Parse(V2(0x21, 0x11, std::string(4, '\0')), &h, &used).code(),
            farm::Status::Code::kInvalid);  // short address block
  EXPECT_EQ(Parse(V2(0x21, 0x31, ""), &h, &used).code(),
            farm::Status::Code::kInvalid);  // AF_UNIX not supported
  EXPECT_EQ(Parse(V2(0x21, 0x11, std::string(5000, '\0')), &h, &used).code(),
            farm::Status::Code::kInvalid);  // too long
  std::string partial = V2(0x21, 0x11, std::string(12, '\0'));
  partial.resize(20);
  EXPECT_EQ(Parse(partial, &h, &used).code(), farm::Status::Code::kTempFail);
}

}  // namespace
}  // namespace smtpd
