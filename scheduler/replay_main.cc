// replay_main.cc: mailfarm-replay, the run-once recovery tool. Walks the spool,
// quarantines what is not a valid queue file, and hands every valid job to the
// running scheduler over control.sock in Adopt batches. mailfarmd runs it once
// after the scheduler is up; `--check` only reads and reports (an fsck).
#include <dirent.h>
#include <fcntl.h>
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "farm/clock.h"
#include "farm/config.h"
#include "farm/framed_stream.h"
#include "farm/program.h"
#include "farm/sockets.h"
#include "scheduler/queue_id.h"
#include "scheduler/spool_file.h"
#include "wire.pb.h"

DEFINE_bool(check, false,
            "Only read and report; change nothing and contact no scheduler.");
DEFINE_int32(batch, 500, "Jobs per Adopt message.");
DEFINE_int32(timeout_ms, 120000,
             "How long to wait for the scheduler to answer one batch.");

namespace {

namespace sched = mailfarm::scheduler;

const char kHelp[] = R"(NAME
    mailfarm-replay - hand the jobs found in the spool back to the scheduler

SYNOPSIS
    mailfarm-replay [--config FILE] [--check] [--batch N]

DESCRIPTION
    Run once after a restart (mailfarmd does so when supervisor.run_replay is
    on; etc/systemd/mailfarm-replay.service otherwise). It walks
    spool_dir/queue/ once and validates every queue file: magic, lengths,
    envelope and body checksums, recipient indexes, file name. A corrupt,
    truncated, zero-length or foreign file is moved to spool_dir/corrupt/
    with a log line each. A file the crash tore before it reached the disk
    (shorter than its header says, or with unwritten zero blocks), or whose
    envelope names another queue id (the scheduler rewrites removed jobs'
    files for new messages; a crash can leave old bytes under a new name), is
    marked in that line: such a file was either never acknowledged, or is
    held by the spool journal, from which the scheduler restored it when it
    opened the spool (before this tool runs, under mailfarmd). Every valid job is handed to the running scheduler
    over control.sock (Adopt batches): the scheduler resumes it at the stage
    it had reached. A deferred job keeps its next attempt time, a job that was
    running is retried, recipients recorded as delivered or bounced are not
    delivered again. Jobs the scheduler already holds are counted as
    "already known", so running the tool twice adopts nothing twice.

    Leftover files in spool_dir/tmp/ (injections never acknowledged) are
    removed when no scheduler holds the spool lock; a running scheduler removed
    them itself when it opened the spool.

OPTIONS
    --config FILE   the configuration (default /etc/mailfarm/mailfarm.conf)
    --check         read-only: validate and report, move nothing, adopt nothing
    --batch N       jobs per Adopt message (default 500)
    --timeout_ms N  wait for the scheduler's answer to one batch (default 120000)

OUTPUT
    One summary line: scanned, valid, adopted, already known, quarantined
    (or corrupt, with --check), temp files removed, failed.

EXIT STATUS
    0   every valid job was adopted or already known (--check: no corrupt file)
    1   --check found corrupt files
    69  the scheduler is not reachable
    74  an I/O error while reading the spool or quarantining
    75  the scheduler refused or failed some jobs, or timed out; run again
    78  configuration error
)";

struct Counts {
  uint64_t scanned = 0, valid = 0, adopted = 0, already_known = 0,
           quarantined = 0;
  uint64_t tmp_removed = 0, failed = 0, vanished = 0;
};

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// True when a queue file that failed validation looks like one the crash
// caught between its rename into queue/ and its sync: shorter than its own
// header says, or with a block of zeros where its bytes belong (space the file
// system allocated but never got the data for). The scheduler renames a new
// file into queue/ before the batch's sync and acknowledges it only after the
// sync, and a synced file does not lose its bytes: such a file was never
// acknowledged (its sender got no 250). A file of full length with a checksum
// mismatch and no zero block is damage of another kind.
bool TornBeforeItsSync(const std::string& path, const std::string& why) {
  if (why.find("truncated") != std::string::npos) return true;
  farm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  constexpr size_t kBlock = 4096;
  std::vector<char> block(kBlock);
  for (off_t offset = 0;; offset += kBlock) {
    ssize_t n = ::pread(fd.get(), block.data(), kBlock, offset);
    if (n <= 0) return false;
    if (std::all_of(block.begin(), block.begin() + n,
                    [](char c) { return c == 0; }))
      return true;
  }
}

