// metrics_server.h: the scheduler's Prometheus endpoint, a small HTTP/1.x
// responder on the scheduler's loop (GET/HEAD of one path, one request per
// connection). scheduler.cc starts it; MetricsPage (metrics.h) is the body.
#ifndef MAILFARM_SCHEDULER_METRICS_SERVER_H_
#define MAILFARM_SCHEDULER_METRICS_SERVER_H_

#include <event2/bufferevent.h>
#include <event2/event.h>

#include <functional>
#include <list>
#include <memory>
#include <string>

#include "config.pb.h"
#include "farm/event_acceptor.h"
#include "farm/status.h"
#include "scheduler/metrics.h"

namespace mailfarm::scheduler {

// Not thread-safe: the loop's thread only. At most config.max_connections
// connections at once (the rest wait in the kernel's backlog, costing the
// scheduler no descriptor); one that has not sent its request or taken its
// reply within config.timeout_ms is closed. evhttp, used before, had neither
// bound in libevent 2.1 and spun on accept() once out of descriptors.
class MetricsServer {
 public:
  using Collect = std::function<void(MetricsPage*)>;
  // Binds config.address():config.port() (port 0 in the config disables the
  // endpoint: returns nullptr with an ok status).
  static farm::StatusOr<std::unique_ptr<MetricsServer>> Start(
      event_base* base, const config::MetricsConfig& config, Collect collect);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  size_t connections() const { return conns_.size(); }

 private:
  struct Conn {
    MetricsServer* server;
    bufferevent* bev;
    int64_t accepted_ms;
    bool replied = false;
  };
  MetricsServer(event_base* base, const config::MetricsConfig& config,
                Collect collect);
  void Admit(farm::UniqueFd fd);
  static void OnRead(bufferevent* bev, void* arg);
  static void OnWritten(bufferevent* bev, void* arg);
  static void OnEvent(bufferevent* bev, short events, void* arg);
  // Answers once the request head is complete; false while it is not.
  bool Answer(Conn* conn);
  void Respond(Conn* conn, int code, const char* reason,
               const std::string& content_type, const std::string& body,
               bool head_only, const char* extra_header = "");
  void Close(Conn* conn);

  event_base* base_;
  std::string path_;
  size_t max_connections_;
  int timeout_ms_;
  Collect collect_;
  std::unique_ptr<farm::EventAcceptor> acceptor_;
  std::list<std::unique_ptr<Conn>> conns_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_METRICS_SERVER_H_
