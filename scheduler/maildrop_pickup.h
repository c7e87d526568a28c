// maildrop_pickup.h: the scheduler's pickup of spool/maildrop/ (Postfix's
// pickup daemon): messages sendmail left there through mailfarm-postdrop
// while inject.sock was unreachable are queued as injections, durably, and
// only then removed. Scans at start, on every inotify event of the
// directory, and once a minute. Used by scheduler.cc.
#ifndef MAILFARM_SCHEDULER_MAILDROP_PICKUP_H_
#define MAILFARM_SCHEDULER_MAILDROP_PICKUP_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "scheduler/inject_server.h"
#include "scheduler/loop_tasks.h"
#include "scheduler/queue_manager.h"

namespace mailfarm::scheduler {

// Every file is untrusted input (any local user may write one through
// postdrop): it is read only when it is a regular file of bounded size, and
// one that does not decode or fails the injection checks is moved to
// spool/corrupt/maildrop.<name> with a log line. A file whose injection
// fails for a temporary reason (disk full) stays for the next scan.
//
// The directory is read on a thread of its own; injections are handed to
// the queue on the loop thread through `tasks`. Start and Stop are called on
// the loop thread; `queue` and `tasks` must outlive the pickup.
class MaildropPickup {
 public:
  MaildropPickup(std::string spool_dir, QueueManager* queue, LoopTasks* tasks,
                 InjectLimits limits);
  ~MaildropPickup();  // Stop()
  MaildropPickup(const MaildropPickup&) = delete;
  MaildropPickup& operator=(const MaildropPickup&) = delete;

  // Creates spool/maildrop/ when missing (mode 1730: others' files cannot be
  // listed or removed) and starts the thread, which scans at once.
  farm::Status Start();
  // Ends the thread; a message being queued is waited for (bounded), a
  // file not yet removed is picked up again at the next start.
  void Stop();

 private:
  void Run();
  void ScanOnce();
  void PickUp(const std::string& name);
  void Quarantine(const std::string& name, const std::string& why);
  // Hands the message to the queue on the loop thread; waits for the result.
  farm::StatusOr<std::string> InjectOnLoop(spool::Envelope envelope,
                                           std::string body);

  std::string spool_dir_;
  QueueManager* queue_;
  LoopTasks* tasks_;
  InjectLimits limits_;
  farm::UniqueFd dir_;      // spool/maildrop
  farm::UniqueFd corrupt_;  // spool/corrupt
  farm::UniqueFd inotify_;
  farm::UniqueFd wake_;  // eventfd: Stop
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_MAILDROP_PICKUP_H_
