// gen_spool.cc: writes N valid queue files (one recipient, a body of the given
// size) straight into spool_dir/queue/, as a scheduler would have left them
// after a crash. bench/replay/run uses it to time mailfarm-replay, and
// bench/queue_scale/run_scheduler (with --domains) to fill the destination
// table.
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
DEFINE_int32(body_bytes, 5120, "Body size of each message.");
DEFINE_int32(domains, 0,
             "0: recipients are user0..user999@localhost; N: they are spread "
             "over d0.example .. d<N-1>.example.");

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  namespace sched = mailfarm::scheduler;
  if (FLAGS_spool.empty()) {
    std::fprintf(stderr,
                 "usage: gen_spool --spool DIR [--jobs N] [--body_bytes B] "
                 "[--domains D]\n");
    return 64;
  }
  std::string body;
  body.reserve(FLAGS_body_bytes);
  body +=
      "From: bench@example.org\r\nTo: user@localhost\r\nSubject: replay "
      "bench\r\n\r\n";
  while (body.size() + 2 < static_cast<size_t>(FLAGS_body_bytes)) {
    body += std::string(
                std::min<size_t>(76, FLAGS_body_bytes - body.size() - 2), 'x') +
            "\r\n";
  }
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
    rcpt->set_address(FLAGS_domains > 0
                          ? "user" + std::to_string(i / FLAGS_domains) + "@d" +
                                std::to_string(i % FLAGS_domains) + ".example"
                          : "user" + std::to_string(i % 1000) + "@localhost");
    envelope.set_arrival_unix_ms(now);
    envelope.set_body_size(body.size());
    envelope.set_body_crc32c(sched::Crc32c(body));
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
              std::max(FLAGS_domains, 1), queue.c_str());
  return 0;
}