enum class Moved { kMoved, kVanished, kFailed };

// Moves a bad file aside under a name that never collides. A file gone
// meanwhile was a job the running scheduler delivered and removed while this
// tool read it (its file can even have been rewritten for a newer message
// under that message's name, which is why it looked wrong): nothing to move.
Moved Quarantine(const std::string& spool, const std::string& path,
                 const std::string& why) {
  std::string corrupt = spool + "/corrupt";
  ::mkdir(corrupt.c_str(), 0700);
  std::string base = path.substr(path.rfind('/') + 1);
  std::string target = corrupt + "/" + base + "." +
                       std::to_string(farm::RealClock()->NowUnixMs());
  if (::rename(path.c_str(), target.c_str()) != 0) {
    if (errno == ENOENT) {
      LOG(INFO) << path << " vanished while being read (removed by the "
                << "scheduler); not quarantined";
      return Moved::kVanished;
    }
    PLOG(ERROR) << "cannot quarantine " << path;
    return Moved::kFailed;
  }
  LOG(WARNING) << "quarantined " << path << " -> " << target << ": " << why;
  return Moved::kMoved;
}

// Removes spool/tmp leftovers, but only when no scheduler holds the spool
// lock: a running scheduler may be writing them right now.
void CleanTmp(const std::string& spool, Counts* counts) {
  farm::UniqueFd lock(::open((spool + "/lock").c_str(), O_RDWR | O_CLOEXEC));
  if (!lock || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return;
  for (const std::string& name : ListDir(spool + "/tmp")) {
    std::string path = spool + "/tmp/" + name;
    if (::unlink(path.c_str()) == 0) {
      ++counts->tmp_removed;
      LOG(INFO) << "removed unacknowledged temp file " << path;
    }
  }
}

class Adopter {
 public:
  Adopter(const farm::Config& config, Counts* counts)
      : config_(config), counts_(counts) {}

  // Returns 0, or the exit code that ends the run.
  int Add(const std::string& qid, const std::string& path) {
    auto* job = batch_.add_jobs();
    job->set_qid(qid);
    job->set_path(path);
    return batch_.jobs_size() >= FLAGS_batch ? Flush() : 0;
  }

  int Flush() {
    if (batch_.jobs_size() == 0) return 0;
    // control.sock takes one request per connection: a fresh one per batch.
    auto fd = farm::ConnectUnix(farm::ControlSocketPath(config_));
    if (!fd.ok()) {
      LOG(ERROR) << "the scheduler is not reachable: " << fd.status().message();
      return farm::kExitUnavailable;
    }
    farm::FramedStream stream(fd->get(), 64 << 20);
    mailfarm::ControlRequest request;
    *request.mutable_adopt() = std::move(batch_);
    batch_.Clear();
    int sent = request.adopt().jobs_size();
    mailfarm::ControlReply reply;
    farm::Status status = stream.Write(request);
    if (status.ok()) status = stream.Read(&reply, FLAGS_timeout_ms);
    if (!status.ok()) {
      LOG(ERROR) << "adopting a batch of " << sent
                 << " jobs failed: " << status.message();
      counts_->failed += sent;
      return status.code() == farm::Status::Code::kTempFail
                 ? farm::kExitTempFail
                 : farm::kExitUnavailable;
    }
    if (reply.status() != mailfarm::ControlReply::OK) {
      LOG(ERROR) << "the scheduler refused a batch of " << sent
                 << " jobs: " << reply.text();
      counts_->failed += sent;
      return farm::kExitTempFail;
    }
    counts_->adopted += reply.affected();
    counts_->already_known += reply.already_known();
    uint64_t missing =
        static_cast<uint64_t>(sent) - reply.affected() - reply.already_known();
    if (missing > 0) {
      LOG(WARNING) << missing
                   << " jobs of a batch were not adopted: " << reply.text();
      counts_->failed += missing;
    }
    return 0;
  }

 private:
  const farm::Config& config_;
  Counts* counts_;
  mailfarm::AdoptBatch batch_;
};

}  // namespace

