// inject_server.cc: inject.sock, one state machine per connection:
// kIdle -(request)-> kBody -(last chunk)-> kCommitting -(durable)-> kIdle.
// In kBody a large body goes to its spill file one write at a time; chunks
// arriving meanwhile wait in memory, and past kBodyInMemoryBytes of them the
// connection stops being read until the write is done.
#include "scheduler/inject_server.h"

#include <glog/logging.h>
#include <sys/socket.h>

#include <cerrno>

#include "farm/event_acceptor.h"
#include "farm/framed_stream.h"
#include "farm/sockets.h"

namespace mailfarm::scheduler {

struct InjectServer::Conn {
  enum class State { kIdle, kBody, kCommitting };
  std::unique_ptr<farm::EventChannel> channel;
  State state = State::kIdle;
  farm::PeerCred cred;
  uint64_t serial = 0;
  spool::Envelope envelope;
  // The whole body while it is small; once spilled, the bytes waiting for the
  // next write to the spill file.
  std::string body;
  std::shared_ptr<BodySpill> spill;  // set once the body is too large
  bool writing = false;              // an AppendSpill of `spill` is outstanding
  bool last_seen = false;            // the last chunk came; finish once written
  bool paused = false;    // reading paused (spill behind, or committing)
  uint64_t received = 0;  // body bytes of this message so far
  uint64_t counted = 0;   // of those, counted in inflight_bytes_
  // A refusal decided before the end of the message, sent after the last chunk
  // (the client is still sending; replying early would desynchronise it).
  InjectReply::Status refuse = InjectReply::STATUS_UNSPECIFIED;
  std::string refuse_dsn;
  std::string refuse_text;
};

std::string AddressProblem(const std::string& address, bool is_sender) {
  if (address.empty()) return is_sender ? "" : "empty recipient address";
  if (address.size() > 320) return "address longer than 320 bytes";
  for (unsigned char c : address) {
    if (c < 0x21 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';') {
      return "address \"" + address +
             "\" contains a space, control character or <>,;";
    }
  }
  size_t at = address.rfind('@');
  if (at == 0) return "address \"" + address + "\" has an empty local part";
  if (at != std::string::npos && at + 1 == address.size()) {
    return "address \"" + address + "\" has an empty domain";
  }
  if (at != std::string::npos && address.find("..", at) != std::string::npos) {
    return "address \"" + address + "\" has an empty domain label";
  }
  return "";
}

InjectServer::InjectServer(event_base* base, farm::UniqueFd listener,
                           QueueManager* queue, SpoolStore* store,
                           farm::Clock* clock, InjectLimits limits)
    : base_(base),
      queue_(queue),
      store_(store),
      clock_(clock),
      limits_(std::move(limits)),
      alive_(std::make_shared<bool>(true)) {
  acceptor_ = std::make_unique<farm::EventAcceptor>(
      base_, std::move(listener), "inject.sock",
      [this](farm::UniqueFd fd) { Admit(std::move(fd)); });
}

InjectServer::~InjectServer() {
  *alive_ = false;
  StopAccepting();
  conns_.clear();
}

void InjectServer::StopAccepting() { acceptor_.reset(); }

void InjectServer::Quiesce() {
  StopAccepting();
  for (auto& conn : conns_) {
    conn->paused = true;
    conn->channel->PauseReading(true);
  }
}

// Not from inside a frame callback (the channel would deliver the current
// frame again); nor once stopping.
void InjectServer::Resume(Conn* conn) {
  if (!conn->paused || acceptor_ == nullptr) return;
  conn->paused = false;
  conn->channel->PauseReading(false);  // may deliver frames, even close conn
}

size_t InjectServer::PendingOutput() const {
  size_t n = 0;
  for (const auto& conn : conns_) n += conn->channel->PendingOutputBytes();
  return n;
}

namespace {
// A refusal written straight to the new socket, before any channel exists:
// it is small and the socket buffer is empty, so it never blocks or tears.
void RefuseNow(int fd, const char* dsn, const std::string& text,
               InjectReply::Status status) {
  InjectReply reply;
  reply.set_status(status);
  reply.set_dsn(dsn);
  reply.set_text(text);
  std::string frame;
  farm::AppendFrame(reply, &frame);
  [[maybe_unused]] ssize_t n =
      ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
}
}  // namespace

ClientInfo TrustedClientInfo(const ClientInfo& claimed,
                             const farm::PeerCred& cred) {
  ClientInfo client;
  if (cred.uid == 0 || cred.uid == ::geteuid()) {
    // smtpd (the service account) or root describes the SMTP client.
    client = claimed;
    if (client.protocol().empty()) client.set_protocol("local");
  } else {
    // Anyone else in inject_group is a local submitter, whatever it claims:
    // its HELO, address or TLS would otherwise appear in a Received header.
    if (!claimed.helo().empty() || !claimed.address().empty() ||
        !claimed.hostname().empty() || !claimed.tls().empty() ||
        !claimed.sasl_username().empty() ||
        (!claimed.protocol().empty() && claimed.protocol() != "local")) {
      LOG(WARNING) << "inject.sock: uid " << cred.uid << " (pid " << cred.pid
                   << ") described an SMTP client; recorded as a local "
                      "submission instead (only root and the service account "
                      "may)";
    }
    client.set_protocol("local");
  }
  client.set_uid(cred.uid);  // what the kernel says, not the client
  return client;
}

void InjectServer::Admit(farm::UniqueFd fd) {
  auto cred = farm::GetPeerCred(fd.get());
  if (!cred.ok() || !farm::PeerAllowed(*cred, limits_.uids, limits_.gids)) {
    uid_t uid = cred.ok() ? cred->uid : static_cast<uid_t>(-1);
    LOG(WARNING)
        << "inject.sock: refused uid " << uid
        << " (not root, not us, not in identity.inject_uids or inject_group)";
    RefuseNow(fd.get(), "5.7.1",
              "permission denied: uid " + std::to_string(uid) +
                  " may not inject mail",
              InjectReply::REJECT);
    return;
  }
  if (conns_.size() >= limits_.max_connections) {
    LOG(WARNING) << "inject.sock: " << conns_.size()
                 << " connections open, refusing one more "
                    "(scheduler.max_inject_connections)";
    RefuseNow(fd.get(), "4.3.2",
              "too many concurrent inject connections (limit " +
                  std::to_string(limits_.max_connections) +
                  "), try again later",
              InjectReply::TEMPFAIL);
    return;
  }
  auto conn = std::make_unique<Conn>();
  Conn* raw = conn.get();
  raw->cred = *cred;
  raw->serial = ++next_serial_;
  raw->channel = std::make_unique<farm::EventChannel>(
      base_, std::move(fd), limits_.max_frame_bytes, "inject.sock");
  conns_.push_back(std::move(conn));
  raw->channel->Start([this, raw](std::string_view p) { OnFrame(raw, p); },
                      [this, raw](const farm::Status&) { Close(raw); });
}

void InjectServer::OnFrame(Conn* conn, std::string_view payload) {
  InjectFrame frame;
  if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    LOG(WARNING) << "inject.sock: unparsable frame from pid " << conn->cred.pid
                 << "; closing";
    Close(conn);
    return;
  }
  if (frame.has_request() && conn->state == Conn::State::kIdle) {
    OnRequest(conn, frame.request());
  } else if (frame.has_chunk() && conn->state == Conn::State::kBody) {
    OnChunk(conn, frame.mutable_chunk());
  } else {
    LOG(WARNING) << "inject.sock: frame out of sequence from pid "
                 << conn->cred.pid << "; closing";
    Close(conn);
  }
}

