// smtpd_settings_test.cc: the config checks of mailfarm-smtpd (open relay
// refusal, bad networks, PROXY without load balancers, TLS pairs).
#include "smtpd/smtpd_settings.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace smtpd {
namespace {

farm::StatusOr<std::shared_ptr<const SmtpdSettings>> Build(
    const std::string& text) {
  farm::Config config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  config.set_hostname("mx.test");
  return BuildSettings(config);
}

TEST(SmtpdSettingsTest, DefaultIsNotAnOpenRelay) {
  auto s = Build("");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE((*s)->session.trusted_networks.entries().empty());
  EXPECT_FALSE((*s)->session.trusted_networks.Contains("127.0.0.1"));
  ASSERT_EQ((*s)->listeners.size(), 1u);
  EXPECT_EQ((*s)->listeners[0].address, "127.0.0.1");
  EXPECT_EQ((*s)->listeners[0].port, 2525);
  EXPECT_EQ((*s)->tls, nullptr);
}

TEST(SmtpdSettingsTest, SlashZeroTrustedNetworkIsRefused) {
  for (const char* net : {"0.0.0.0/0", "::/0", "10.0.0.0/0"}) {
    auto s = Build(std::string("smtpd { trusted_networks: \"") + net + "\" }");
    ASSERT_FALSE(s.ok()) << net;
    EXPECT_NE(s.status().message().find("open relay"), std::string::npos);
  }
}

TEST(SmtpdSettingsTest, BadValuesAreRefused) {
  EXPECT_FALSE(Build("smtpd { trusted_networks: \"10.0.0.0/33\" }").ok());
  EXPECT_FALSE(Build("smtpd { proxy_networks: \"lb.example\" }").ok());
  EXPECT_FALSE(
      Build("smtpd { listen { address: \"localhost\" port: 25 } }").ok());
  EXPECT_FALSE(
      Build("smtpd { listen { address: \"127.0.0.1\" port: 70000 } }").ok());
  auto s = Build(
      "smtpd { listen { address: \"127.0.0.1\" port: 25 proxy_protocol: true } "
      "}");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("proxy_networks"), std::string::npos);
  EXPECT_FALSE(Build("smtpd { tls_cert_file: \"/nonexistent.pem\" }").ok());
  s = Build(
      "smtpd { tls_cert_file: \"/nonexistent.pem\" tls_key_file: "
      "\"/nonexistent.key\" }");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/nonexistent.pem"), std::string::npos);
}

TEST(SmtpdSettingsTest, DomainsAndProxyListener) {
  auto s = Build(
      "routing { local_domains: \"Example.TEST.\" relay_domains: "
      "\"relay.test\" }"
      "smtpd { proxy_networks: \"10.0.0.0/8\" trusted_networks: "
      "\"192.0.2.0/24\""
      " listen { address: \"::1\" port: 2526 proxy_protocol: true } }");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ((*s)->session.local_domains,
            std::vector<std::string>{"example.test"});
  EXPECT_EQ((*s)->session.hostname, "mx.test");
  EXPECT_TRUE((*s)->listeners[0].proxy_protocol);
  EXPECT_TRUE((*s)->proxy_session.proxy_protocol);
  EXPECT_FALSE((*s)->session.proxy_protocol);
}

}  // namespace
}  // namespace smtpd
