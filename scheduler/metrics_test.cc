// metrics_test.cc: the Prometheus exposition text.
#include "scheduler/metrics.h"

#include <gtest/gtest.h>

namespace mailfarm::scheduler {
namespace {

TEST(MetricsPageTest, FamiliesGetHelpAndTypeOnceBeforeTheirSamples) {
  MetricsPage page;
  page.Add("mailfarm_queue_jobs", "gauge", "Jobs by state.",
           {{"state", "active"}}, 3);
  page.Add("mailfarm_delivered_total", "counter", "Deliveries.",
           {{"channel", "smtp"}}, 10);
  page.Add("mailfarm_queue_jobs", "gauge", "Jobs by state.",
           {{"state", "hold"}}, 0);
  EXPECT_EQ(page.Render(),
            "# HELP mailfarm_queue_jobs Jobs by state.\n"
            "# TYPE mailfarm_queue_jobs gauge\n"
            "mailfarm_queue_jobs{state=\"active\"} 3\n"
            "mailfarm_queue_jobs{state=\"hold\"} 0\n"
            "# HELP mailfarm_delivered_total Deliveries.\n"
            "# TYPE mailfarm_delivered_total counter\n"
            "mailfarm_delivered_total{channel=\"smtp\"} 10\n");
}

TEST(MetricsPageTest, LabelValuesAreEscaped) {
  MetricsPage page;
  page.Add("m", "gauge", "h", {{"v", "a\"b\\c\nd"}}, 1.5);
  EXPECT_NE(page.Render().find("m{v=\"a\\\"b\\\\c\\nd\"} 1.5\n"),
            std::string::npos);
}

TEST(LatencyHistogramTest, BucketsAreCumulativeWithSumAndCount) {
  LatencyHistogram hist;
  hist.Observe(0.005);
  hist.Observe(0.2);
  hist.Observe(7200);
  MetricsPage page;
  hist.AppendTo(&page, "lat_seconds", "Latency.", {{"channel", "local"}});
  std::string text = page.Render();
  EXPECT_NE(text.find("# TYPE lat_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{channel=\"local\",le=\"0.01\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{channel=\"local\",le=\"0.25\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{channel=\"local\",le=\"3600\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("lat_seconds_bucket{channel=\"local\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("lat_seconds_count{channel=\"local\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("lat_seconds_sum{channel=\"local\"} 7200.205\n"),
            std::string::npos);
}

}  // namespace
}  // namespace mailfarm::scheduler
