// recipient_resolver_test.cc: local expansion (aliases, loops, includes, pipes,
// files, unknown users, plus-addressing, case, depth) and remote routing.
#include "router/recipient_resolver.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <map>

namespace router {
namespace {

constexpr char kRouting[] = R"(
  local_domains: "example.com"
  local_domains: "Local.Test"
  local_users: "alice"
  local_users: "Bob"
  local_users: "carol"
  local_users: "root"
  route { domain: "remote.org" channel: "smtp" nexthop: "[mx.remote.org]:2525" }
  route { domain: ".remote.org" channel: "smtp" }
  route { domain: "*" channel: "smtp-out" }
)";

constexpr char kAliases[] = R"(# test aliases
postmaster: root
staff: alice, bob, carol@local.test
Team: staff, dave@remote.org, alice
loop1: loop2
loop2: loop3
loop3: loop1
halfloop: alice, halfloop2
halfloop2: halfloop
selfref: selfref, alice
root: root, \carol
pipe: "|/usr/bin/procmail -d x"
file: /var/mail/archive
list: :include:/lists/list
nested: :include:/lists/nested
broken: :include:/lists/missing
mixed: alice, nosuchuser
ghost: nosuchuser
list-owner: alice
deep1: deep2
deep2: deep3
deep3: deep4
deep4: alice
owner+special: carol
)";

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(kRouting, kAliases); }

  void Build(const std::string& routing_text, const std::string& aliases_text) {
    mailfarm::config::RoutingConfig config;
    ASSERT_TRUE(
        google::protobuf::TextFormat::ParseFromString(routing_text, &config));
    auto routes = RoutingTable::Build(config);
    ASSERT_TRUE(routes.ok());
    auto aliases = AliasTable::Parse(aliases_text, "aliases",
                                     config.case_sensitive_local_parts());
    ASSERT_TRUE(aliases.ok()) << aliases.status().message();
    tables_ = std::make_unique<RouterTables>(
        RouterTables{config, std::move(routes.value()),
                     std::move(aliases.value()), farm::Status::Ok()});
    resolver_ = std::make_unique<RecipientResolver>(
        *tables_,
        [this](const std::string& path)
            -> farm::StatusOr<std::vector<AliasTarget>> {
          ++include_reads_[path];
          auto it = includes_.find(path);
          if (it == includes_.end())
            return farm::Status::TempFail("open " + path + ": missing");
          return ParseTargetList(it->second, path);
        });
  }

  // "address channel nexthop" per route, in order.
  std::vector<std::string> Routes(const mailfarm::RecipientResult& r) {
    std::vector<std::string> out;
    for (const auto& route : r.routes()) {
      out.push_back(route.address() + " " + route.channel() + " " +
                    route.nexthop());
    }
    return out;
  }

  mailfarm::RecipientResult Ok(const std::string& address) {
    auto r = resolver_->Resolve(address);
    EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_OK) << address << ": " << r.text();
    return r;
  }

  std::unique_ptr<RouterTables> tables_;
  std::unique_ptr<RecipientResolver> resolver_;
  std::map<std::string, std::string> includes_ = {
      {"/lists/list", "alice, bob@remote.org, \"|/bin/cat\""},
      {"/lists/nested", ":include:/lists/list, carol, :include:/lists/nested"},
  };
  std::map<std::string, int> include_reads_;
};

using V = std::vector<std::string>;

TEST_F(ResolverTest, LocalUser) {
  EXPECT_EQ(Routes(Ok("alice@example.com")), V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("bob@EXAMPLE.COM")), V{"bob@example.com local "});
  EXPECT_EQ(Routes(Ok("carol@local.test.")), V{"carol@local.test local "});
}

TEST_F(ResolverTest, CaseInsensitiveLocalParts) {
  EXPECT_EQ(Routes(Ok("ALICE@example.com")), V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("Staff@example.com")).size(), 3u);
}

TEST_F(ResolverTest, CaseSensitiveWhenConfigured) {
  Build(std::string(kRouting) + "case_sensitive_local_parts: true\n",
        "Staff: alice\n");
  EXPECT_EQ(Routes(Ok("Staff@example.com")), V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("Bob@example.com")), V{"Bob@example.com local "});
  auto r = resolver_->Resolve("staff@example.com");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(r.dsn(), "5.1.1");
  EXPECT_EQ(resolver_->Resolve("bob@example.com").dsn(), "5.1.1");
}

TEST_F(ResolverTest, UnknownLocalUser) {
  auto r = resolver_->Resolve("nobody@example.com");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(r.dsn(), "5.1.1");
  EXPECT_NE(r.text().find("nobody@example.com"), std::string::npos);
  EXPECT_TRUE(r.routes().empty());
  // An alias whose only member is unknown is unknown too.
  EXPECT_EQ(resolver_->Resolve("ghost@example.com").dsn(), "5.1.1");
}