std::optional<InjectRefusal> CheckInjectRequest(const InjectRequest& request,
                                                const InjectLimits& limits) {
  if (request.recipients_size() == 0)
    return InjectRefusal{"5.5.1", "no recipients"};
  if (static_cast<uint32_t>(request.recipients_size()) >
      limits.max_recipients) {
    return InjectRefusal{
        "5.5.3",
        "too many recipients: " + std::to_string(request.recipients_size()) +
            " (limit " + std::to_string(limits.max_recipients) + ")"};
  }
  if (request.size() > limits.max_message_bytes) {
    return InjectRefusal{
        "5.3.4", "message size " + std::to_string(request.size()) +
                     " exceeds the limit of " +
                     std::to_string(limits.max_message_bytes) + " bytes"};
  }
  if (std::string why = AddressProblem(request.sender(), true); !why.empty())
    return InjectRefusal{"5.1.7", "bad sender: " + why};
  for (const auto& rcpt : request.recipients()) {
    if (std::string why = AddressProblem(rcpt, false); !why.empty())
      return InjectRefusal{"5.1.3", "bad recipient: " + why};
  }
  return std::nullopt;
}

spool::Envelope EnvelopeFromRequest(const InjectRequest& request,
                                    const farm::PeerCred& cred) {
  spool::Envelope e;
  e.set_sender(request.sender());
  for (int i = 0; i < request.recipients_size(); ++i) {
    auto* r = e.add_recipients();
    r->set_index(static_cast<uint32_t>(i));
    r->set_address(request.recipients(i));
  }
  *e.mutable_client() = TrustedClientInfo(request.client(), cred);
  e.set_smtputf8(request.smtputf8());
  e.set_eight_bit(request.eight_bit());
  return e;
}

