// farm_dispatch.cc: round trips per second through a no-op farm
// (mailfarm-echo-farm) over its Unix socket with persistent connections, beside
// the raw socketpair round-trip rate measured in the same run (the ceiling).
// Run by bench/farm_dispatch/run; see bench/README.md.
#include <gflags/gflags.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "farm/framed_stream.h"
#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "wire.pb.h"

DEFINE_string(socket, "", "The echo farm's socket (run_dir/echo.sock).");
DEFINE_string(connections, "1,8,32", "Comma-separated connection counts to measure.");
DEFINE_double(seconds, 3.0, "Measuring time per figure.");

namespace {

using Clock = std::chrono::steady_clock;

// Runs `body(i, stop)` on n threads for FLAGS_seconds; returns total ops/s.
template <typename Body>
double RunFor(int n, Body body) {
  std::atomic<bool> stop{false};
  std::vector<long> counts(n, 0);
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] { counts[i] = body(i, stop); });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(FLAGS_seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  long total = 0;
  for (long c : counts) total += c;
  return total / secs;
}

// The ceiling: n pairs of threads bouncing a frame-sized message over socketpairs.
double SocketpairRate(int n, size_t message_size) {
  return RunFor(n, [message_size](int, std::atomic<bool>& stop) -> long {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 0;
    farm::UniqueFd a(fds[0]), b(fds[1]);
    std::thread echo([&] {
      std::vector<char> buf(message_size);
      for (;;) {
        ssize_t got = ::read(b.get(), buf.data(), buf.size());
        if (got <= 0) return;
        if (!farm::WriteFull(b.get(), buf.data(), static_cast<size_t>(got)).ok()) return;
      }
    });
    std::vector<char> buf(message_size, 'x');
    long count = 0;
    while (!stop) {
      if (!farm::WriteFull(a.get(), buf.data(), buf.size()).ok()) break;
      size_t have = 0;
      while (have < message_size) {
        ssize_t got = ::read(a.get(), buf.data() + have, message_size - have);
        if (got <= 0) break;
        have += static_cast<size_t>(got);
      }
      ++count;
    }
    ::shutdown(a.get(), SHUT_RDWR);
    echo.join();
    return count;
  });
}

double FarmRate(int n) {
  return RunFor(n, [](int i, std::atomic<bool>& stop) -> long {
    auto fd = farm::ConnectUnix(FLAGS_socket);
    if (!fd.ok()) {
      std::fprintf(stderr, "%s\n", fd.status().message().c_str());
      return 0;
    }
    farm::FramedStream stream(fd->get(), 1 << 20);
    mailfarm::ChildFrame hello;
    if (!stream.Read(&hello, 10000).ok()) return 0;
    mailfarm::Job job;
    job.set_qid("bench-" + std::to_string(i));
    job.set_stage(mailfarm::STAGE_DELIVER);
    mailfarm::ChildFrame reply;
    long count = 0;
    while (!stop) {
      if (!stream.Write(job).ok() || !stream.Read(&reply, 10000).ok()) break;
      ++count;
    }
    return count;
  });
}

}  // namespace

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_socket.empty()) {
    std::fprintf(stderr, "usage: farm_dispatch --socket run_dir/echo.sock\n");
    return 64;
  }
  mailfarm::Job probe;
  probe.set_qid("bench-00");
  probe.set_stage(mailfarm::STAGE_DELIVER);
  std::string frame;
  farm::AppendFrame(probe, &frame);
  std::printf("%-12s %16s %16s %8s\n", "connections", "farm rtt/s", "socketpair rtt/s", "ratio");
  std::stringstream list(FLAGS_connections);
  std::string item;
  std::string machine;
  while (std::getline(list, item, ',')) {
    int n = std::stoi(item);
    double ceiling = SocketpairRate(n, frame.size());
    double farm = FarmRate(n);
    std::printf("%-12d %16.0f %16.0f %7.0f%%\n", n, farm, ceiling, 100.0 * farm / ceiling);
    char line[256];
    std::snprintf(line, sizeof(line),
                  "farm_rtt_per_s_c%d: %.0f\nsocketpair_rtt_per_s_c%d: %.0f\nratio_c%d: %.3f\n", n,
                  farm, n, ceiling, n, farm / ceiling);
    machine += line;
  }
  std::printf("%s", machine.c_str());
  return 0;
}
