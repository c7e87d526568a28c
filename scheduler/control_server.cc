// control_server.cc: one request per connection; replies are paginated with
// `more` for long queue listings. The connection is closed by the client
// after the last reply (closing it here could drop unsent replies).
#include "scheduler/control_server.h"

#include <glog/logging.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "farm/framed_stream.h"
#include "farm/sockets.h"

namespace mailfarm::scheduler {

namespace {
constexpr size_t kEntriesPerReply = 500;
}

struct ControlServer::Conn {
  std::unique_ptr<farm::EventChannel> channel;
  uint64_t serial = 0;
  bool answered = false;
};

ControlServer::ControlServer(event_base* base, farm::UniqueFd listener,
                             QueueManager* queue, std::vector<uid_t> uids,
                             size_t max_frame_bytes, Hooks hooks)
    : base_(base),
      queue_(queue),
      uids_(std::move(uids)),
      max_frame_bytes_(max_frame_bytes),
      hooks_(std::move(hooks)),
      alive_(std::make_shared<bool>(true)) {
  acceptor_ = std::make_unique<farm::EventAcceptor>(
      base_, std::move(listener), "control.sock",
      [this](farm::UniqueFd fd) { Admit(std::move(fd)); }, 16);
}

ControlServer::~ControlServer() {
  *alive_ = false;
  acceptor_.reset();
  conns_.clear();
}

void ControlServer::Admit(farm::UniqueFd fd) {
  auto cred = farm::GetPeerCred(fd.get());
  if (!cred.ok() || !farm::PeerAllowed(*cred, uids_, {})) {
    ControlReply reply;
    reply.set_status(ControlReply::BAD_REQUEST);
    reply.set_text("permission denied: uid not in identity.control_uids");
    std::string frame;
    farm::AppendFrame(reply, &frame);
    [[maybe_unused]] ssize_t n =
        ::send(fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL);
    LOG(WARNING) << "control.sock: refused uid "
                 << (cred.ok() ? cred->uid : -1u);
    return;
  }
  auto conn = std::make_unique<Conn>();
  Conn* raw = conn.get();
  raw->serial = ++next_serial_;
  raw->channel = std::make_unique<farm::EventChannel>(
      base_, std::move(fd), max_frame_bytes_, "control.sock");
  conns_.push_back(std::move(conn));
  raw->channel->Start([this, raw](std::string_view p) { OnRequest(raw, p); },
                      [this, raw](const farm::Status&) { Close(raw); });
}

ControlServer::Conn* ControlServer::Lookup(uint64_t serial) {
  for (auto& c : conns_) {
    if (c->serial == serial) return c.get();
  }
  return nullptr;
}

void ControlServer::Send(uint64_t serial, const ControlReply& reply, bool) {
  if (Conn* c = Lookup(serial); c != nullptr) c->channel->Send(reply);
}

void ControlServer::OnRequest(Conn* conn, std::string_view payload) {
  ControlRequest req;
  uint64_t serial = conn->serial;
  ControlReply reply;
  if (conn->answered) {
    LOG(WARNING) << "control.sock: a second request on one connection; closing";
    Close(conn);
    return;
  }
  conn->answered = true;
  if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    LOG(WARNING) << "control.sock: unparsable request; closing";
    Close(conn);
    return;
  }
  reply.set_status(ControlReply::OK);
  auto counted = [&](uint32_t n, const char* verb) {
    reply.set_affected(n);
    reply.set_status(n > 0 ? ControlReply::OK : ControlReply::NOT_FOUND);
    reply.set_text(std::string(verb) + " " + std::to_string(n) + " job(s)");
  };
  switch (req.verb_case()) {
    case ControlRequest::kQueueList: {
      std::vector<QueueEntry> entries = queue_->List(req.queue_list());
      size_t i = 0;
      do {
        ControlReply page;
        page.set_status(ControlReply::OK);
        for (size_t k = 0; k < kEntriesPerReply && i < entries.size();
             ++k, ++i) {
          *page.add_entries() = std::move(entries[i]);
        }
        page.set_more(i < entries.size());
        page.set_affected(static_cast<uint32_t>(entries.size()));
        Send(serial, page, !page.more());
      } while (i < entries.size());
      return;
    }
    case ControlRequest::kQueueShow: {
      if (!queue_->Show(req.queue_show(), reply.mutable_detail())) {
        reply.set_status(ControlReply::NOT_FOUND);
        reply.set_text("no job " + req.queue_show() + " in the queue");
        break;
      }
      // The history lives in the queue file, read off the loop.
      std::weak_ptr<bool> alive = alive_;
      auto shared = std::make_shared<ControlReply>(std::move(reply));
      queue_->ReadHistory(
          req.queue_show(),
          [this, alive, serial, shared](std::vector<AttemptRecord> history) {
            if (alive.expired()) return;
            for (auto& a : history)
              *shared->mutable_detail()->add_history() = std::move(a);
            Send(serial, *shared, true);
          });
      return;
    }
    case ControlRequest::kFlush:
      counted(queue_->Flush(req.flush()), "flushed");
      break;
    case ControlRequest::kDelete:
      counted(queue_->Delete(req.delete_()), "deleted");
      break;
    case ControlRequest::kHold:
      counted(queue_->Hold(req.hold()), "held");
      break;
    case ControlRequest::kRelease:
      counted(queue_->Release(req.release()), "released");
      break;
    case ControlRequest::kBounce:
      counted(queue_->Bounce(req.bounce()), "bounced");
      break;
    case ControlRequest::kStats:
      queue_->FillStats(reply.mutable_stats());
      queue_->FillRates(reply.mutable_stats());
      if (hooks_.extra_stats) hooks_.extra_stats(reply.mutable_stats());
      break;
    case ControlRequest::kReload:
      reply.set_text(hooks_.reload ? hooks_.reload() : "reload not supported");
      break;
    case ControlRequest::kStop:
      reply.set_text("stopping");
      {
        // Written straight to the socket: the loop ends before the channel
        // would flush. One small frame on an idle socket does not block.
        std::string frame;
        farm::AppendFrame(reply, &frame);
        [[maybe_unused]] ssize_t n = ::send(conn->channel->fd(), frame.data(),
                                            frame.size(), MSG_NOSIGNAL);
      }
      if (hooks_.stop) hooks_.stop();
      return;
    case ControlRequest::kAdopt: {
      std::vector<std::pair<std::string, std::string>> jobs;
      for (const auto& j : req.adopt().jobs())
        jobs.emplace_back(j.qid(), j.path());
      std::weak_ptr<bool> alive = alive_;
      queue_->Adopt(std::move(jobs), [this, alive, serial](
                                         QueueManager::AdoptCounts counts) {
        if (alive.expired()) return;
        ControlReply r;
        r.set_status(counts.failed == 0 ? ControlReply::OK
                                        : ControlReply::BAD_REQUEST);
        r.set_affected(counts.adopted);
        r.set_already_known(counts.already_known);
        r.set_text("adopted " + std::to_string(counts.adopted) +
                   ", already known " + std::to_string(counts.already_known) +
                   ", failed " + std::to_string(counts.failed) +
                   (counts.first_error.empty()
                        ? ""
                        : " (" + counts.first_error + ")"));
        Send(serial, r, true);
      });
      return;
    }
    default:
      reply.set_status(ControlReply::BAD_REQUEST);
      reply.set_text("empty or unknown control verb");
      break;
  }
  Send(serial, reply, true);
}

void ControlServer::Close(Conn* conn) {
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() == conn) {
      conns_.erase(it);
      return;
    }
  }
}

}  // namespace mailfarm::scheduler
