// config_test.cc: config loading errors name file:line:col; checks catch
// mistakes.
#include "farm/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <vector>

namespace farm {
namespace {

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/mailfarm-config-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  std::string path =
      WriteTemp("hostname: \"mx\"\npaths {\n  spool_dir: 12 oops\n}\n");
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message().rfind(path + ":3:", 0), 0u)
      << config.status().message();
  ::unlink(path.c_str());
}

TEST(ConfigTest, UnknownFieldIsAnError) {
  std::string path = WriteTemp("no_such_key: 1\n");
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find(path + ":1:"), std::string::npos);
  EXPECT_NE(config.status().message().find("no_such_key"), std::string::npos);
  ::unlink(path.c_str());
}

TEST(ConfigTest, RouteToUnknownChannelIsRefused) {
  std::string path = WriteTemp(
      "channel { name: \"smtp\" type: SMTP }\n"
      "routing { route { domain: \"*\" channel: \"nope\" } }\n");
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("unknown channel \"nope\""),
            std::string::npos);
  ::unlink(path.c_str());
}

TEST(ConfigTest, DuplicateChannelAndBadPoolAreRefused) {
  std::string path = WriteTemp(
      "channel { name: \"a\" type: SMTP }\nchannel { name: \"a\" type: LOCAL "
      "}\n");
  EXPECT_FALSE(LoadConfig(path).ok());
  std::ofstream(path) << "router { min_spare: 5 max_spare: 2 }\n";
  auto bad_pool = LoadConfig(path);
  ASSERT_FALSE(bad_pool.ok());
  EXPECT_NE(bad_pool.status().message().find("min_spare"), std::string::npos);
  ::unlink(path.c_str());
}

TEST(ConfigTest, RelativePathsBecomeAbsoluteAndDerivedPathsAgree) {
  std::string path =
      WriteTemp("paths { run_dir: \"var/run\" spool_dir: \"/srv/spool\" }\n");
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  EXPECT_EQ(RunDir(*config), std::string(cwd) + "/var/run");
  EXPECT_EQ(SpoolDir(*config), "/srv/spool");
  EXPECT_EQ(FarmSocketPath(*config, "router"),
            std::string(cwd) + "/var/run/router.sock");
  EXPECT_EQ(TransportFarmName("smtp"), "transport-smtp");
  // The pid file sits beside run_dir, not in it (the service account's).
  EXPECT_EQ(PidFilePath(*config), std::string(cwd) + "/var/run.pid");
  ::unlink(path.c_str());
}

TEST(ConfigTest, PidFileIsConfigurable) {
  std::string path = WriteTemp(
      "paths { run_dir: \"/run/mailfarm/\" pid_file: \"x/mailfarmd.pid\" }\n");
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof(cwd)), nullptr);
  EXPECT_EQ(PidFilePath(*config), std::string(cwd) + "/x/mailfarmd.pid");
  config->mutable_paths()->clear_pid_file();
  EXPECT_EQ(PidFilePath(*config), "/run/mailfarm.pid");
  ::unlink(path.c_str());
}

TEST(ConfigTest, RatesPerSecondMinuteAndHour) {
  EXPECT_DOUBLE_EQ(*ParseRate("5/s"), 5.0);
  EXPECT_DOUBLE_EQ(*ParseRate("120/m"), 2.0);
  EXPECT_DOUBLE_EQ(*ParseRate("1800/h"), 0.5);
  EXPECT_DOUBLE_EQ(*ParseRate("0.5/s"), 0.5);
  for (const char* bad :
       {"", "5", "5/d", "/s", "0/s", "-1/m", "x/h", "5/ss", "nan/s", "inf/h"}) {
    auto rate = ParseRate(bad);
    ASSERT_FALSE(rate.ok()) << bad;
    EXPECT_NE(rate.status().message().find("N/s, N/m or N/h"),
              std::string::npos);
  }
}

TEST(ConfigTest, BadRatesAndDestinationOverridesAreRefused) {
  std::string path = WriteTemp(
      "channel { name: \"smtp\" type: SMTP destination_rate: \"10/week\" }\n");
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("channel smtp: rate \"10/week\""),
            std::string::npos)
      << config.status().message();
  std::ofstream(path) << "channel { name: \"smtp\" type: SMTP }\n"
                         "destination { channel: \"smpt\" destination: "
                         "\"example.com\" concurrency: 2 }\n";
  config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("unknown channel \"smpt\""),
            std::string::npos);
  std::ofstream(path) << "channel { name: \"smtp\" type: SMTP }\n"
                         "destination { destination: \"example.com\" rate: "
                         "\"600/h\" concurrency: 2 }\n";
  EXPECT_TRUE(LoadConfig(path).ok());
  ::unlink(path.c_str());
}

TEST(ConfigTest, HostnameAndLocalhostAreLocalDomainsByDefault) {
  std::string path = WriteTemp(
      "hostname: \"MX.Example.ORG\"\n"
      "channel { name: \"local\" type: LOCAL }\n"
      "routing { local_domains: \"example.org\" local_domains: "
      "\"LOCALHOST\" }\n");
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  std::vector<std::string> domains(config->routing().local_domains().begin(),
                                   config->routing().local_domains().end());
  EXPECT_EQ(domains, (std::vector<std::string>{"example.org", "LOCALHOST",
                                               "mx.example.org"}));

  // Turned off, or with no local channel to deliver to: only what is listed.
  std::ofstream(path) << "hostname: \"mx.example.org\"\n"
                         "channel { name: \"local\" type: LOCAL }\n"
                         "routing { hostname_is_local: false }\n";
  config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->routing().local_domains_size(), 0);
  std::ofstream(path) << "channel { name: \"smtp\" type: SMTP }\n";
  config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->routing().local_domains_size(), 0);
  ::unlink(path.c_str());
}

TEST(ConfigTest, DefaultConfigPathIsAbsolute) {
  EXPECT_EQ(kDefaultConfigPath[0], '/');
}

}  // namespace
}  // namespace farm
