// gen_dest_spool.cc: writes N valid queue files (one recipient each, small
// bodies) whose recipients are spread round robin over D domains, straight
// into spool_dir/queue/ as a crashed scheduler would leave them.
// bench/queue_scale/run_scheduler replays them into a real scheduler.
#include <fcntl.h>
#include <gflags/gflags.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "farm/clock.h"
#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "scheduler/crc32c.h"
#include "scheduler/queue_id.h"
#include "scheduler/spool_file.h"

DEFINE_string(spool, "", "The spool directory to fill.");
DEFINE_int32(jobs, 100000, "How many queue files to write.");
DEFINE_int32(domains, 10000, "Recipients go to d0.example .. d<N-1>.example.");
DEFINE_int32(body_bytes, 256, "Body size of each message.");

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  namespace sched = mailfarm::scheduler;
  if (FLAGS_spool.empty() || FLAGS_domains <= 0) {
    std::fprintf(stderr,
                 "usage: gen_dest_spool --spool DIR [--jobs N] [--domains D] "
                 "[--body_bytes B]\n");
    return 64;
  }
  std::string body =
      "From: bench@example.org\r\nTo: someone\r\nSubject: queue scale\r\n\r\n";
  while (body.size() + 2 < static_cast<size_t>(FLAGS_body_bytes)) {
    body += std::string(
                std::min<size_t>(76, FLAGS_body_bytes - body.size() - 2), 'x') +
            "\r\n";
  }
  uint32_t crc = sched::Crc32c(body);
  ::mkdir(FLAGS_spool.c_str(), 0700);
  std::string queue = FLAGS_spool + "/queue";
  ::mkdir(queue.c_str(), 0700);
  sched::QueueIdGenerator ids;
  int64_t now = farm::RealClock()->NowUnixMs();
  for (int i = 0; i < FLAGS_jobs; ++i) {
    mailfarm::spool::Envelope envelope;
    envelope.set_qid(ids.Next(now));
    envelope.set_sender("bench@example.org");
    auto* rcpt = envelope.add_recipients();
    rcpt->set_index(0);
    rcpt->set_address("user" + std::to_string(i / FLAGS_domains) + "@d" +
                      std::to_string(i % FLAGS_domains) + ".example");
    envelope.set_arrival_unix_ms(now);
    envelope.set_body_size(body.size());
    envelope.set_body_crc32c(crc);
    std::string dir =
        queue + "/" + std::string(1, sched::QueueIdHashDir(envelope.qid()));
    ::mkdir(dir.c_str(), 0700);
    std::string path = dir + "/" + envelope.qid();
    std::string data = sched::EncodeQueueHeader(envelope) + body;
    farm::UniqueFd fd(
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd || !farm::WriteFull(fd.get(), data.data(), data.size()).ok()) {
      std::perror(path.c_str());
      return 74;
    }
  }
  ::sync();
  std::printf("wrote %d queue files over %d domains under %s\n", FLAGS_jobs,
              FLAGS_domains, queue.c_str());
  return 0;
}
