// sendmail_args_test.cc: sendmail command-line parsing and message handling.
#include "scheduler/sendmail_args.h"

#include <gtest/gtest.h>

namespace mailfarm::scheduler {
namespace {

TEST(SendmailArgs, CommonInvocations) {
  SendmailOptions o;
  EXPECT_EQ(ParseSendmailArgs(
                {"-oi", "-f", "a@b.c", "-t", "x@y.z", "--config=/c"}, &o),
            "");
  EXPECT_TRUE(o.ignore_dots);
  EXPECT_TRUE(o.recipients_from_headers);
  EXPECT_EQ(o.sender, "a@b.c");
  EXPECT_EQ(o.config_path, "/c");
  EXPECT_EQ(o.recipients, std::vector<std::string>{"x@y.z"});

  SendmailOptions p;
  EXPECT_EQ(
      ParseSendmailArgs(
          {"-fme@here", "-FJo Bloggs", "-i", "-odb", "-v", "--", "-odd@x"}, &p),
      "");
  EXPECT_EQ(p.sender, "me@here");
  EXPECT_EQ(p.full_name, "Jo Bloggs");
  EXPECT_EQ(p.recipients, std::vector<std::string>{"-odd@x"});
}

TEST(SendmailArgs, NullSenderAndErrors) {
  SendmailOptions o;
  EXPECT_EQ(ParseSendmailArgs({"-f", "", "a@b"}, &o), "");
  EXPECT_TRUE(o.sender_given);
  EXPECT_EQ(o.sender, "");
  SendmailOptions q;
  EXPECT_NE(ParseSendmailArgs({"-f"}, &q), "");
  EXPECT_NE(ParseSendmailArgs({"-Q"}, &q).find("unknown option -Q"),
            std::string::npos);
  EXPECT_NE(ParseSendmailArgs({"-bp"}, &q).find("not supported"),
            std::string::npos);
}

TEST(SendmailMessage, LineEndingsAndDot) {
  EXPECT_EQ(NormalizeMessage("a\nb\r\n.\nafter\n", false), "a\r\nb\r\n");
  EXPECT_EQ(NormalizeMessage("a\n.\nafter", true), "a\r\n.\r\nafter\r\n");
  EXPECT_EQ(NormalizeMessage("..x\n", false), "..x\r\n");
}

TEST(SendmailMessage, HeaderRecipients) {
  std::string m =
      "From: me@x\r\nTo: \"Doe, J\" <j@d.org>, k@d.org (Kay)\r\nCc: team: "
      "a@t.org, b@t.org;\r\n"
      "Bcc: hidden@h.org\r\nSubject: To: not@this.org\r\n\r\nTo: "
      "nor@this.org\r\n";
  EXPECT_EQ(HeaderRecipients(m),
            (std::vector<std::string>{"j@d.org", "k@d.org", "a@t.org",
                                      "b@t.org", "hidden@h.org"}));
}

TEST(SendmailMessage, CompleteHeadersAddsAndRemoves) {
  std::string m =
      "Subject: hi\r\nBcc: secret@x\r\n  continued@x\r\n\r\nbody\r\n";
  std::string out =
      CompleteHeaders(m, "me@host", "Me", "host", "me", 1'700'000'000'000);
  EXPECT_EQ(out.find("Bcc"), std::string::npos);
  EXPECT_EQ(out.find("continued"), std::string::npos);
  EXPECT_NE(out.find("From: \"Me\" <me@host>\r\n"), std::string::npos);
  EXPECT_NE(out.find("Date: "), std::string::npos);
  EXPECT_NE(out.find("Message-ID: <"), std::string::npos);
  EXPECT_NE(out.find("Subject: hi\r\n\r\nbody\r\n"), std::string::npos);
  std::string kept =
      CompleteHeaders("From: x@y\r\nDate: d\r\nMessage-ID: <m>\r\n\r\nb\r\n",
                      "", "", "host", "me", 0);
  EXPECT_EQ(kept.find("From: \""), std::string::npos);
  EXPECT_NE(kept.find("From: x@y\r\nDate: d\r\nMessage-ID: <m>\r\n\r\nb\r\n"),
            std::string::npos);
}

TEST(SendmailMessage, Qualify) {
  EXPECT_EQ(Qualify("root", "h.example"), "root@h.example");
  EXPECT_EQ(Qualify("a@b", "h.example"), "a@b");
  EXPECT_EQ(Qualify("", "h.example"), "");
}

}  // namespace
}  // namespace mailfarm::scheduler
