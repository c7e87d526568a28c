// maildrop_file_test.cc: a maildrop file round-trips; every kind of damage
// (magic, length, truncation, garbage, a body that disagrees with the size)
// is refused with a reason, never a crash.
#include "scheduler/maildrop_file.h"

#include <gtest/gtest.h>

namespace mailfarm::scheduler {
namespace {

InjectRequest Request() {
  InjectRequest r;
  r.set_sender("alice@host.test");
  r.add_recipients("root@host.test");
  r.set_size(999);  // replaced by the encoder
  return r;
}

TEST(MaildropFileTest, RoundTrip) {
  std::string file =
      EncodeMaildropFile(Request(), "Subject: x\r\n\r\nbody\r\n");
  InjectRequest request;
  std::string body;
  ASSERT_TRUE(DecodeMaildropFile(file, 1 << 20, &request, &body).ok());
  EXPECT_EQ(request.sender(), "alice@host.test");
  EXPECT_EQ(request.recipients(0), "root@host.test");
  EXPECT_EQ(request.size(), body.size());
  EXPECT_EQ(body, "Subject: x\r\n\r\nbody\r\n");
}

TEST(MaildropFileTest, DamageIsRefusedWithAReason) {
  std::string good = EncodeMaildropFile(Request(), "body\r\n");
  InjectRequest request;
  std::string body;
  auto decode = [&](const std::string& file, size_t limit = 1 << 20) {
    return DecodeMaildropFile(file, limit, &request, &body);
  };
  EXPECT_NE(decode("").message().find("magic"), std::string::npos);
  EXPECT_NE(decode("XXXX" + good.substr(4)).message().find("magic"),
            std::string::npos);
  EXPECT_NE(decode("MFD1").message().find("length"), std::string::npos);
  EXPECT_NE(decode(good, 4).message().find("exceeds"), std::string::npos);
  // Every truncation and one extra byte: refused, never accepted.
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(decode(good.substr(0, n)).ok()) << n;
  EXPECT_FALSE(decode(good + "x").ok());
  EXPECT_FALSE(decode("MFD1\x05garbage and more").ok());
  EXPECT_TRUE(decode(good).ok());
}

}  // namespace
}  // namespace mailfarm::scheduler
