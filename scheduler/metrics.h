// metrics.h: the scheduler's Prometheus endpoint. MetricsPage renders the text
// exposition format (served by MetricsServer, metrics_server.h);
// AddScoreboardMetrics reads every farm's scoreboard.
#ifndef MAILFARM_SCHEDULER_METRICS_H_
#define MAILFARM_SCHEDULER_METRICS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.pb.h"
#include "farm/status.h"

namespace mailfarm::scheduler {

using Labels = std::map<std::string, std::string>;

// One scrape's samples. Not thread-safe.
class MetricsPage {
 public:
  // `type` is "counter", "gauge" or "histogram". A family's HELP and TYPE lines
  // are written once, before its first sample, whatever order samples come in.
  void Add(const std::string& name, const std::string& type,
           const std::string& help, const Labels& labels, double value);
  // Declares a family without a sample (histograms add theirs with AddSample).
  void Declare(const std::string& name, const std::string& type,
               const std::string& help) {
    FamilyOf(name, type, help);
  }
  // A raw sample line of an existing family (histogram _bucket/_sum/_count).
  void AddSample(const std::string& family, const std::string& sample_name,
                 const Labels& labels, double value);
  std::string Render() const;

 private:
  struct Family {
    std::string type;
    std::string help;
    std::vector<std::string> lines;
  };
  Family& FamilyOf(const std::string& name, const std::string& type,
                   const std::string& help);
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

// A cumulative histogram of durations in seconds with fixed bucket bounds.
class LatencyHistogram {
 public:
  LatencyHistogram();  // 10 ms .. 1 h, roughly x2.5 per bucket
  void Observe(double seconds);
  void AppendTo(MetricsPage* page, const std::string& name,
                const std::string& help, const Labels& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// mailfarm_farm_children{farm,state}, mailfarm_farm_jobs_total{farm},
// mailfarm_farm_generation{farm} from run_dir/*.scoreboard.
void AddScoreboardMetrics(const std::string& run_dir, MetricsPage* page);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_METRICS_H_