void InjectServer::OnRequest(Conn* conn, const InjectRequest& request) {
  conn->state = Conn::State::kBody;
  conn->body.clear();
  conn->last_seen = false;
  conn->received = 0;
  conn->refuse = InjectReply::STATUS_UNSPECIFIED;
  conn->envelope.Clear();
  if (auto refusal = CheckInjectRequest(request, limits_)) {
    conn->refuse = InjectReply::REJECT;
    conn->refuse_dsn = std::move(refusal->dsn);
    conn->refuse_text = std::move(refusal->text);
    return;
  }
  conn->envelope = EnvelopeFromRequest(request, conn->cred);
  // The size the client announces, up to what is kept in memory: a client
  // claiming 50 MB and sending nothing holds no memory for it.
  if (request.size() > 0)
    conn->body.reserve(std::min<uint64_t>(request.size(), kBodyInMemoryBytes));
}

void InjectServer::OnChunk(Conn* conn, BodyChunk* chunk) {
  if (conn->refuse == InjectReply::STATUS_UNSPECIFIED) TakeChunk(conn, chunk);
  if (!chunk->last()) return;
  conn->last_seen = true;
  conn->state = Conn::State::kCommitting;
  if (conn->writing) {  // OnSpillWritten finishes the message
    conn->paused = true;
    conn->channel->PauseReading(true);
    return;
  }
  FinishMessage(conn);
}

// Adds a chunk to the body (memory or spill file), or refuses the message
// when it passes the size limit or the bytes in flight would pass theirs.
void InjectServer::TakeChunk(Conn* conn, BodyChunk* chunk) {
  uint64_t size = chunk->data().size();
  if (conn->received + size > limits_.max_message_bytes) {
    Refuse(conn, InjectReply::REJECT, "5.3.4",
           "message exceeds the size limit of " +
               std::to_string(limits_.max_message_bytes) + " bytes");
    return;
  }
  if (inflight_bytes_ + size > limits_.max_inflight_bytes) {
    LOG(WARNING) << "inject.sock: " << inflight_bytes_
                 << " bytes of messages being received, the limit is "
                 << limits_.max_inflight_bytes
                 << " (scheduler.max_inflight_mb); refusing a message from "
                 << "uid " << conn->cred.uid;
    Refuse(conn, InjectReply::TEMPFAIL, "4.3.1",
           "insufficient system storage: too much mail being received at "
           "once, try again later");
    return;
  }
  conn->received += size;
  conn->counted += size;
  inflight_bytes_ += size;
  if (conn->body.empty() && conn->spill == nullptr && chunk->last()) {
    // The whole message in one chunk (anything under 64 KiB): take the
    // parsed bytes instead of copying them.
    conn->body.swap(*chunk->mutable_data());
  } else {
    conn->body += chunk->data();
  }
  if (conn->spill == nullptr && conn->body.size() <= kBodyInMemoryBytes) return;
  if (conn->spill == nullptr) conn->spill = std::make_shared<BodySpill>();
  if (!conn->writing) {
    StartSpillWrite(conn);
  } else if (conn->body.size() >= kBodyInMemoryBytes && !conn->paused) {
    // The disk is behind this client: read no more until the write is done
    // (the channel still buffers about one frame).
    conn->paused = true;
    conn->channel->PauseReading(true);
  }
}

// Decided before the end of the message; the reply goes after the last chunk
// (the client is still sending: replying early would desynchronise it). The
// rest of the body is read and dropped.
void InjectServer::Refuse(Conn* conn, InjectReply::Status status,
                          const char* dsn, std::string text) {
  if (conn->refuse != InjectReply::STATUS_UNSPECIFIED) return;
  conn->refuse = status;
  conn->refuse_dsn = dsn;
  conn->refuse_text = std::move(text);
  DropBody(conn);
}

void InjectServer::DropBody(Conn* conn) {
  std::string().swap(conn->body);
  inflight_bytes_ -= conn->counted;
  conn->counted = 0;
  if (conn->spill != nullptr) store_->DropSpill(std::move(conn->spill));
  conn->spill = nullptr;
}