int main(int argc, char** argv) {
  farm::InitProgram(&argc, &argv, kHelp);
  farm::Config config = farm::LoadConfigOrDie();
  std::string spool = farm::SpoolDir(config);
  std::string queue = spool + "/queue";
  if (!IsDirectory(queue)) {
    std::printf("mailfarm-replay: %s does not exist: nothing to replay\n",
                queue.c_str());
    return farm::kExitOk;
  }
  Counts counts;
  if (!FLAGS_check) CleanTmp(spool, &counts);
  Adopter adopter(config, &counts);
  int rc = 0;
  uint64_t corrupt = 0;
  for (const std::string& hash : ListDir(queue)) {
    std::string dir = queue + "/" + hash;
    if (!IsDirectory(dir)) {
      ++counts.scanned;
      ++corrupt;
      if (!FLAGS_check &&
          Quarantine(spool, dir, "not a queue directory") == Moved::kMoved)
        ++counts.quarantined;
      continue;
    }
    for (const std::string& name : ListDir(dir)) {
      std::string path = dir + "/" + name;
      ++counts.scanned;
      std::string why;
      if (!sched::IsValidQueueId(name)) {
        why = "foreign file (not a queue id)";
      } else if (IsDirectory(path)) {
        why = "a directory where a queue file belongs";
      } else {
        auto file = sched::ReadQueueFile(path);
        if (file.ok()) {
          ++counts.valid;
          if (!FLAGS_check && (rc = adopter.Add(name, path)) != 0) break;
          continue;
        }
        if (file.status().code() == farm::Status::Code::kNotFound) {
          ++counts
                .vanished;  // delivered and removed by the scheduler meanwhile
          continue;
        }
        why = file.status().message();
        if (TornBeforeItsSync(path, why)) {
          why +=
              " (torn by a crash before it reached the disk: unless the "
              "spool journal holds it, which the scheduler restores from when "
              "it opens the spool, this message was never acknowledged)";
        } else if (why.ends_with("does not match the file name")) {
          why +=
              " (probably a reused spool file that a crash left holding an "
              "earlier job's bytes: unless the spool journal holds the "
              "message under this name, it was never acknowledged)";
        }
      }
      ++corrupt;
      if (FLAGS_check) {
        LOG(WARNING) << "corrupt: " << path << ": " << why;
      } else {
        switch (Quarantine(spool, path, why)) {
          case Moved::kMoved:
            ++counts.quarantined;
            break;
          case Moved::kVanished:
            --corrupt;
            ++counts.vanished;
            break;
          case Moved::kFailed:
            rc = farm::kExitIoErr;
            break;
        }
      }
    }
    if (rc != 0 && rc != farm::kExitIoErr) break;
  }
  if (rc == 0 || rc == farm::kExitIoErr) {
    int flush_rc = adopter.Flush();
    if (flush_rc != 0) rc = flush_rc;
  }
  if (FLAGS_check) {
    std::printf(
        "mailfarm-replay --check: scanned %llu, valid %llu, corrupt %llu\n",
        static_cast<unsigned long long>(counts.scanned),
        static_cast<unsigned long long>(counts.valid),
        static_cast<unsigned long long>(corrupt));
    return corrupt > 0 ? 1 : farm::kExitOk;
  }
  std::printf(
      "mailfarm-replay: scanned %llu, valid %llu, adopted %llu, already known "
      "%llu, "
      "quarantined %llu, temp files removed %llu, failed %llu\n",
      static_cast<unsigned long long>(counts.scanned),
      static_cast<unsigned long long>(counts.valid),
      static_cast<unsigned long long>(counts.adopted),
      static_cast<unsigned long long>(counts.already_known),
      static_cast<unsigned long long>(counts.quarantined),
      static_cast<unsigned long long>(counts.tmp_removed),
      static_cast<unsigned long long>(counts.failed));
  if (rc == 0 && counts.failed > 0) rc = farm::kExitTempFail;
  return rc;
}
