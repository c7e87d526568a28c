// inject_server.cc: inject.sock, one state machine per connection:
// kIdle -(request)-> kBody -(last chunk)-> kCommitting -(durable)-> kIdle.
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
  std::string body;
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
                           QueueManager* queue, farm::Clock* clock,
                           InjectLimits limits)
    : base_(base),
      queue_(queue),
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
  for (auto& conn : conns_) conn->channel->PauseReading(true);
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

void InjectServer::OnRequest(Conn* conn, const InjectRequest& request) {
  conn->state = Conn::State::kBody;
  conn->body.clear();
  conn->refuse = InjectReply::STATUS_UNSPECIFIED;
  conn->envelope.Clear();
  auto refuse = [conn](const char* dsn, std::string text) {
    if (conn->refuse != InjectReply::STATUS_UNSPECIFIED) return;
    conn->refuse = InjectReply::REJECT;
    conn->refuse_dsn = dsn;
    conn->refuse_text = std::move(text);
  };
  if (request.recipients_size() == 0) refuse("5.5.1", "no recipients");
  if (static_cast<uint32_t>(request.recipients_size()) >
      limits_.max_recipients) {
    refuse("5.5.3",
           "too many recipients: " + std::to_string(request.recipients_size()) +
               " (limit " + std::to_string(limits_.max_recipients) + ")");
  }
  if (request.size() > limits_.max_message_bytes) {
    refuse("5.3.4", "message size " + std::to_string(request.size()) +
                        " exceeds the limit of " +
                        std::to_string(limits_.max_message_bytes) + " bytes");
  }
  if (std::string why = AddressProblem(request.sender(), true); !why.empty()) {
    refuse("5.1.7", "bad sender: " + why);
  }
  for (const auto& rcpt : request.recipients()) {
    if (std::string why = AddressProblem(rcpt, false); !why.empty()) {
      refuse("5.1.3", "bad recipient: " + why);
    }
  }
  if (conn->refuse != InjectReply::STATUS_UNSPECIFIED) return;
  spool::Envelope& e = conn->envelope;
  e.set_sender(request.sender());
  for (int i = 0; i < request.recipients_size(); ++i) {
    auto* r = e.add_recipients();
    r->set_index(static_cast<uint32_t>(i));
    r->set_address(request.recipients(i));
  }
  *e.mutable_client() = TrustedClientInfo(request.client(), conn->cred);
  e.set_smtputf8(request.smtputf8());
  e.set_eight_bit(request.eight_bit());
  if (request.size() > 0) conn->body.reserve(request.size());
}

void InjectServer::OnChunk(Conn* conn, BodyChunk* chunk_ptr) {
  const BodyChunk& chunk = *chunk_ptr;
  if (conn->refuse == InjectReply::STATUS_UNSPECIFIED) {
    if (conn->body.size() + chunk.data().size() > limits_.max_message_bytes) {
      conn->refuse = InjectReply::REJECT;
      conn->refuse_dsn = "5.3.4";
      conn->refuse_text = "message exceeds the size limit of " +
                          std::to_string(limits_.max_message_bytes) + " bytes";
      std::string().swap(conn->body);
    } else if (conn->body.empty() && chunk.last()) {
      // The whole message in one chunk (anything under 64 KiB): take the
      // parsed bytes instead of copying them.
      conn->body.swap(*chunk_ptr->mutable_data());
    } else {
      conn->body += chunk.data();
    }
  }
  if (!chunk.last()) return;
  if (conn->refuse != InjectReply::STATUS_UNSPECIFIED) {
    LOG(INFO) << "inject.sock: refused a message from uid " << conn->cred.uid
              << ": " << conn->refuse_dsn << " " << conn->refuse_text;
    Reply(conn, conn->refuse, conn->refuse_dsn, conn->refuse_text);
    conn->state = Conn::State::kIdle;
    return;
  }
  Commit(conn);
}

void InjectServer::Commit(Conn* conn) {
  conn->state = Conn::State::kCommitting;
  conn->channel->PauseReading(true);  // one message at a time per connection
  conn->envelope.set_arrival_unix_ms(clock_->NowUnixMs());
  std::weak_ptr<bool> alive = alive_;
  // The connection may close while the disk works: find it again by serial.
  uint64_t key = conn->serial;
  queue_->Inject(
      std::move(conn->envelope), std::move(conn->body),
      [this, alive, key](farm::StatusOr<std::string> qid) {
        if (alive.expired()) return;
        Conn* c = nullptr;
        for (auto& p : conns_) {
          if (p->serial == key) c = p.get();
        }
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
        if (acceptor_ != nullptr)
          c->channel->PauseReading(false);  // not when stopping
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
    conns_.erase(it);
    return;
  }
}

}  // namespace mailfarm::scheduler
