// framed_stream_test.cc: blocking frames over a socketpair, including the bad
// cases.
#include "farm/framed_stream.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "wire.pb.h"

namespace farm {
namespace {

struct Pair {
  UniqueFd a, b;
};
Pair MakePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  return Pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

TEST(FramedStreamTest, RoundTripsSeveralFrames) {
  Pair p = MakePair();
  FramedStream writer(p.a.get(), 1 << 20), reader(p.b.get(), 1 << 20);
  for (int i = 0; i < 3; ++i) {
    mailfarm::Job job;
    job.set_qid("q" + std::to_string(i));
    job.add_recipients()->set_address("user@example.com");
    ASSERT_TRUE(writer.Write(job).ok());
  }
  for (int i = 0; i < 3; ++i) {
    mailfarm::Job job;
    ASSERT_TRUE(reader.Read(&job, 1000).ok());
    EXPECT_EQ(job.qid(), "q" + std::to_string(i));
    EXPECT_EQ(job.recipients(0).address(), "user@example.com");
  }
}

TEST(FramedStreamTest, LargeFrameArrivesWhole) {
  Pair p = MakePair();
  std::string big(600 * 1024, 'x');
  std::thread t([&] {
    FramedStream writer(p.a.get(), 1 << 20);
    mailfarm::BodyChunk chunk;
    chunk.set_data(big);
    EXPECT_TRUE(writer.Write(chunk).ok());
  });
  FramedStream reader(p.b.get(), 1 << 20);
  mailfarm::BodyChunk chunk;
  ASSERT_TRUE(reader.Read(&chunk, 5000).ok());
  t.join();
  EXPECT_EQ(chunk.data(), big);
}

TEST(FramedStreamTest, OversizedFrameIsRefusedBeforeReadingIt) {
  Pair p = MakePair();
  FramedStream writer(p.a.get(), 1 << 20), reader(p.b.get(), 1024);
  mailfarm::BodyChunk chunk;
  chunk.set_data(std::string(2000, 'y'));
  ASSERT_TRUE(writer.Write(chunk).ok());
  mailfarm::BodyChunk got;
  Status s = reader.Read(&got, 1000);
  EXPECT_EQ(s.code(), Status::Code::kInvalid);
  EXPECT_NE(s.message().find("exceeds the limit of 1024"), std::string::npos)
      << s.message();
}

TEST(FramedStreamTest, GarbageIsInvalidNotACrash) {
  Pair p = MakePair();
  // A six-byte varint can never be a valid length prefix.
  std::string garbage("\xff\xff\xff\xff\xff\xff\xff", 7);
  ASSERT_TRUE(WriteFull(p.a.get(), garbage.data(), garbage.size()).ok());
  FramedStream reader(p.b.get(), 1 << 20);
  mailfarm::Job job;
  EXPECT_EQ(reader.Read(&job, 1000).code(), Status::Code::kInvalid);
}

TEST(FramedStreamTest, UnparsablePayloadIsInvalid) {
  Pair p = MakePair();
  std::string frame = std::string("\x03", 1) + "\xff\xff\xff";
  ASSERT_TRUE(WriteFull(p.a.get(), frame.data(), frame.size()).ok());
  FramedStream reader(p.b.get(), 1 << 20);
  mailfarm::Job job;
  EXPECT_EQ(reader.Read(&job, 1000).code(), Status::Code::kInvalid);
}

TEST(FramedStreamTest, EofBetweenFramesIsClosedAndInsideAFrameIsInvalid) {
  {
    Pair p = MakePair();
    p.a.Reset();
    FramedStream reader(p.b.get(), 1 << 20);
    mailfarm::Job job;
    EXPECT_EQ(reader.Read(&job, 1000).code(), Status::Code::kClosed);
  }
  {
    Pair p = MakePair();
    std::string partial =
        std::string("\x10", 1) + "abc";  // announces 16, sends 3
    ASSERT_TRUE(WriteFull(p.a.get(), partial.data(), partial.size()).ok());
    p.a.Reset();
    FramedStream reader(p.b.get(), 1 << 20);
    mailfarm::Job job;
    EXPECT_EQ(reader.Read(&job, 1000).code(), Status::Code::kInvalid);
  }
}

TEST(FramedStreamTest, TimeoutConsumesNothing) {
  Pair p = MakePair();
  FramedStream reader(p.b.get(), 1 << 20);
  mailfarm::Job job;
  EXPECT_EQ(reader.Read(&job, 10).code(), Status::Code::kTempFail);
  FramedStream writer(p.a.get(), 1 << 20);
  job.set_qid("late");
  ASSERT_TRUE(writer.Write(job).ok());
  mailfarm::Job got;
  ASSERT_TRUE(reader.Read(&got, 1000).ok());
  EXPECT_EQ(got.qid(), "late");
}

}  // namespace
}  // namespace farm