TEST_F(ResolverTest, LocalUsersAny) {
  Build(std::string(kRouting) + "local_users_any: true\n", kAliases);
  EXPECT_EQ(Routes(Ok("Whoever@example.com")), V{"whoever@example.com local "});
}

TEST_F(ResolverTest, LocalUsersFromPasswd) {
  // "daemon" is in every Debian passwd file; it is not in kRouting's list.
  Build(std::string(kRouting) + "local_users_from_passwd: true\n", kAliases);
  EXPECT_EQ(Routes(Ok("daemon@example.com")), V{"daemon@example.com local "});
  EXPECT_EQ(resolver_->Resolve("no-such-account-x@example.com").dsn(), "5.1.1");
  Build(kRouting, kAliases);
  EXPECT_EQ(resolver_->Resolve("daemon@example.com").dsn(), "5.1.1");
}

TEST_F(ResolverTest, PlusAddressing) {
  EXPECT_EQ(Routes(Ok("alice+news@example.com")),
            V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("staff+x@example.com")).size(), 3u);
  // The full name is looked up first.
  EXPECT_EQ(Routes(Ok("owner+special@example.com")),
            V{"carol@example.com local "});
  EXPECT_EQ(resolver_->Resolve("nobody+x@example.com").dsn(), "5.1.1");
  // A leading delimiter is not an extension.
  EXPECT_EQ(resolver_->Resolve("+alice@example.com").dsn(), "5.1.1");
}

TEST_F(ResolverTest, ConfiguredDelimiters) {
  Build(std::string(kRouting) + "recipient_delimiter: \"-+\"\n", kAliases);
  EXPECT_EQ(Routes(Ok("alice-news@example.com")),
            V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("alice+news@example.com")),
            V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("list-owner@example.com")),
            V{"alice@example.com local "});
  Build(std::string(kRouting) + "recipient_delimiter: \"\"\n", kAliases);
  EXPECT_EQ(resolver_->Resolve("alice+news@example.com").dsn(), "5.1.1");
}

TEST_F(ResolverTest, AliasFanOutAndDuplicates) {
  // team: staff (alice, bob, carol@local.test), dave@remote.org, alice (dup).
  EXPECT_EQ(Routes(Ok("team@example.com")),
            (V{"alice@example.com local ", "bob@example.com local ",
               "carol@local.test local ",
               "dave@remote.org smtp [mx.remote.org]:2525"}));
  EXPECT_EQ(Routes(Ok("postmaster@local.test")),
            (V{"root@local.test local ", "carol@local.test local "}));
}

TEST_F(ResolverTest, Loops) {
  auto r = resolver_->Resolve("loop1@example.com");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(r.dsn(), "5.4.6");
  EXPECT_NE(r.text().find("loop1 -> loop2 -> loop3 -> loop1"),
            std::string::npos)
      << r.text();
  // A loop beside a real member: the member gets it, the loop is noted.
  auto half = Ok("halfloop@example.com");
  EXPECT_EQ(Routes(half), V{"alice@example.com local "});
  EXPECT_NE(half.text().find("alias loop ignored"), std::string::npos);
}

TEST_F(ResolverTest, SelfReferenceIsTheMailbox) {
  EXPECT_EQ(resolver_->Resolve("selfref@example.com").outcome(),
            mailfarm::OUTCOME_OK);
  // selfref is no local user: its mailbox member fails, alice still gets it.
  EXPECT_EQ(Routes(Ok("selfref@example.com")), V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("root@example.com")),
            (V{"root@example.com local ", "carol@example.com local "}));
}

TEST_F(ResolverTest, PipesAndFiles) {
  EXPECT_EQ(Routes(Ok("pipe@example.com")),
            V{"pipe@example.com pipe /usr/bin/procmail -d x"});
  EXPECT_EQ(Routes(Ok("FILE@example.com")),
            V{"file@example.com local /var/mail/archive"});
  Build(std::string(kRouting) +
            "pipe_channel: \"prog\" file_channel: \"files\"\n",
        kAliases);
  EXPECT_EQ(Routes(Ok("pipe@example.com")),
            V{"pipe@example.com prog /usr/bin/procmail -d x"});
  EXPECT_EQ(Routes(Ok("file@example.com")),
            V{"file@example.com files /var/mail/archive"});
}

