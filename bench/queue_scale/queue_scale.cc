// queue_scale.cc: drives scheduler/destination_table.h directly at growing
// queue sizes (default 10k, 100k, 1M refs over 10,000 destinations) and
// prints the cost of one selection and the resident memory per queued ref.
// bench/queue_scale/run builds and runs it (issue 10's scale target).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "scheduler/destination_table.h"

namespace sched = mailfarm::scheduler;

namespace {

struct Options {
  std::vector<uint64_t> sizes{10'000, 100'000, 1'000'000};
  uint32_t destinations = 10'000;
  int passes = 21;
  uint64_t cycles = 50'000;  // selections per pass
};

// What one child process measured at one queue size.
struct Result {
  uint64_t refs = 0;
  double fill_ns_per_ref = 0;
  double ns_per_selection = 0;  // median over the passes
  double min_ns = 0, max_ns = 0;
  double rss_bytes_per_ref = 0;
  int64_t rss_base_kb = 0, rss_full_kb = 0;
  uint64_t destinations = 0;
  bool ok = false;
};

int64_t RssKb() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = 0;
  int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

double NowNs() {
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// Fills a fresh table with `refs` refs round robin over the destinations,
// then times selection cycles: Next, Enqueue of a replacement ref at the
// same destination, Complete(kAnswered); the queue size stays `refs`.
Result Measure(const Options& opt, uint64_t refs) {
  Result r;
  r.refs = refs;
  std::vector<std::string> names;
  names.reserve(opt.destinations);
  for (uint32_t d = 0; d < opt.destinations; ++d) {
    names.push_back("d" + std::to_string(d) + ".example");
  }
  std::unordered_map<std::string, sched::ChannelLimits> limits;
  sched::DestinationLimits& dl = limits["smtp"].destination;
  dl.concurrency = 20;
  dl.initial_concurrency = 20;
  dl.dead_failures = 0;
  r.rss_base_kb = RssKb();
  sched::DestinationTable table([] { return 0.5; });
  table.Configure(limits, 1);
  int64_t now = 1;
  double t0 = NowNs();
  for (uint64_t i = 0; i < refs; ++i) {
    auto e =
        table.Enqueue("smtp", names[i % opt.destinations], {i + 1, 0}, now);
    if (!e.queued) return r;
  }
  double t1 = NowNs();
  r.fill_ns_per_ref = (t1 - t0) / static_cast<double>(refs);
  r.rss_full_kb = RssKb();
  r.rss_bytes_per_ref = static_cast<double>(r.rss_full_kb - r.rss_base_kb) *
                        1024.0 / static_cast<double>(refs);
  r.destinations = table.destinations();

  // Job ids encode the destination: id - 1 = seq * destinations + index.
  uint64_t next_seq = refs / opt.destinations + 1;
  std::vector<double> per_pass;
  for (int pass = -1; pass < opt.passes; ++pass) {  // pass -1: warm-up
    double start = NowNs();
    for (uint64_t c = 0; c < opt.cycles; ++c) {
      auto pick = table.Next("smtp", now);
      if (!pick) return r;
      // The same destination gets a new job before the pick completes, so
      // the queue stays `refs` long and no destination is forgotten and
      // re-made in between (at 10k refs each destination holds just one).
      uint64_t index = (pick->ref.job_id - 1) % opt.destinations;
      table.Enqueue("smtp", names[index],
                    {next_seq++ * opt.destinations + index + 1, 0}, now);
      table.Complete(pick->dest, sched::DestinationFeedback::kAnswered, now);
    }
    double ns = (NowNs() - start) / static_cast<double>(opt.cycles);
    if (pass >= 0) per_pass.push_back(ns);
  }
  if (table.queued() != refs) return r;
  std::sort(per_pass.begin(), per_pass.end());
  r.ns_per_selection = per_pass[per_pass.size() / 2];
  r.min_ns = per_pass.front();
  r.max_ns = per_pass.back();
  r.ok = true;
  return r;
}

// Each size in its own process, so that memory freed by a smaller run does
// not hide a larger one's growth.
bool MeasureInChild(const Options& opt, uint64_t refs, Result* out) {
  int fds[2];
  if (::pipe(fds) != 0) return false;
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    ::close(fds[0]);
    Result r = Measure(opt, refs);
    ssize_t n = ::write(fds[1], &r, sizeof r);
    ::_exit(n == sizeof r ? 0 : 1);
  }
  ::close(fds[1]);
  ssize_t n = ::read(fds[0], out, sizeof *out);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return n == sizeof *out && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
         out->ok;
}

std::vector<uint64_t> ParseSizes(const char* s) {
  std::vector<uint64_t> out;
  for (const char* p = s; *p != 0;) {
    char* end = nullptr;
    out.push_back(std::strtoull(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p != 0) break;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--sizes") {
      opt.sizes = ParseSizes(argv[i + 1]);
    } else if (flag == "--destinations") {
      opt.destinations = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    } else if (flag == "--passes") {
      opt.passes = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--cycles") {
      opt.cycles = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: bench_queue_scale [--sizes 10000,100000,1000000] "
                   "[--destinations 10000] [--passes 21] [--cycles 50000]\n");
      return 64;
    }
  }
  if (opt.destinations == 0 || opt.sizes.empty()) return 64;
  std::vector<Result> results;
  for (uint64_t refs : opt.sizes) {
    Result r;
    if (!MeasureInChild(opt, refs, &r)) {
      std::fprintf(stderr, "queue_scale: the run at %" PRIu64 " refs failed\n",
                   refs);
      return 1;
    }
    results.push_back(r);
  }
  std::printf(
      "destination table, %u destinations, %d passes x %" PRIu64
      " selections (Next + Enqueue of a replacement + Complete(kAnswered))\n",
      opt.destinations, opt.passes, opt.cycles);
  std::printf("%12s %12s %14s %12s %12s %12s %14s\n", "queued refs",
              "destinations", "ns/selection", "min ns", "max ns", "fill ns/ref",
              "RSS bytes/ref");
  for (const Result& r : results) {
    std::printf("%12" PRIu64 " %12" PRIu64
                " %14.1f %12.1f %12.1f %12.1f %14.1f\n",
                r.refs, r.destinations, r.ns_per_selection, r.min_ns, r.max_ns,
                r.fill_ns_per_ref, r.rss_bytes_per_ref);
  }
  for (const Result& r : results) {
    std::printf("queue_scale_ns_per_selection_%" PRIu64 ": %.1f\n", r.refs,
                r.ns_per_selection);
    std::printf("queue_scale_rss_bytes_per_ref_%" PRIu64 ": %.1f\n", r.refs,
                r.rss_bytes_per_ref);
    std::printf("queue_scale_rss_kb_%" PRIu64 ": %" PRId64 "\n", r.refs,
                r.rss_full_kb);
  }
  // The slope between sizes: the cost of one more queued ref, without the
  // per-destination base (10,000 destinations are in every run).
  for (size_t i = 1; i < results.size(); ++i) {
    const Result& a = results[i - 1];
    const Result& b = results[i];
    if (b.refs <= a.refs) continue;
    std::printf("queue_scale_rss_slope_bytes_per_ref_%" PRIu64 "_to_%" PRIu64
                ": %.1f\n",
                a.refs, b.refs,
                static_cast<double>(b.rss_full_kb - a.rss_full_kb) * 1024.0 /
                    static_cast<double>(b.refs - a.refs));
  }
  const Result& small = results.front();
  const Result& large = results.back();
  std::printf("queue_scale_selection_cost_ratio_largest_over_smallest: %.2f\n",
              large.ns_per_selection / small.ns_per_selection);
  return 0;
}
