// control_server.h: the scheduler's control.sock, where mailfarmctl and
// mailfarm-replay send one ControlRequest and read ControlReply frames (queue
// list/show, flush, delete, hold, release, bounce, stats, reload, stop, adopt).
// Peer credentials are checked against identity.control_uids. Loop thread only.
#ifndef MAILFARM_SCHEDULER_CONTROL_SERVER_H_
#define MAILFARM_SCHEDULER_CONTROL_SERVER_H_

#include <event2/event.h>
#include <sys/types.h>

#include <functional>
#include <list>
#include <memory>
#include <vector>

#include "farm/event_acceptor.h"
#include "farm/event_channel.h"
#include "farm/unique_fd.h"
#include "scheduler/queue_manager.h"

namespace mailfarm::scheduler {

class ControlServer {
 public:
  struct Hooks {
    std::function<std::string()> reload;  // returns a status line
    std::function<void()> stop;
    std::function<void(Stats*)> extra_stats;  // farm and store figures
  };
  ControlServer(event_base* base, farm::UniqueFd listener, QueueManager* queue,
                std::vector<uid_t> uids, size_t max_frame_bytes, Hooks hooks);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  void SetUids(std::vector<uid_t> uids) { uids_ = std::move(uids); }

 private:
  struct Conn;
  // Checks a new connection's peer, then serves it.
  void Admit(farm::UniqueFd fd);
  void OnRequest(Conn* conn, std::string_view payload);
  void Send(uint64_t serial, const ControlReply& reply, bool close_after);
  void Close(Conn* conn);
  Conn* Lookup(uint64_t serial);

  event_base* base_;
  std::unique_ptr<farm::EventAcceptor> acceptor_;
  QueueManager* queue_;
  std::vector<uid_t> uids_;
  size_t max_frame_bytes_;
  Hooks hooks_;
  std::list<std::unique_ptr<Conn>> conns_;
  uint64_t next_serial_ = 0;
  std::shared_ptr<bool> alive_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_CONTROL_SERVER_H_
