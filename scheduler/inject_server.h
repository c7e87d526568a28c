// inject_server.h: the scheduler's inject.sock. Each connection sends
// InjectRequest, body chunks and the last chunk; the reply comes only after
// the queue manager reports the message durable. A body past
// kBodyInMemoryBytes streams to a spool file while it arrives (BodySpill), so
// memory per connection stays bounded; the bytes being received by all
// connections are capped. Limits (message size, recipients, frame size,
// connections, bytes in flight) give precise replies; the peer's credentials
// are checked first. Loop thread only.
#ifndef MAILFARM_SCHEDULER_INJECT_SERVER_H_
#define MAILFARM_SCHEDULER_INJECT_SERVER_H_

#include <event2/event.h>
#include <sys/types.h>

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "farm/clock.h"
#include "farm/event_acceptor.h"
#include "farm/event_channel.h"
#include "farm/sockets.h"
#include "farm/status.h"
#include "farm/unique_fd.h"
#include "scheduler/queue_manager.h"
#include "scheduler/spool_store.h"

namespace mailfarm::scheduler {

struct InjectLimits {
  uint64_t max_message_bytes = 52428800;
  uint32_t max_recipients = 1000;
  uint32_t max_connections = 256;
  size_t max_frame_bytes = 1 << 20;
  // The body bytes of every message being received or committed, all
  // connections together; a message that would pass it is refused with
  // 4.3.1 (a tempfail: smtpd answers 452). It bounds the disk that clients
  // can hold in spool/tmp/; memory is bounded per connection.
  uint64_t max_inflight_bytes = 1024ull << 20;
  std::vector<uid_t> uids;  // besides root and our own uid
  std::vector<gid_t> gids;
};

// Checks an address as the scheduler accepts it: "" (the null sender) only as
// a sender, otherwise local@domain or a bare local part, no spaces, controls
// or angle brackets, at most 320 bytes. Returns the problem, or "" when fine.
std::string AddressProblem(const std::string& address, bool is_sender);

// The client description a message gets from the peer `cred`: what it
// claims when it is root or the service account (smtpd), else protocol
// "local" and nothing else. Either way with the peer's real uid.
ClientInfo TrustedClientInfo(const ClientInfo& claimed,
                             const farm::PeerCred& cred);

// Why an injection is refused, before its message is read to the end.
struct InjectRefusal {
  std::string dsn;  // 5.x.y: every check here is permanent
  std::string text;
};

// The checks every injection passes, whether it came over inject.sock or
// from spool/maildrop/: recipients present and within max_recipients, the
// declared size within max_message_bytes, well-formed addresses. The first
// problem found, or nullopt.
std::optional<InjectRefusal> CheckInjectRequest(const InjectRequest& request,
                                                const InjectLimits& limits);

// The envelope of a checked request: recipients numbered in order, client
// information as TrustedClientInfo allows for `cred` (the peer's SO_PEERCRED,
// or for a maildrop file its owner), never more than the kernel vouches for.
spool::Envelope EnvelopeFromRequest(const InjectRequest& request,
                                    const farm::PeerCred& cred);

class InjectServer {
 public:
  // A body up to this size is kept in memory (and may go through the spool
  // journal, SpoolJournal::kMaxFileBytes); a larger one is written to a
  // spill file as it arrives, this much at a time.
  static constexpr size_t kBodyInMemoryBytes = 256 * 1024;

  // Takes the listening socket (bound by the caller). `store` (the queue's)
  // holds the spilled bodies; it must outlive the server.
  InjectServer(event_base* base, farm::UniqueFd listener, QueueManager* queue,
               SpoolStore* store, farm::Clock* clock, InjectLimits limits);
  ~InjectServer();
  InjectServer(const InjectServer&) = delete;
  InjectServer& operator=(const InjectServer&) = delete;

  void SetLimits(InjectLimits limits) { limits_ = std::move(limits); }
  // Stops accepting (shutdown); open connections finish their message.
  void StopAccepting();
  // Shutdown: no new connections and no more frames read; messages already
  // complete still get their replies.
  void Quiesce();
  // Reply bytes not yet written to the clients.
  size_t PendingOutput() const;
  size_t connections() const { return conns_.size(); }
  // Body bytes of the messages being received or committed now.
  uint64_t inflight_bytes() const { return inflight_bytes_; }

 private:
  struct Conn;
  // Checks a new connection's peer and the connection limit, then serves it.
  void Admit(farm::UniqueFd fd);
  void OnFrame(Conn* conn, std::string_view payload);
  void OnRequest(Conn* conn, const InjectRequest& request);
  void OnChunk(Conn* conn, BodyChunk* chunk);  // may take chunk's data
  void TakeChunk(Conn* conn, BodyChunk* chunk);
  void Refuse(Conn* conn, InjectReply::Status status, const char* dsn,
              std::string text);
  void StartSpillWrite(Conn* conn);
  void OnSpillWritten(uint64_t serial, const farm::Status& status);
  void FinishMessage(Conn* conn);
  void DropBody(Conn* conn);
  Conn* Find(uint64_t serial);
  void Resume(Conn* conn);
  void Commit(Conn* conn);
  void Reply(Conn* conn, InjectReply::Status status, const std::string& dsn,
             const std::string& text, const std::string& qid = "");
  void Close(Conn* conn);

  event_base* base_;
  std::unique_ptr<farm::EventAcceptor> acceptor_;  // null once stopping
  QueueManager* queue_;
  SpoolStore* store_;
  farm::Clock* clock_;
  InjectLimits limits_;
  std::list<std::unique_ptr<Conn>> conns_;
  uint64_t next_serial_ = 0;
  uint64_t inflight_bytes_ = 0;
  std::shared_ptr<bool> alive_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_INJECT_SERVER_H_
