// inject_load.cc: mailfarm-bench-inject, the load generator of bench/inject.
// N client threads, each on its own inject.sock connection, send messages
// of a given size back to back for a given time and count durable acks.
// Also measures the disk's raw fdatasync rate (--fsync_dir) for comparison.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "farm/inject_client.h"

DEFINE_string(socket, "", "inject.sock of the scheduler under test");
DEFINE_int32(clients, 1, "concurrent connections");
DEFINE_double(seconds, 5, "how long to inject");
DEFINE_int32(size, 5120, "message size in bytes");
DEFINE_int64(count, 0,
             "stop after this many messages in all (0: run for --seconds)");
DEFINE_string(recipient, "bench@example.org", "recipient of every message");
DEFINE_string(fsync_dir, "",
              "measure write(5 KB)+fdatasync on a file here instead");
DEFINE_bool(fsync_overwrite, false,
            "with --fsync_dir: overwrite an already written 1 MiB ring "
            "instead of appending (no size or extent change: the device's "
            "cache flush alone)");

namespace {

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int MeasureFsync() {
  std::string path = FLAGS_fsync_dir + "/fsync-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror(path.c_str());
    return 1;
  }
  std::string block(static_cast<size_t>(FLAGS_size), 'x');
  const off_t ring = 1 << 20;
  if (FLAGS_fsync_overwrite) {
    std::string zeros(static_cast<size_t>(ring), '\0');
    if (::pwrite(fd, zeros.data(), zeros.size(), 0) != ring ||
        ::fdatasync(fd) != 0) {
      std::perror("preparing the ring");
      return 1;
    }
  }
  long n = 0;
  off_t offset = 0;
  double start = Now(), end = start + FLAGS_seconds;
  while (Now() < end) {
    // Appending, like a file written once per message: new data and a size
    // change each time. Overwriting, like the spool journal: data only.
    ssize_t wrote;
    if (FLAGS_fsync_overwrite) {
      if (offset + static_cast<off_t>(block.size()) > ring) offset = 0;
      wrote = ::pwrite(fd, block.data(), block.size(), offset);
      offset += static_cast<off_t>(block.size());
    } else {
      wrote = ::write(fd, block.data(), block.size());
    }
    if (wrote < 0 || ::fdatasync(fd) != 0) {
      std::perror("write/fdatasync");
      return 1;
    }
    ++n;
  }
  double elapsed = Now() - start;
  ::close(fd);
  ::unlink(path.c_str());
  std::printf("fdatasync_per_s %.1f\n", static_cast<double>(n) / elapsed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!FLAGS_fsync_dir.empty()) return MeasureFsync();
  std::string body = "Subject: bench\r\nFrom: bench@example.com\r\n\r\n";
  while (body.size() < static_cast<size_t>(FLAGS_size))
    body += std::string(76, 'x') + "\r\n";
  body.resize(static_cast<size_t>(FLAGS_size) - 2);
  body += "\r\n";
  std::atomic<long> acked{0}, failed{0}, issued{0};
  double start = Now(), end = start + FLAGS_seconds;
  std::vector<std::thread> threads;
  // Per client: the time from the first byte sent to the durable ack of each
  // accepted injection.
  std::vector<std::vector<double>> latencies(FLAGS_clients);
  for (int c = 0; c < FLAGS_clients; ++c) {
    threads.emplace_back([&, c] {
      auto client = farm::InjectClient::Connect(FLAGS_socket);
      if (!client.ok()) {
        std::fprintf(stderr, "%s\n", client.status().message().c_str());
        ++failed;
        return;
      }
      mailfarm::InjectRequest request;
      request.set_sender("bench@example.com");
      request.add_recipients(FLAGS_recipient);
      request.set_size(body.size());
      while (FLAGS_count > 0 ? issued++ < FLAGS_count : Now() < end) {
        double sent = Now();
        if (!(*client)->Begin(request).ok() || !(*client)->Write(body).ok()) {
          ++failed;
          return;
        }
        auto reply = (*client)->Finish(60000);
        if (reply.ok() && reply->status() == mailfarm::InjectReply::ACCEPTED) {
          latencies[c].push_back(Now() - sent);
          ++acked;
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = Now() - start;
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto percentile_ms = [&](double p) {
    if (all.empty()) return 0.0;
    return 1000 *
           all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  std::printf(
      "clients %d acked %ld failed %ld seconds %.2f injections_per_s %.1f "
      "ack_ms_p50 %.2f ack_ms_p99 %.2f ack_ms_max %.2f\n",
      FLAGS_clients, acked.load(), failed.load(), elapsed,
      static_cast<double>(acked.load()) / elapsed, percentile_ms(0.5),
      percentile_ms(0.99), all.empty() ? 0.0 : 1000 * all.back());
  return failed.load() > 0 ? 1 : 0;
}
