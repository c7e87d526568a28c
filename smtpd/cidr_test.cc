// cidr_test.cc: unit tests of smtpd's CIDR parsing and matching.
#include "smtpd/cidr.h"

#include <gtest/gtest.h>

namespace smtpd {
namespace {

bool In(const std::vector<std::string>& nets, const std::string& addr) {
  auto list = CidrList::Parse(nets);
  EXPECT_TRUE(list.ok()) << list.status().message();
  return list->Contains(addr);
}

TEST(CidrTest, V4HostAndNetworks) {
  EXPECT_TRUE(In({"127.0.0.1/32"}, "127.0.0.1"));
  EXPECT_FALSE(In({"127.0.0.1/32"}, "127.0.0.2"));
  EXPECT_TRUE(In({"127.0.0.1"}, "127.0.0.1"));
  EXPECT_TRUE(In({"10.0.0.0/8"}, "10.255.1.2"));
  EXPECT_FALSE(In({"10.0.0.0/8"}, "11.0.0.1"));
  EXPECT_TRUE(In({"192.168.1.0/23"}, "192.168.0.77"));
  EXPECT_FALSE(In({"192.168.1.0/23"}, "192.168.2.1"));
  EXPECT_TRUE(In({"10.0.0.7/8"}, "10.1.2.3"));  // host bits are masked
}

TEST(CidrTest, V6AndMapped) {
  EXPECT_TRUE(In({"::1/128"}, "::1"));
  EXPECT_FALSE(In({"::1/128"}, "::2"));
  EXPECT_TRUE(In({"2001:db8::/32"}, "2001:db8:ffff::1"));
  EXPECT_FALSE(In({"2001:db8::/32"}, "2001:db9::1"));
  // A v4 network matches a v4 client seen on a v6 socket, and vice versa.
  EXPECT_TRUE(In({"127.0.0.0/8"}, "::ffff:127.0.0.5"));
  EXPECT_TRUE(In({"::ffff:10.0.0.0/104"}, "10.9.9.9"));
  EXPECT_FALSE(In({"::1/128"}, "127.0.0.1"));
  EXPECT_FALSE(In({"2001:db8::/32"}, "32.1.13.184"));
}

TEST(CidrTest, EmptyListMatchesNothing) {
  EXPECT_FALSE(In({}, "127.0.0.1"));
  EXPECT_FALSE(In({"127.0.0.1/32"}, "not-an-ip"));
}

TEST(CidrTest, BadEntriesAreErrors) {
  for (const char* bad :
       {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "300.1.1.1",
        "example.com", "10.0.0.0/-1", "10.0.0.0/8/8"}) {
    auto c = Cidr::Parse(bad);
    EXPECT_FALSE(c.ok()) << bad;
  }
  auto list = CidrList::Parse({"127.0.0.1/32", "bogus"});
  ASSERT_FALSE(list.ok());
  EXPECT_NE(list.status().message().find("bogus"), std::string::npos);
}

TEST(CidrTest, WrittenPrefix) {
  EXPECT_EQ(Cidr::Parse("0.0.0.0/0")->WrittenPrefix(), 0);
  EXPECT_EQ(Cidr::Parse("10.0.0.0/8")->WrittenPrefix(), 8);
  EXPECT_EQ(Cidr::Parse("::/0")->WrittenPrefix(), 0);
  EXPECT_EQ(Cidr::Parse("::1")->WrittenPrefix(), 128);
}

TEST(CidrTest, AddressToString) {
  EXPECT_EQ(IpAddress::Parse("::ffff:1.2.3.4")->ToString(), "1.2.3.4");
  EXPECT_EQ(IpAddress::Parse("2001:db8::1")->ToString(), "2001:db8::1");
}

}  // namespace
}  // namespace smtpd
