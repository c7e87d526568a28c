// metrics.cc: Prometheus text exposition (the page metrics_server.cc serves).
#include "scheduler/metrics.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "farm/scoreboard.h"

namespace mailfarm::scheduler {

namespace {

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  char buf[64];
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", value);
  } else {
    std::snprintf(buf, sizeof(buf), "%.9g", value);
  }
  return buf;
}

std::string SampleLine(const std::string& name, const Labels& labels,
                       double value) {
  std::string line = name;
  if (!labels.empty()) {
    line += "{";
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) line += ",";
      first = false;
      line += k + "=\"" + EscapeLabel(v) + "\"";
    }
    line += "}";
  }
  return line + " " + FormatValue(value);
}

}  // namespace

MetricsPage::Family& MetricsPage::FamilyOf(const std::string& name,
                                           const std::string& type,
                                           const std::string& help) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    order_.push_back(name);
    it->second.type = type;
    it->second.help = help;
  }
  return it->second;
}

void MetricsPage::Add(const std::string& name, const std::string& type,
                      const std::string& help, const Labels& labels,
                      double value) {
  FamilyOf(name, type, help).lines.push_back(SampleLine(name, labels, value));
}

void MetricsPage::AddSample(const std::string& family,
                            const std::string& sample_name,
                            const Labels& labels, double value) {
  families_[family].lines.push_back(SampleLine(sample_name, labels, value));
}

std::string MetricsPage::Render() const {
  std::string out;
  for (const std::string& name : order_) {
    const Family& f = families_.at(name);
    out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + " " + f.type + "\n";
    for (const std::string& line : f.lines) out += line + "\n";
  }
  return out;
}

LatencyHistogram::LatencyHistogram()
    : bounds_{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
              5,    10,    30,   60,  300,  900, 3600},
      counts_(bounds_.size() + 1, 0) {}

void LatencyHistogram::Observe(double seconds) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), seconds) -
             bounds_.begin();
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

void LatencyHistogram::AppendTo(MetricsPage* page, const std::string& name,
                                const std::string& help,
                                const Labels& labels) const {
  page->Declare(name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    Labels with_le = labels;
    with_le["le"] = i < bounds_.size() ? FormatValue(bounds_[i]) : "+Inf";
    page->AddSample(name, name + "_bucket", with_le,
                    static_cast<double>(cumulative));
  }
  page->AddSample(name, name + "_sum", labels, sum_);
  page->AddSample(name, name + "_count", labels, static_cast<double>(count_));
}

void AddScoreboardMetrics(const std::string& run_dir, MetricsPage* page) {
  for (const std::string& path : farm::ListScoreboards(run_dir)) {
    auto board = farm::Scoreboard::OpenReadOnly(path);
    if (!board.ok()) continue;
    farm::ScoreboardCounts counts = farm::CountScoreboard(**board);
    for (int s = 1; s < 6; ++s) {
      auto state = static_cast<farm::SlotState>(s);
      page->Add("mailfarm_farm_children", "gauge",
                "Farm children by scoreboard state.",
                {{"farm", counts.farm}, {"state", farm::SlotStateName(state)}},
                static_cast<double>(counts.of(state)));
    }
    page->Add("mailfarm_farm_jobs_total", "counter",
              "Jobs (or sessions) served by a farm's children since its "
              "manager started.",
              {{"farm", counts.farm}}, static_cast<double>(counts.total_jobs));
    page->Add("mailfarm_farm_children_started_total", "counter",
              "Children forked by a farm's manager since it started.",
              {{"farm", counts.farm}},
              static_cast<double>(counts.total_children));
    page->Add(
        "mailfarm_farm_generation", "gauge",
        "A farm's generation (graceful restarts since its manager started).",
        {{"farm", counts.farm}}, static_cast<double>(counts.generation));
  }
}

}  // namespace mailfarm::scheduler
