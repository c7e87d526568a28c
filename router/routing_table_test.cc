// routing_table_test.cc: the routing-table matrix (exact, ".parent", "*", case,
// trailing dot) and the table's refusal of bad routes.
#include "router/routing_table.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace router {
namespace {

mailfarm::config::RoutingConfig Config(const std::string& text) {
  mailfarm::config::RoutingConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

constexpr char kTable[] = R"(
  route { domain: "example.com" channel: "smtp" nexthop: "[mx.example.com]:2525" }
  route { domain: ".example.com" channel: "smtp" nexthop: "relay.example.com" }
  route { domain: ".deep.example.com" channel: "deep" }
  route { domain: "exact.only.org" channel: "discard" }
  route { domain: "*" channel: "smtp" }
)";

struct Case {
  const char* domain;
  const char* channel;  // nullptr: no route
  const char* nexthop;
  const char* matched;
};

TEST(RoutingTableTest, Matrix) {
  auto table = RoutingTable::Build(Config(kTable));
  ASSERT_TRUE(table.ok()) << table.status().message();
  const Case cases[] = {
      {"example.com", "smtp", "[mx.example.com]:2525", "example.com"},
      {"EXAMPLE.Com", "smtp", "[mx.example.com]:2525", "example.com"},
      {"example.com.", "smtp", "[mx.example.com]:2525", "example.com"},
      {"a.example.com", "smtp", "relay.example.com", ".example.com"},
      {"a.b.example.com", "smtp", "relay.example.com", ".example.com"},
      {"deep.example.com", "smtp", "relay.example.com", ".example.com"},
      {"x.deep.example.com", "deep", "", ".deep.example.com"},
      {"y.x.deep.example.com", "deep", "", ".deep.example.com"},
      {"notexample.com", "smtp", "", "*"},
      {"exact.only.org", "discard", "", "exact.only.org"},
      {"sub.exact.only.org", "smtp", "", "*"},
      {"com", "smtp", "", "*"},
  };
  for (const Case& c : cases) {
    const RouteTarget* t = table->Lookup(c.domain);
    ASSERT_NE(t, nullptr) << c.domain;
    EXPECT_EQ(t->channel, c.channel) << c.domain;
    EXPECT_EQ(t->nexthop, c.nexthop) << c.domain;
    EXPECT_EQ(t->matched, c.matched) << c.domain;
  }
}

TEST(RoutingTableTest, NoDefaultMeansNoRoute) {
  auto table = RoutingTable::Build(
      Config(R"(route { domain: ".example.com" channel: "smtp" })"));
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->Lookup("example.com"),
            nullptr);  // ".x" matches subdomains only
  EXPECT_EQ(table->Lookup("other.org"), nullptr);
  EXPECT_NE(table->Lookup("a.example.com"), nullptr);
}

TEST(RoutingTableTest, EmptyTable) {
  auto table = RoutingTable::Build(Config(""));
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->Lookup("example.com"), nullptr);
}

TEST(RoutingTableTest, RejectsBadRoutes) {
  const char* bad[] = {
      R"(route { domain: "" channel: "smtp" })",
      R"(route { domain: "a.com" })",
      R"(route { domain: "a.com" channel: "smtp" } route { domain: "A.com" channel: "x" })",
      R"(route { domain: "*" channel: "smtp" } route { domain: "*" channel: "x" })",
      R"(route { domain: "a.com" channel: "smtp" nexthop: "[host" })",
      R"(route { domain: "a.com" channel: "smtp" nexthop: "[host]:0" })",
      R"(route { domain: "a.com" channel: "smtp" nexthop: "[host]:99999" })",
      R"(route { domain: "a.com" channel: "smtp" nexthop: "[host]x" })",
      R"(route { domain: "a.com" channel: "smtp" nexthop: "host name" })",
      R"(route { domain: "a.com" channel: "smtp" nexthop: "host:port" })",
  };
  for (const char* text : bad) {
    auto table = RoutingTable::Build(Config(text));
    EXPECT_FALSE(table.ok()) << text;
    if (!table.ok()) {
      EXPECT_NE(table.status().message().find("routing.route["),
                std::string::npos);
    }
  }
}

TEST(RoutingTableTest, NexthopSyntax) {
  for (const char* ok : {"", "mx.example.com", "example.com:25", "[10.0.0.1]",
                         "[::1]:2525", "[relay.example.com]:587"}) {
    EXPECT_TRUE(ValidateNexthop(ok).ok()) << ok;
  }
  for (const char* bad : {"[]", "[a b]", ":25", "host:", "[h]:", "a/b"}) {
    EXPECT_FALSE(ValidateNexthop(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace router
