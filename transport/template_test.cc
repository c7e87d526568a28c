// template_test.cc: unit tests of ${name} expansion and address helpers.
#include "transport/template.h"

#include <gtest/gtest.h>

namespace transport {
namespace {

TEST(TemplateTest, ExpandsKnownVariables) {
  TemplateVars vars{{"user", "alice"}, {"domain", "example.org"}};
  auto out = ExpandTemplate("var/mail/${user}@${domain}/", vars);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*out, "var/mail/alice@example.org/");
}

TEST(TemplateTest, DollarsThatAreNotVariables) {
  TemplateVars vars{{"user", "bob"}};
  auto out = ExpandTemplate("$$HOME $x ${user}$", vars);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "$HOME $x bob$");
}

TEST(TemplateTest, UnknownVariableIsInvalid) {
  auto out = ExpandTemplate("/x/${nosuch}", TemplateVars{{"user", "a"}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), farm::Status::Code::kInvalid);
  EXPECT_NE(out.status().message().find("${nosuch}"), std::string::npos);
}

TEST(TemplateTest, UnterminatedIsInvalid) {
  auto out = ExpandTemplate("/x/${user", TemplateVars{{"user", "a"}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("unterminated"), std::string::npos);
}

TEST(TemplateTest, ValueIsNotReexpanded) {
  auto out = ExpandTemplate("${a}", TemplateVars{{"a", "${b}"}, {"b", "x"}});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "${b}");
}

TEST(TemplateTest, TemplateUses) {
  EXPECT_TRUE(TemplateUses("--to=${recipient}", "recipient"));
  EXPECT_FALSE(TemplateUses("--to=$recipient", "recipient"));
}

TEST(SplitCommandTest, WordsAndQuotes) {
  auto argv = SplitCommand(
      "  /usr/bin/prog -a 'two words' \"say \\\"hi\\\"\" a\\ b x''y $HOME;ls ");
  ASSERT_TRUE(argv.ok()) << argv.status().message();
  std::vector<std::string> want = {"/usr/bin/prog", "-a",  "two words",
                                   "say \"hi\"",    "a b", "xy",
                                   "$HOME;ls"};
  EXPECT_EQ(*argv, want);
}

TEST(SplitCommandTest, Errors) {
  EXPECT_FALSE(SplitCommand("prog 'open").ok());
  EXPECT_FALSE(SplitCommand("prog \"open").ok());
  EXPECT_FALSE(SplitCommand("   ").ok());
  auto empty_word = SplitCommand("prog ''");
  ASSERT_TRUE(empty_word.ok());
  EXPECT_EQ(empty_word->size(), 2u);
  EXPECT_EQ((*empty_word)[1], "");
}

TEST(AddressTest, SplitsAtLastAt) {
  AddressParts p = SplitAddress("\"a@b\"@example.com");
  EXPECT_EQ(p.local, "\"a@b\"");
  EXPECT_EQ(p.domain, "example.com");
  p = SplitAddress("postmaster");
  EXPECT_EQ(p.local, "postmaster");
  EXPECT_EQ(p.domain, "");
}

TEST(AddressTest, SafePathComponent) {
  EXPECT_TRUE(SafePathComponent("alice"));
  EXPECT_TRUE(SafePathComponent("a.b+c"));
  EXPECT_FALSE(SafePathComponent(""));
  EXPECT_FALSE(SafePathComponent("."));
  EXPECT_FALSE(SafePathComponent(".."));
  EXPECT_FALSE(SafePathComponent("../etc"));
  EXPECT_FALSE(SafePathComponent("a/b"));
  EXPECT_FALSE(SafePathComponent(std::string("a\0b", 3)));
  EXPECT_FALSE(SafePathComponent("a\nb"));
}

}  // namespace
}  // namespace transport
