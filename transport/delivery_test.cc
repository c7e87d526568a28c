// delivery_test.cc: the header block written before a message, the message
// range reader and the job-level outcome of a DeliveryReport.
#include "transport/delivery.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace transport {
namespace {

mailfarm::Job MakeJob() {
  mailfarm::Job job;
  job.set_qid("Q1");
  job.set_sender("s@example.org");
  job.set_arrival_unix_ms(1700000000000);
  auto* r = job.add_recipients();
  r->set_index(3);
  r->set_address("rcpt@example.net");
  job.mutable_client()->set_helo("helo.example.org");
  job.mutable_client()->set_hostname("client.example.org");
  job.mutable_client()->set_address("192.0.2.1");
  job.mutable_client()->set_protocol("ESMTPS");
  return job;
}

TEST(MessagePrefixTest, RelayHasReceivedThenAddedHeaders) {
  mailfarm::Job job = MakeJob();
  auto* h = job.add_added_headers();
  h->set_name("X-Scan");
  h->set_value("clean");
  std::string prefix =
      MessagePrefix(job, "mx.local", TraceKind::kRelay, nullptr);
  EXPECT_EQ(prefix.rfind(
                "Received: from helo.example.org (client.example.org "
                "[192.0.2.1])\r\n\tby mx.local (mailfarm) with ESMTPS id Q1\r\n"
                "\tfor <rcpt@example.net>; ",
                0),
            0u)
      << prefix;
  EXPECT_NE(prefix.find("\r\nX-Scan: clean\r\n"), std::string::npos);
  EXPECT_EQ(prefix.find("Return-Path"), std::string::npos);
}

TEST(MessagePrefixTest, LocalHasReturnPathAndDeliveredTo) {
  mailfarm::Job job = MakeJob();
  std::string prefix =
      MessagePrefix(job, "mx.local", TraceKind::kLocal, &job.recipients(0));
  EXPECT_EQ(prefix.rfind("Return-Path: <s@example.org>\r\nDelivered-To: "
                         "rcpt@example.net\r\nReceived: ",
                         0),
            0u)
      << prefix;
}

TEST(MessagePrefixTest, ControlCharactersCannotSplitHeaders) {
  mailfarm::Job job = MakeJob();
  auto* h = job.add_added_headers();
  h->set_name("X-Evil");
  h->set_value("a\r\nBcc: victim@example.com");
  job.mutable_client()->set_helo("x\r\nInjected: yes");
  std::string prefix =
      MessagePrefix(job, "mx.local", TraceKind::kRelay, nullptr);
  EXPECT_EQ(prefix.find("\r\nBcc:"), std::string::npos) << prefix;
  EXPECT_EQ(prefix.find("\r\nInjected:"), std::string::npos) << prefix;
  EXPECT_NE(prefix.find("X-Evil: a  Bcc: victim@example.com\r\n"),
            std::string::npos);
}

TEST(MessagePrefixTest, LocalSubmissionReceived) {
  mailfarm::Job job = MakeJob();
  job.mutable_client()->Clear();
  job.mutable_client()->set_protocol("local");
  job.mutable_client()->set_uid(1000);
  std::string prefix =
      MessagePrefix(job, "mx.local", TraceKind::kRelay, nullptr);
  EXPECT_EQ(
      prefix.rfind(
          "Received: by mx.local (mailfarm, from userid 1000)\r\n\tid Q1", 0),
      0u)
      << prefix;
}

TEST(MessageReaderTest, ReadsExactlyTheRange) {
  char path[] = "/tmp/mf-delivery-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string content = "HEADER" + std::string(600000, 'x') + "TAIL";
  ASSERT_EQ(write(fd, content.data(), content.size()),
            static_cast<ssize_t>(content.size()));
  close(fd);
  mailfarm::Job job = MakeJob();
  job.set_message_path(path);
  job.set_body_offset(6);
  job.set_body_size(600000);
  auto reader = MessageReader::Open(job);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  std::string got;
  int chunks = 0;
  ASSERT_TRUE(reader
                  ->ForEachChunk([&](std::string_view c) {
                    got.append(c);
                    ++chunks;
                    return farm::Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(got, std::string(600000, 'x'));
  EXPECT_GT(chunks, 1);
  job.set_body_size(700000);
  auto too_long = MessageReader::Open(job);
  EXPECT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), farm::Status::Code::kTempFail);
  unlink(path);
  job.set_body_size(10);
  EXPECT_FALSE(MessageReader::Open(job).ok());
}

TEST(DeliveryReportTest, JobLevelOutcomeOnlyWhenUniform) {
  mailfarm::Job job = MakeJob();
  auto* r2 = job.add_recipients();
  r2->set_index(4);
  r2->set_address("other@example.net");
  mailfarm::Result same;
  DeliveryReport a(job, &same);
  a.AddAll(mailfarm::OUTCOME_TEMPFAIL, "4.4.1", "refused", "none");
  a.Finish();
  EXPECT_EQ(same.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_EQ(same.dsn(), "4.4.1");
  ASSERT_EQ(same.recipients_size(), 2);
  EXPECT_EQ(same.recipients(1).index(), 4u);

  mailfarm::Result mixed;
  DeliveryReport b(job, &mixed);
  b.Add(job.recipients(0), mailfarm::OUTCOME_OK, "2.0.0", "ok", "local");
  b.Add(job.recipients(1), mailfarm::OUTCOME_PERMFAIL, "5.1.1", "no", "local");
  b.Finish();
  EXPECT_EQ(mixed.outcome(), mailfarm::OUTCOME_UNSPECIFIED);
}

}  // namespace
}  // namespace transport
