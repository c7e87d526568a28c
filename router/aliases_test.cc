// aliases_test.cc: the /etc/aliases parser: target kinds, quoting, comments,
// continuation lines, case, and a precise error for each malformed input.
#include "router/aliases.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace router {
namespace {

using Kind = AliasTarget::Kind;

TEST(AliasesTest, ParsesEveryTargetKind) {
  auto table = AliasTable::Parse(
      "# comment\n"
      "postmaster: root\n"
      "Staff: alice, bob@example.org, \\carol, \"|/usr/bin/logger -t mail, "
      "x\",\n"
      "\t/var/log/staff.mbox,\r\n"
      "  :include:/etc/mail/staff.list\n"
      "\n"
      "\"quoted name\": root\n",
      "aliases", /*case_sensitive=*/false);
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(table->size(), 3u);
  const auto* staff = table->Find("staff");
  ASSERT_NE(staff, nullptr);
  ASSERT_EQ(staff->size(), 6u);
  EXPECT_EQ((*staff)[0].kind, Kind::kAddress);
  EXPECT_EQ((*staff)[0].value, "alice");
  EXPECT_EQ((*staff)[1].kind, Kind::kAddress);
  EXPECT_EQ((*staff)[1].value, "bob@example.org");
  EXPECT_EQ((*staff)[2].kind, Kind::kMailbox);
  EXPECT_EQ((*staff)[2].value, "carol");
  EXPECT_EQ((*staff)[3].kind, Kind::kPipe);
  EXPECT_EQ((*staff)[3].value, "/usr/bin/logger -t mail, x");
  EXPECT_EQ((*staff)[4].kind, Kind::kFile);
  EXPECT_EQ((*staff)[4].value, "/var/log/staff.mbox");
  EXPECT_EQ((*staff)[5].kind, Kind::kInclude);
  EXPECT_EQ((*staff)[5].value, "/etc/mail/staff.list");
  EXPECT_NE(table->Find("quoted name"), nullptr);
  EXPECT_EQ(table->Find("Staff"), nullptr);  // keys are lower-cased
}

TEST(AliasesTest, CaseSensitiveKeepsNames) {
  auto table =
      AliasTable::Parse("Staff: alice\n", "aliases", /*case_sensitive=*/true);
  ASSERT_TRUE(table.ok());
  EXPECT_NE(table->Find("Staff"), nullptr);
  EXPECT_EQ(table->Find("staff"), nullptr);
}

TEST(AliasesTest, EmptyFileIsEmptyTable) {
  auto table = AliasTable::Parse("# nothing\n\n", "aliases", false);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ(table->size(), 0u);
}

struct BadCase {
  const char* text;
  const char* error;  // expected substring, with the line number
};

TEST(AliasesTest, PreciseErrors) {
  const BadCase cases[] = {
      {"a: b,\n c\nbroken line\n", "aliases:3: expected"},
      {"  leading: blank\n", "aliases:1: continuation line without an alias"},
      {"a: b\n\n c\n", "aliases:3: continuation line without an alias"},
      {": b\n", "aliases:1: empty alias name"},
      {"a:\n", "aliases:1: empty target"},
      {"a: b,,c\n", "aliases:1: empty target"},
      {"a: b\nb: \"|cmd\n", "aliases:2: unbalanced quote"},
      {"a: |\n", "aliases:1: empty command"},
      {"a: :include:relative/path\n",
       "aliases:1: :include: needs an absolute path"},
      {"a: b c\n", "aliases:1: blank inside an address"},
      {"a: \\\n", "aliases:1: bad \\user"},
      {"a: b\nA: c\n", "aliases:2: duplicate alias \"A\""},
      {"a: @\n", "aliases:1: malformed address"},
  };
  for (const BadCase& c : cases) {
    auto table = AliasTable::Parse(c.text, "aliases", false);
    ASSERT_FALSE(table.ok()) << c.text;
    EXPECT_NE(table.status().message().find(c.error), std::string::npos)
        << "got: " << table.status().message() << " want: " << c.error;
  }
}

TEST(AliasesTest, LoadNamesMissingFile) {
  auto table = AliasTable::Load("/nonexistent/aliases", false);
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.status().message().find("/nonexistent/aliases"),
            std::string::npos);
}

TEST(AliasesTest, IncludeFile) {
  char path[] = "/tmp/aliases_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "# members\nalice, bob@example.org\n\ncarol,\n\"|/bin/true\"\n";
  }
  auto targets = LoadIncludeFile(path);
  ASSERT_TRUE(targets.ok()) << targets.status().message();
  ASSERT_EQ(targets->size(), 4u);
  EXPECT_EQ((*targets)[2].value, "carol");
  EXPECT_EQ((*targets)[3].kind, Kind::kPipe);
  {
    std::ofstream out(path);
    out << "alice, \"broken\n";
  }
  targets = LoadIncludeFile(path);
  ASSERT_FALSE(targets.ok());
  EXPECT_EQ(targets.status().code(), farm::Status::Code::kInvalid);
  std::remove(path);
  targets = LoadIncludeFile(path);
  ASSERT_FALSE(targets.ok());
  EXPECT_EQ(targets.status().code(), farm::Status::Code::kTempFail);
}

}  // namespace
}  // namespace router