void InjectServer::StartSpillWrite(Conn* conn) {
  std::string data;
  data.swap(conn->body);
  conn->writing = true;
  std::weak_ptr<bool> alive = alive_;
  uint64_t key = conn->serial;
  store_->AppendSpill(conn->spill, std::move(data),
                      [this, alive, key](farm::Status status) {
                        if (!alive.expired()) OnSpillWritten(key, status);
                      });
}

void InjectServer::OnSpillWritten(uint64_t serial, const farm::Status& status) {
  Conn* conn = Find(serial);
  if (conn == nullptr) return;  // closed; Close dropped the spill
  conn->writing = false;
  if (!status.ok()) {
    LOG(WARNING) << "inject.sock: writing a message body: " << status.message();
    if (status.code() == farm::Status::Code::kNoSpace) {
      Refuse(conn, InjectReply::TEMPFAIL, "4.3.1",
             "insufficient system storage, try again later");
    } else {
      Refuse(conn, InjectReply::TEMPFAIL, "4.3.0",
             "cannot queue the message: " + status.message());
    }
  }
  if (conn->last_seen) {
    FinishMessage(conn);
    return;
  }
  if (conn->spill != nullptr && !conn->body.empty()) StartSpillWrite(conn);
  Resume(conn);
}

// After the last chunk, with no spill write outstanding: the refusal decided
// on the way, the last bytes to the spill file, or the commit.
void InjectServer::FinishMessage(Conn* conn) {
  if (conn->refuse != InjectReply::STATUS_UNSPECIFIED) {
    LOG(INFO) << "inject.sock: refused a message from uid " << conn->cred.uid
              << ": " << conn->refuse_dsn << " " << conn->refuse_text;
    Reply(conn, conn->refuse, conn->refuse_dsn, conn->refuse_text);
    conn->state = Conn::State::kIdle;
    conn->last_seen = false;
    Resume(conn);
    return;
  }
  if (conn->spill != nullptr && !conn->body.empty()) {
    StartSpillWrite(conn);
    return;
  }
  Commit(conn);
}

InjectServer::Conn* InjectServer::Find(uint64_t serial) {
  for (auto& p : conns_) {
    if (p->serial == serial) return p.get();
  }
  return nullptr;
}

void InjectServer::Commit(Conn* conn) {
  conn->state = Conn::State::kCommitting;
  conn->paused = true;
  conn->channel->PauseReading(true);  // one message at a time per connection
  conn->envelope.set_arrival_unix_ms(clock_->NowUnixMs());
  std::weak_ptr<bool> alive = alive_;
  // The connection may close while the disk works: find it again by serial.
  uint64_t key = conn->serial;
  // In flight until the create is done, whether or not the client stays.
  uint64_t counted = conn->counted;
  conn->counted = 0;
  std::shared_ptr<BodySpill> spill = std::move(conn->spill);
  conn->spill = nullptr;
  queue_->Inject(
      std::move(conn->envelope), std::move(conn->body), std::move(spill),
      [this, alive, key, counted](farm::StatusOr<std::string> qid) {
        if (alive.expired()) return;
        inflight_bytes_ -= counted;
        Conn* c = Find(key);
        if (c == nullptr) return;  // client gone; the job stays queued
        c->state = Conn::State::kIdle;
        c->envelope.Clear();
        c->body.clear();
        if (qid.ok()) {
          Reply(c, InjectReply::ACCEPTED, "2.0.0", "queued as " + *qid, *qid);
        } else if (qid.status().code() == farm::Status::Code::kNoSpace) {
          Reply(c, InjectReply::TEMPFAIL, "4.3.1",
                "insufficient system storage, try again later");
        } else {
          Reply(c, InjectReply::TEMPFAIL, "4.3.0",
                "cannot queue the message: " + qid.status().message());
        }
        Resume(c);  // not when stopping
      });
}

void InjectServer::Reply(Conn* conn, InjectReply::Status status,
                         const std::string& dsn, const std::string& text,
                         const std::string& qid) {
  InjectReply reply;
  reply.set_status(status);
  reply.set_dsn(dsn);
  reply.set_text(text);
  reply.set_qid(qid);
  conn->channel->Send(reply);
}

void InjectServer::Close(Conn* conn) {
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() != conn) continue;
    DropBody(conn);
    conns_.erase(it);
    return;
  }
}

}  // namespace mailfarm::scheduler
