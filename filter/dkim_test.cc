// dkim_test.cc: RFC 6376 relaxed canonicalisation (the RFC's own example and
// edge cases), key loading errors, and the signature's tags and RSA validity.
// The independent check (Python's dkim module) is tests/filter/dkim_verify.py.
#include "filter/dkim.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdio>
#include <map>

namespace filter {
namespace {

TEST(DkimCanonTest, Rfc6376Example) {
  // RFC 6376 3.4.5.
  EXPECT_EQ(RelaxedHeader("A", " X"), "a:X\r\n");
  EXPECT_EQ(RelaxedHeader("B ", " Y\t\r\n\tZ  "), "b:Y Z\r\n");
  EXPECT_EQ(RelaxedBody(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
}

TEST(DkimCanonTest, BodyEdgeCases) {
  EXPECT_EQ(RelaxedBody(""), "");
  EXPECT_EQ(RelaxedBody("\r\n\r\n"), "");
  EXPECT_EQ(RelaxedBody("  \r\n\t\r\n"), "");
  EXPECT_EQ(RelaxedBody("no newline at end"), "no newline at end\r\n");
  EXPECT_EQ(RelaxedBody("a\r\n\r\n  \r\nb\r\n \r\n"), "a\r\n\r\n\r\nb\r\n");
  EXPECT_EQ(RelaxedBody("bare\nlf\n"), "bare\r\nlf\r\n");
}

TEST(DkimCanonTest, HeaderEdgeCases) {
  EXPECT_EQ(RelaxedHeader("Subject", ""), "subject:\r\n");
  EXPECT_EQ(RelaxedHeader("SUBJECT", "   a   b   "), "subject:a b\r\n");
  EXPECT_EQ(RelaxedHeader("X", " a\r\n b\r\n\tc"), "x:a b c\r\n");
}

class DkimSignTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EVP_PKEY* key = EVP_RSA_gen(2048);
    ASSERT_NE(key, nullptr);
    key_.reset(key, EVP_PKEY_free);
    std::FILE* f = std::fopen(path_, "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(
        PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
    std::fclose(f);
  }
  void TearDown() override { std::remove(path_); }

  mailfarm::config::DkimKey Key() {
    mailfarm::config::DkimKey key;
    key.set_domain("Example.COM");
    key.set_selector("sel1");
    key.set_private_key_file(path_);
    return key;
  }

  // tag -> value of a DKIM-Signature value.
  static std::map<std::string, std::string> Tags(const std::string& value) {
    std::map<std::string, std::string> tags;
    size_t pos = 0;
    while (pos < value.size()) {
      size_t semi = value.find(';', pos);
      std::string item =
          value.substr(pos, semi == std::string::npos ? semi : semi - pos);
      size_t eq = item.find('=');
      std::string name = item.substr(0, eq);
      name.erase(0, name.find_first_not_of(' '));
      tags[name] = item.substr(eq + 1);
      if (semi == std::string::npos) break;
      pos = semi + 1;
    }
    return tags;
  }

  char path_[64] = "/tmp/dkim_test_key.pem";
  std::shared_ptr<EVP_PKEY> key_;
};

TEST_F(DkimSignTest, SignatureTagsAndRsaValidity) {
  auto signer = DkimSigner::Load(Key());
  ASSERT_TRUE(signer.ok()) << signer.status().message();
  EXPECT_EQ(signer->domain(), "example.com");
  Message m = ParseMessage(
      "Received: from x\r\n"
      "From: A <a@example.com>\r\n"
      "To: b@example.org\r\n"
      "Subject: test\r\n"
      " folded\r\n"
      "Date: Sun, 22 Nov 2026 08:00:00 +0000\r\n"
      "\r\n"
      "Hello world\r\n\r\n");
  std::vector<mailfarm::Header> added(1);
  added[0].set_name("X-Scanner-Result");
  added[0].set_value("clean");
  auto value = signer->Sign(added, m, 1700000000);
  ASSERT_TRUE(value.ok()) << value.status().message();
  auto tags = Tags(*value);
  EXPECT_EQ(tags["v"], "1");
  EXPECT_EQ(tags["a"], "rsa-sha256");
  EXPECT_EQ(tags["c"], "relaxed/relaxed");
  EXPECT_EQ(tags["d"], "example.com");
  EXPECT_EQ(tags["s"], "sel1");
  EXPECT_EQ(tags["t"], "1700000000");
  EXPECT_EQ(tags["h"],
            "from:subject:date:to");  // configured order, present ones only
  EXPECT_EQ(tags["bh"],
            "yGIXoM91E1DiKjvCBcC8NlWyw54TdfMQ08sdtwtOO4I=");  // sha256("Hello
                                                              // world\r\n")

  // Recompute the signed data by hand and verify with the public key.
  std::string data =
      "from:A <a@example.com>\r\nsubject:test folded\r\n"
      "date:Sun, 22 Nov 2026 08:00:00 +0000\r\nto:b@example.org\r\n";
  std::string unsigned_value = value->substr(0, value->rfind("b=") + 2);
  data += "dkim-signature:" + unsigned_value;
  std::string b64 = tags["b"];
  std::vector<unsigned char> sig(b64.size());
  int n = EVP_DecodeBlock(sig.data(),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  ASSERT_GT(n, 0);
  size_t sig_len = static_cast<size_t>(n);
  while (!b64.empty() &&
         b64.back() == '=') {  // DecodeBlock counts padding as zeros
    b64.pop_back();
    --sig_len;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ASSERT_EQ(
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key_.get()), 1);
  EXPECT_EQ(
      EVP_DigestVerify(ctx, sig.data(), sig_len,
                       reinterpret_cast<const unsigned char*>(data.data()),
                       data.size()),
      1);
  EVP_MD_CTX_free(ctx);
}

TEST_F(DkimSignTest, AddedHeadersAreSignedInTheirEmittedPlace) {
  auto key = Key();
  key.add_sign_headers("From");
  key.add_sign_headers("X-Tag");
  key.add_sign_headers("X-Tag");
  auto signer = DkimSigner::Load(key);
  ASSERT_TRUE(signer.ok());
  Message m = ParseMessage("From: a@example.com\r\nX-Tag: own\r\n\r\nbody\r\n");
  std::vector<mailfarm::Header> added(1);
  added[0].set_name("X-Tag");
  added[0].set_value("added");
  auto value = signer->Sign(added, m, 1);
  ASSERT_TRUE(value.ok());
  // Both X-Tag instances signed: the message's (lowest) first, the added one
  // next.
  EXPECT_EQ(Tags(*value)["h"], "from:x-tag:x-tag");
}

TEST_F(DkimSignTest, NoFromNoSignature) {
  auto signer = DkimSigner::Load(Key());
  ASSERT_TRUE(signer.ok());
  auto value = signer->Sign({}, ParseMessage("Subject: x\r\n\r\nbody\r\n"), 1);
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), farm::Status::Code::kInvalid);
}

TEST_F(DkimSignTest, KeyErrors) {
  auto key = Key();
  key.set_private_key_file("/nonexistent/key.pem");
  auto missing = DkimSigner::Load(key);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/key.pem"),
            std::string::npos);

  std::FILE* f = std::fopen(path_, "w");
  std::fputs("not a key\n", f);
  std::fclose(f);
  auto garbage = DkimSigner::Load(Key());
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("not a PEM private key"),
            std::string::npos);

  EVP_PKEY* ec = EVP_EC_gen("P-256");
  f = std::fopen(path_, "w");
  PEM_write_PrivateKey(f, ec, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  EVP_PKEY_free(ec);
  auto not_rsa = DkimSigner::Load(Key());
  ASSERT_FALSE(not_rsa.ok());
  EXPECT_NE(not_rsa.status().message().find("not an RSA key"),
            std::string::npos);

  auto no_selector = Key();
  no_selector.clear_selector();
  EXPECT_FALSE(DkimSigner::Load(no_selector).ok());
}

}  // namespace
}  // namespace filter
