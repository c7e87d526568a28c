// spool_file_test.cc: the queue-file format round-trips, and every kind of
// damage (torn, truncated, flipped bits, wrong name) is recognised.
#include "scheduler/spool_file.h"

#include <gtest/gtest.h>

#include "scheduler/crc32c.h"

namespace mailfarm::scheduler {
namespace {

constexpr char kQid[] = "0192a3b4c5d60001";

std::string MakeFile(const std::string& body = "Subject: hi\r\n\r\nhello\r\n") {
  spool::Envelope envelope;
  envelope.set_qid(kQid);
  envelope.set_sender("alice@example.com");
  auto* r = envelope.add_recipients();
  r->set_index(0);
  r->set_address("bob@example.org");
  r = envelope.add_recipients();
  r->set_index(1);
  r->set_address("carol@example.org");
  envelope.set_body_size(body.size());
  envelope.set_body_crc32c(Crc32c(body));
  return EncodeQueueHeader(envelope) + body;
}

spool::JobState State(uint64_t seq, uint32_t attempts,
                      int delivered_index = -1) {
  spool::JobState s;
  s.set_sequence(seq);
  s.set_attempts(attempts);
  s.set_next_attempt_unix_ms(1000 * seq);
  if (delivered_index >= 0) {
    auto* r = s.add_recipients();
    r->set_index(delivered_index);
    r->set_status(spool::RCPT_DELIVERED);
  }
  return s;
}

TEST(Crc32c, KnownVector) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789", 9), 0xE3069283u);
}

// The instruction (where the CPU has it) and the table agree at every
// length and alignment, and when extended in pieces.
TEST(Crc32c, InstructionAndTableAgree) {
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>((i * 131 + 7) ^ (i >> 3));
  for (size_t start : {0, 1, 3, 7}) {
    for (size_t size : {0, 1, 7, 8, 9, 63, 64, 65, 500, 993}) {
      EXPECT_EQ(Crc32cExtend(0, data.data() + start, size),
                Crc32cExtendPortable(0, data.data() + start, size))
          << start << " " << size;
    }
  }
  uint32_t pieces = Crc32cExtend(0, data.data(), 333);
  pieces = Crc32cExtend(pieces, data.data() + 333, 667);
  EXPECT_EQ(pieces, Crc32cExtendPortable(0, data.data(), 1000));
}

TEST(SpoolFile, RoundTrip) {
  std::string data = MakeFile();
  auto file = ParseQueueFile(data, kQid);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->envelope.sender(), "alice@example.com");
  EXPECT_EQ(file->envelope.recipients_size(), 2);
  EXPECT_EQ(data.substr(file->body_offset), "Subject: hi\r\n\r\nhello\r\n");
  EXPECT_EQ(file->state_records, 0);
  EXPECT_EQ(file->valid_size, data.size());
}

TEST(SpoolFile, StateRecordsMerge) {
  std::string data = MakeFile() + EncodeStateRecord(State(1, 1, 0)) +
                     EncodeStateRecord(State(2, 2));
  auto file = ParseQueueFile(data, kQid);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->state_records, 2);
  EXPECT_EQ(file->state.attempts(), 2u);
  EXPECT_EQ(file->state.next_attempt_unix_ms(), 2000);
  ASSERT_EQ(file->state.recipients_size(), 1);  // kept from the first record
  EXPECT_EQ(file->state.recipients(0).status(), spool::RCPT_DELIVERED);
}

TEST(SpoolFile, TornTrailingRecordIsIgnored) {
  std::string good = MakeFile() + EncodeStateRecord(State(1, 1));
  std::string torn = EncodeStateRecord(State(2, 5, 1));
  for (size_t cut = 1; cut < torn.size(); ++cut) {
    std::string data = good + torn.substr(0, cut);
    auto file = ParseQueueFile(data, kQid);
    ASSERT_TRUE(file.ok()) << "cut " << cut << ": " << file.status().message();
    EXPECT_EQ(file->state_records, 1);
    EXPECT_EQ(file->state.attempts(), 1u);
    EXPECT_EQ(file->valid_size, good.size());
    EXPECT_EQ(file->torn_bytes, cut);
  }
}

TEST(SpoolFile, CorruptRecordChecksumIsTorn) {
  std::string rec = EncodeStateRecord(State(2, 5));
  rec[rec.size() - 1] ^= 1;
  auto file = ParseQueueFile(MakeFile() + rec, kQid);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->state_records, 0);
  EXPECT_EQ(file->torn_bytes, rec.size());
}

TEST(SpoolFile, EveryTruncationOfHeaderOrBodyIsRejected) {
  std::string data = MakeFile();
  for (size_t len = 0; len < data.size(); ++len) {
    auto file = ParseQueueFile(data.substr(0, len), kQid);
    EXPECT_FALSE(file.ok()) << "length " << len;
    if (!file.ok()) {
      EXPECT_EQ(file.status().code(), farm::Status::Code::kInvalid);
    }
  }
}

TEST(SpoolFile, EveryFlippedByteIsDetected) {
  std::string data = MakeFile();
  for (size_t i = 0; i < data.size(); ++i) {
    std::string bad = data;
    bad[i] ^= 0x40;
    auto file = ParseQueueFile(bad, kQid);
    EXPECT_FALSE(file.ok()) << "byte " << i;
  }
}

TEST(SpoolFile, PreciseMessages) {
  std::string data = MakeFile();
  std::string bad = data;
  bad[0] = 'X';
  EXPECT_NE(ParseQueueFile(bad, kQid).status().message().find("bad magic"),
            std::string::npos);
  bad = data;
  bad[7] = 0x7f;  // length's high byte
  EXPECT_NE(ParseQueueFile(bad, kQid).status().message().find("out of range"),
            std::string::npos);
  bad = data;
  bad[bad.size() - 1] ^= 1;
  EXPECT_NE(ParseQueueFile(bad, kQid).status().message().find("body checksum"),
            std::string::npos);
  EXPECT_NE(ParseQueueFile(data, "spool/queue/0/0192a3b4c5d60002")
                .status()
                .message()
                .find("does not match the file name"),
            std::string::npos);
  EXPECT_NE(ParseQueueFile(data.substr(0, data.size() - 3), kQid)
                .status()
                .message()
                .find("truncated body"),
            std::string::npos);
}

TEST(SpoolFile, BodyCheckCanBeSkipped) {
  std::string bad = MakeFile();
  bad[bad.size() - 1] ^= 1;
  EXPECT_TRUE(
      ParseQueueFile(bad, kQid, ReadOptions{.verify_body = false}).ok());
}

TEST(SpoolFile, DuplicateRecipientIndexRejected) {
  spool::Envelope envelope;
  envelope.set_qid(kQid);
  envelope.add_recipients()->set_address("a@b");
  envelope.add_recipients()->set_address("c@d");  // both index 0
  auto file = ParseQueueFile(EncodeQueueHeader(envelope), kQid);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("duplicate recipient index"),
            std::string::npos);
}

TEST(SpoolFile, ReadFromDiskMissingFile) {
  auto file = ReadQueueFile("/nonexistent/spool/0192a3b4c5d60001");
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().code(), farm::Status::Code::kInvalid);
}

}  // namespace
}  // namespace mailfarm::scheduler
