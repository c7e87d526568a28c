// metrics_server.cc: the Prometheus endpoint's HTTP responder (see
// metrics_server.h).
#include "scheduler/metrics_server.h"

#include <event2/buffer.h>
#include <glog/logging.h>

#include <algorithm>
#include <cstring>

#include "farm/clock.h"
#include "farm/sockets.h"

namespace mailfarm::scheduler {

namespace {
// A request head longer than this is refused (431) and the connection closed.
constexpr size_t kMaxHeadBytes = 8192;
}  // namespace

MetricsServer::MetricsServer(event_base* base,
                             const config::MetricsConfig& config,
                             Collect collect)
    : base_(base),
      path_(config.path()),
      max_connections_(std::max<uint32_t>(1, config.max_connections())),
      timeout_ms_(static_cast<int>(std::max<uint32_t>(1, config.timeout_ms()))),
      collect_(std::move(collect)) {}

MetricsServer::~MetricsServer() {
  acceptor_.reset();
  for (auto& conn : conns_) bufferevent_free(conn->bev);
}

farm::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    event_base* base, const config::MetricsConfig& config, Collect collect) {
  if (config.port() == 0) return std::unique_ptr<MetricsServer>();
  auto listener =
      farm::ListenTcp(config.address(), static_cast<int>(config.port()), 64);
  if (!listener.ok()) {
    return farm::Status::Error("metrics: cannot bind " + config.address() +
                               ":" + std::to_string(config.port()) + ": " +
                               listener.status().message());
  }
  std::unique_ptr<MetricsServer> server(
      new MetricsServer(base, config, std::move(collect)));
  MetricsServer* raw = server.get();
  server->acceptor_ = std::make_unique<farm::EventAcceptor>(
      base, std::move(*listener), "metrics",
      [raw](farm::UniqueFd fd) { raw->Admit(std::move(fd)); }, 16);
  return server;
}

void MetricsServer::Admit(farm::UniqueFd fd) {
  bufferevent* bev =
      bufferevent_socket_new(base_, fd.Release(), BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) return;  // the descriptor is closed by libevent
  auto conn =
      std::make_unique<Conn>(Conn{this, bev, farm::RealClock()->MonotonicMs()});
  timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
  bufferevent_set_timeouts(bev, &tv, &tv);
  bufferevent_setcb(bev, &MetricsServer::OnRead, &MetricsServer::OnWritten,
                    &MetricsServer::OnEvent, conn.get());
  bufferevent_enable(bev, EV_READ);
  conns_.push_back(std::move(conn));
  if (conns_.size() >= max_connections_) acceptor_->Pause();
}

void MetricsServer::OnRead(bufferevent*, void* arg) {
  auto* conn = static_cast<Conn*>(arg);
  MetricsServer* server = conn->server;
  // The read timeout restarts with every byte: a client dripping its request
  // is cut off by this total instead.
  if (farm::RealClock()->MonotonicMs() - conn->accepted_ms >
      server->timeout_ms_) {
    server->Close(conn);
    return;
  }
  if (!conn->replied) server->Answer(conn);
}

void MetricsServer::OnWritten(bufferevent*, void* arg) {
  auto* conn = static_cast<Conn*>(arg);
  if (conn->replied) conn->server->Close(conn);
}

void MetricsServer::OnEvent(bufferevent*, short, void* arg) {
  // EOF, an error or a timeout: nothing more to do for this client.
  auto* conn = static_cast<Conn*>(arg);
  conn->server->Close(conn);
}

bool MetricsServer::Answer(Conn* conn) {
  evbuffer* in = bufferevent_get_input(conn->bev);
  evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
  if (end.pos < 0) end = evbuffer_search(in, "\n\n", 2, nullptr);
  if (end.pos < 0) {
    if (evbuffer_get_length(in) > kMaxHeadBytes) {
      Respond(conn, 431, "Request Header Fields Too Large", "text/plain",
              "request head too large\n", false);
    }
    return false;
  }
  size_t line_length = 0;
  char* line = evbuffer_readln(in, &line_length, EVBUFFER_EOL_CRLF);
  std::string request_line(line ? line : "", line ? line_length : 0);
  free(line);
  evbuffer_drain(in, evbuffer_get_length(in));
  // "METHOD target HTTP/x.y"
  size_t sp1 = request_line.find(' ');
  size_t sp2 = sp1 == std::string::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos ||
      request_line.compare(sp2 + 1, 5, "HTTP/") != 0) {
    Respond(conn, 400, "Bad Request", "text/plain", "bad request\n", false);
    return true;
  }
  std::string method = request_line.substr(0, sp1);
  std::string target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  bool head = method == "HEAD";
  if (method != "GET" && !head) {
    Respond(conn, 405, "Method Not Allowed", "text/plain",
            "only GET and HEAD\n", false, "Allow: GET, HEAD\r\n");
  } else if (target != path_) {
    Respond(conn, 404, "Not Found", "text/plain",
            "metrics are at " + path_ + "\n", head);
  } else {
    MetricsPage page;
    collect_(&page);
    Respond(conn, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
            page.Render(), head);
  }
  return true;
}

void MetricsServer::Respond(Conn* conn, int code, const char* reason,
                            const std::string& content_type,
                            const std::string& body, bool head_only,
                            const char* extra_header) {
  std::string head = "HTTP/1.1 " + std::to_string(code) + " " + reason +
                     "\r\nContent-Type: " + content_type +
                     "\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\n" + extra_header + "Connection: close\r\n\r\n";
  evbuffer* out = bufferevent_get_output(conn->bev);
  evbuffer_add(out, head.data(), head.size());
  if (!head_only) evbuffer_add(out, body.data(), body.size());
  conn->replied = true;
  bufferevent_disable(conn->bev, EV_READ);
  bufferevent_enable(conn->bev, EV_WRITE);
}

void MetricsServer::Close(Conn* conn) {
  bufferevent_free(conn->bev);
  conns_.remove_if([conn](const auto& c) { return c.get() == conn; });
  if (acceptor_ && conns_.size() < max_connections_) acceptor_->Resume();
}

}  // namespace mailfarm::scheduler