TEST_F(ResolverTest, Includes) {
  Build(std::string(kRouting) + "include_allows_pipes_and_files: true\n",
        kAliases);
  EXPECT_EQ(
      Routes(Ok("list@example.com")),
      (V{"alice@example.com local ", "bob@remote.org smtp [mx.remote.org]:2525",
         "list@example.com pipe /bin/cat"}));
  // nested includes list twice and itself once: read once each, no duplicates.
  include_reads_.clear();
  EXPECT_EQ(
      Routes(Ok("nested@example.com")),
      (V{"alice@example.com local ", "bob@remote.org smtp [mx.remote.org]:2525",
         "nested@example.com pipe /bin/cat", "carol@example.com local "}));
  EXPECT_EQ(include_reads_["/lists/nested"], 1);
  EXPECT_EQ(include_reads_["/lists/list"], 1);
  auto r = resolver_->Resolve("broken@example.com");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_EQ(r.dsn(), "4.3.0");
  EXPECT_NE(r.text().find("/lists/missing"), std::string::npos);
}

TEST_F(ResolverTest, PipesFromIncludesRefusedByDefault) {
  auto r = Ok("list@example.com");
  EXPECT_EQ(Routes(r), (V{"alice@example.com local ",
                          "bob@remote.org smtp [mx.remote.org]:2525"}));
  EXPECT_NE(r.text().find("|/bin/cat from an :include: file is not allowed"),
            std::string::npos)
      << r.text();
  // The aliases file itself may name pipes and files.
  EXPECT_EQ(Routes(Ok("pipe@example.com")).size(), 1u);
  includes_["/lists/only-pipe"] = "\"|/bin/sh -c evil\", /etc/passwd";
  Build(kRouting, "onlypipe: :include:/lists/only-pipe\n");
  auto refused = resolver_->Resolve("onlypipe@example.com");
  EXPECT_EQ(refused.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(refused.dsn(), "5.7.1");
}

TEST_F(ResolverTest, PartialMembersDelivered) {
  auto r = Ok("mixed@example.com");
  EXPECT_EQ(Routes(r), V{"alice@example.com local "});
  EXPECT_NE(r.text().find("nosuchuser@example.com"), std::string::npos)
      << r.text();
}

TEST_F(ResolverTest, DepthLimit) {
  EXPECT_EQ(Routes(Ok("deep1@example.com")), V{"alice@example.com local "});
  Build(std::string(kRouting) + "alias_max_depth: 3\n", kAliases);
  auto r = resolver_->Resolve("deep1@example.com");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(r.dsn(), "5.4.6");
  EXPECT_NE(r.text().find("deeper than 3"), std::string::npos) << r.text();
}

TEST_F(ResolverTest, RemoteDomains) {
  EXPECT_EQ(Routes(Ok("User@Remote.org")),
            V{"User@remote.org smtp [mx.remote.org]:2525"});
  EXPECT_EQ(Routes(Ok("x@a.remote.org")), V{"x@a.remote.org smtp "});
  EXPECT_EQ(Routes(Ok("x@elsewhere.net")), V{"x@elsewhere.net smtp-out "});
  Build(
      "local_domains: \"example.com\" route { domain: \"remote.org\" channel: "
      "\"smtp\" }",
      "");
  auto r = resolver_->Resolve("x@elsewhere.net");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(r.dsn(), "5.4.4");
}

TEST_F(ResolverTest, BareNamesUseTheFirstLocalDomain) {
  EXPECT_EQ(Routes(Ok("alice")), V{"alice@example.com local "});
  EXPECT_EQ(Routes(Ok("postmaster")),
            (V{"root@example.com local ", "carol@example.com local "}));
}

TEST_F(ResolverTest, BadSyntax) {
  for (const char* bad :
       {"", "@example.com", "alice@", "al ice@example.com", "a\tb@x.org"}) {
    auto r = resolver_->Resolve(bad);
    EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_PERMFAIL) << bad;
    EXPECT_EQ(r.dsn(), "5.1.3") << bad;
  }
}

TEST_F(ResolverTest, BrokenAliasesFileDefersLocalOnly) {
  tables_->aliases.reset();
  tables_->aliases_error =
      farm::Status::Invalid("aliases:3: expected \"name: target, ...\"");
  auto r = resolver_->Resolve("alice@example.com");
  EXPECT_EQ(r.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_EQ(r.dsn(), "4.3.0");
  EXPECT_NE(r.text().find("aliases:3"), std::string::npos);
  EXPECT_EQ(Routes(Ok("x@remote.org")),
            V{"x@remote.org smtp [mx.remote.org]:2525"});
}

TEST(LoadRouterTablesTest, StrictRefusesBadAliasesFile) {
  mailfarm::config::RoutingConfig config;
  config.set_aliases_file("/nonexistent/aliases");
  auto strict = LoadRouterTables(config, /*strict=*/true);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("/nonexistent/aliases"),
            std::string::npos);
  auto lenient = LoadRouterTables(config, /*strict=*/false);
  ASSERT_TRUE(lenient.ok());
  EXPECT_FALSE(lenient->aliases_error.ok());
}

}  // namespace
}  // namespace router
