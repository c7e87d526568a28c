// mx_lookup_test.cc: nexthop forms, MX answers parsed from canned DNS
// responses, MX ordering and null MX.
#include "transport/mx_lookup.h"

#include <arpa/nameser.h>
#include <gtest/gtest.h>

#include <map>

namespace transport {
namespace {

// Builds a DNS response for `qname` with the given MX answers, using name
// compression against the question the way real servers do.
class DnsResponse {
 public:
  explicit DnsResponse(const std::string& qname, int qtype = ns_t_mx) {
    Put16(0x1234);  // id
    Put16(0x8180);  // response, RD, RA, NOERROR
    Put16(1);       // QDCOUNT
    Put16(0);       // ANCOUNT, patched
    Put16(0);
    Put16(0);
    PutName(qname);
    Put16(qtype);
    Put16(ns_c_in);
  }
  // host "" is the root (null MX); "@" points at the question name.
  DnsResponse& Mx(uint16_t pref, const std::string& host) {
    PutOwner();
    Put16(ns_t_mx);
    Put16(ns_c_in);
    Put32(300);
    size_t rdlen_at = bytes_.size();
    Put16(0);
    Put16(pref);
    if (host == "@") {
      Put16(0xC00C);
    } else {
      PutName(host);
    }
    Patch16(rdlen_at, bytes_.size() - rdlen_at - 2);
    Count();
    return *this;
  }
  DnsResponse& A(const unsigned char (&addr)[4]) {
    PutOwner();
    Put16(ns_t_a);
    Put16(ns_c_in);
    Put32(300);
    Put16(4);
    bytes_.insert(bytes_.end(), addr, addr + 4);
    Count();
    return *this;
  }
  const std::vector<unsigned char>& bytes() const { return bytes_; }
  std::vector<unsigned char>& mutable_bytes() { return bytes_; }

 private:
  void Put16(unsigned v) {
    bytes_.push_back(static_cast<unsigned char>(v >> 8));
    bytes_.push_back(static_cast<unsigned char>(v));
  }
  void Put32(unsigned v) {
    Put16(v >> 16);
    Put16(v & 0xffff);
  }
  void Patch16(size_t at, size_t v) {
    bytes_[at] = static_cast<unsigned char>(v >> 8);
    bytes_[at + 1] = static_cast<unsigned char>(v);
  }
  void PutName(const std::string& name) {
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      bytes_.push_back(static_cast<unsigned char>(dot - start));
      bytes_.insert(bytes_.end(), name.begin() + start, name.begin() + dot);
      start = dot + 1;
    }
    bytes_.push_back(0);
  }
  void PutOwner() { Put16(0xC00C); }  // pointer to the question name
  void Count() { Patch16(6, ++answers_); }

  std::vector<unsigned char> bytes_;
  unsigned answers_ = 0;
};

TEST(NexthopTest, Forms) {
  auto hop = ParseNexthop("[127.0.0.1]:2525");
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "127.0.0.1");
  EXPECT_EQ(hop->port, 2525);
  EXPECT_TRUE(hop->skip_mx);

  hop = ParseNexthop("[mail.example.org]");
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "mail.example.org");
  EXPECT_EQ(hop->port, 0);
  EXPECT_TRUE(hop->skip_mx);

  hop = ParseNexthop("example.org:587");
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "example.org");
  EXPECT_EQ(hop->port, 587);
  EXPECT_FALSE(hop->skip_mx);

  hop = ParseNexthop("example.org.");
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "example.org");
  EXPECT_FALSE(hop->skip_mx);

  hop = ParseNexthop("[::1]:25");
  ASSERT_TRUE(hop.ok());
  EXPECT_EQ(hop->host, "::1");
  EXPECT_EQ(hop->port, 25);
}

TEST(NexthopTest, Errors) {
  EXPECT_FALSE(ParseNexthop("").ok());
  EXPECT_FALSE(ParseNexthop("[host").ok());
  EXPECT_FALSE(ParseNexthop("[host]x").ok());
  EXPECT_FALSE(ParseNexthop("[host]:0").ok());
  EXPECT_FALSE(ParseNexthop("[host]:70000").ok());
  EXPECT_FALSE(ParseNexthop("host:2x").ok());
  EXPECT_FALSE(ParseNexthop("[]:25").ok());
}

