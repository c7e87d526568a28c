// router_handler_test.cc: a STAGE_ROUTE job through RouterHandler (indices,
// per-recipient outcomes), a job for another stage, and the handler built from
// a config whose routing table or aliases file no longer loads.
#include "router/router_handler.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace router {
namespace {

mailfarm::config::Config Config(const std::string& text) {
  mailfarm::config::Config config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

mailfarm::Job RouteJob(std::initializer_list<const char*> addresses) {
  mailfarm::Job job;
  job.set_qid("Q1");
  job.set_stage(mailfarm::STAGE_ROUTE);
  uint32_t index = 7;
  for (const char* a : addresses) {
    auto* r = job.add_recipients();
    r->set_index(index++);
    r->set_address(a);
  }
  return job;
}

TEST(RouterHandlerTest, AnswersEveryRecipientWithItsIndex) {
  auto handler = MakeRouterHandler(Config(R"(
    routing { local_domains: "example.com" local_users: "alice"
              route { domain: "*" channel: "smtp" } })"));
  mailfarm::Result result;
  handler->Handle(RouteJob({"alice@example.com", "bob@example.com", "x@y.org"}),
                  &result);
  EXPECT_EQ(result.outcome(), mailfarm::OUTCOME_OK);
  ASSERT_EQ(result.recipients_size(), 3);
  EXPECT_EQ(result.recipients(0).index(), 7u);
  EXPECT_EQ(result.recipients(0).routes(0).channel(), "local");
  EXPECT_EQ(result.recipients(1).index(), 8u);
  EXPECT_EQ(result.recipients(1).outcome(), mailfarm::OUTCOME_PERMFAIL);
  EXPECT_EQ(result.recipients(1).dsn(), "5.1.1");
  EXPECT_EQ(result.recipients(2).index(), 9u);
  EXPECT_EQ(result.recipients(2).routes(0).channel(), "smtp");
}

TEST(RouterHandlerTest, OtherStageTempfails) {
  auto handler = MakeRouterHandler(Config(""));
  mailfarm::Job job = RouteJob({"a@b.org"});
  job.set_stage(mailfarm::STAGE_DELIVER);
  mailfarm::Result result;
  handler->Handle(job, &result);
  EXPECT_EQ(result.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_EQ(result.recipients_size(), 0);
}

TEST(RouterHandlerTest, BrokenRoutingTableTempfailsEveryJob) {
  auto handler = MakeRouterHandler(Config(
      R"(routing { route { domain: "a.org" channel: "smtp" nexthop: "[bad" } })"));
  ASSERT_NE(handler, nullptr);
  mailfarm::Result result;
  handler->Handle(RouteJob({"x@a.org"}), &result);
  EXPECT_EQ(result.outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_EQ(result.dsn(), "4.3.5");
  EXPECT_NE(result.text().find("routing.route[0]"), std::string::npos);
}

TEST(RouterHandlerTest, BrokenAliasesFileDefersOnlyLocalRecipients) {
  auto handler = MakeRouterHandler(Config(R"(
    routing { local_domains: "example.com" local_users_any: true
              aliases_file: "/nonexistent/aliases" route { domain: "*" channel: "smtp" } })"));
  mailfarm::Result result;
  handler->Handle(RouteJob({"alice@example.com", "x@y.org"}), &result);
  ASSERT_EQ(result.recipients_size(), 2);
  EXPECT_EQ(result.recipients(0).outcome(), mailfarm::OUTCOME_TEMPFAIL);
  EXPECT_NE(result.recipients(0).text().find("/nonexistent/aliases"),
            std::string::npos);
  EXPECT_EQ(result.recipients(1).outcome(), mailfarm::OUTCOME_OK);
}

}  // namespace
}  // namespace router

namespace router {
namespace {

TEST(CheckRouterConfigTest, AliasChannelsMustExist) {
  char path[] = "/tmp/router_check_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const char text[] =
      "logger: \"|/usr/bin/logger\"\narchive: /var/mail/archive\n";
  ASSERT_EQ(write(fd, text, sizeof text - 1),
            static_cast<ssize_t>(sizeof text - 1));
  close(fd);
  const std::string routing =
      std::string("routing { aliases_file: \"") + path + "\" }\n";
  auto missing =
      CheckRouterConfig(Config(routing + "channel { name: \"local\" }"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("needs channel \"pipe\""), std::string::npos)
      << missing.message();
  EXPECT_TRUE(
      CheckRouterConfig(
          Config(routing +
                 "channel { name: \"local\" } channel { name: \"pipe\" }"))
          .ok());
  auto config = Config(
      routing + "channel { name: \"local\" } channel { name: \"pipe\" }");
  config.mutable_routing()->set_file_channel("files");
  auto no_file_channel = CheckRouterConfig(config);
  std::remove(path);
  EXPECT_FALSE(no_file_channel.ok());
  EXPECT_FALSE(
      CheckRouterConfig(Config(routing)).ok());  // the file is gone now
}

}  // namespace
}  // namespace router