TEST(MxAnswerTest, ParsesCompressedAnswers) {
  DnsResponse r("example.org");
  r.Mx(20, "mx2.example.org").Mx(10, "mx1.example.net").Mx(30, "@");
  auto mx = ParseMxAnswer(r.bytes().data(), static_cast<int>(r.bytes().size()));
  ASSERT_TRUE(mx.ok()) << mx.status().message();
  ASSERT_EQ(mx->size(), 3u);
  EXPECT_EQ((*mx)[0].preference, 20);
  EXPECT_EQ((*mx)[0].host, "mx2.example.org");
  EXPECT_EQ((*mx)[1].host, "mx1.example.net");
  EXPECT_EQ((*mx)[2].host, "example.org");
  EXPECT_FALSE(IsNullMx(*mx));
}

TEST(MxAnswerTest, SkipsOtherRecordTypes) {
  const unsigned char addr[4] = {192, 0, 2, 1};
  DnsResponse r("example.org");
  r.A(addr).Mx(5, "mx.example.org");
  auto mx = ParseMxAnswer(r.bytes().data(), static_cast<int>(r.bytes().size()));
  ASSERT_TRUE(mx.ok());
  ASSERT_EQ(mx->size(), 1u);
  EXPECT_EQ((*mx)[0].host, "mx.example.org");
}

TEST(MxAnswerTest, NullMx) {
  DnsResponse r("nomail.example");
  r.Mx(0, "");
  auto mx = ParseMxAnswer(r.bytes().data(), static_cast<int>(r.bytes().size()));
  ASSERT_TRUE(mx.ok());
  ASSERT_EQ(mx->size(), 1u);
  EXPECT_EQ((*mx)[0].host, "");
  EXPECT_TRUE(IsNullMx(*mx));
  // A root target beside real records is not a null MX.
  DnsResponse r2("x.example");
  r2.Mx(0, "").Mx(10, "mx.x.example");
  mx = ParseMxAnswer(r2.bytes().data(), static_cast<int>(r2.bytes().size()));
  ASSERT_TRUE(mx.ok());
  EXPECT_FALSE(IsNullMx(*mx));
}

// Found by fuzz_mx_answer: octets a host name cannot hold came back as
// dn_expand's "\\DDD" escapes, a "host" of backslashes and digits.
TEST(MxAnswerTest, MalformedHostNamesAreSkipped) {
  DnsResponse r("example.org");
  r.Mx(10, std::string("mx") + '\x06' + '\x00' + "x.example.org")
      .Mx(20, "under score_and space.example.org")
      .Mx(30, "mx2.example.org");
  auto mx = ParseMxAnswer(r.bytes().data(), static_cast<int>(r.bytes().size()));
  ASSERT_TRUE(mx.ok()) << mx.status().message();
  ASSERT_EQ(mx->size(), 1u);
  EXPECT_EQ((*mx)[0].host, "mx2.example.org");
}

TEST(MxAnswerTest, TruncatedResponseIsInvalid) {
  DnsResponse r("example.org");
  r.Mx(10, "mx.example.org");
  std::vector<unsigned char> bytes = r.bytes();
  bytes.resize(bytes.size() - 5);
  auto mx = ParseMxAnswer(bytes.data(), static_cast<int>(bytes.size()));
  EXPECT_FALSE(mx.ok());
  std::vector<unsigned char> tiny = {0, 1, 2};
  EXPECT_FALSE(ParseMxAnswer(tiny.data(), 3).ok());
}

TEST(MxOrderTest, PreferenceOrderRandomAmongEquals) {
  std::vector<MxRecord> base = {
      {30, "c"}, {10, "a1"}, {20, "b"}, {10, "a2"}, {10, "a3"}};
  std::map<std::string, int> first_count;
  for (unsigned seed = 0; seed < 300; ++seed) {
    std::mt19937 rng(seed);
    std::vector<MxRecord> records = base;
    OrderMx(&records, &rng);
    ASSERT_EQ(records.size(), 5u);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(records[i].preference, 10);
    EXPECT_EQ(records[3].host, "b");
    EXPECT_EQ(records[4].host, "c");
    first_count[records[0].host]++;
  }
  // Each of the three equal-preference hosts comes first sometimes.
  EXPECT_EQ(first_count.size(), 3u);
  for (const auto& [host, n] : first_count) EXPECT_GT(n, 30) << host;
}

TEST(ResolveTest, LiteralNexthopNeedsNoDns) {
  std::mt19937 rng(1);
  auto hop = ParseNexthop("[127.0.0.1]:2526");
  ASSERT_TRUE(hop.ok());
  Resolution r = Resolve(*hop, ResolverOptions{}, &rng);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  ASSERT_EQ(r.endpoints.size(), 1u);
  EXPECT_EQ(r.endpoints[0].Describe(), "127.0.0.1[127.0.0.1]:2526");
}

}  // namespace
}  // namespace transport
