// smtpd_handler.h: the farm ConnectionHandler of mailfarm-smtpd's children:
// one blocking SMTP Session per accepted TCP connection, messages streamed to
// the scheduler through a per-child InjectSink.
#ifndef MAILFARM_SMTPD_SMTPD_HANDLER_H_
#define MAILFARM_SMTPD_SMTPD_HANDLER_H_

#include <memory>

#include "farm/farm_manager.h"
#include "smtpd/inject_sink.h"
#include "smtpd/smtpd_settings.h"

namespace smtpd {

class SmtpdHandler : public farm::ConnectionHandler {
 public:
  explicit SmtpdHandler(std::shared_ptr<const SmtpdSettings> settings);
  void Serve(farm::UniqueFd conn, farm::ChildContext& ctx) override;

 private:
  // True when the connection arrived on a listener with proxy_protocol.
  bool ArrivedOnProxyListener(int fd) const;

  std::shared_ptr<const SmtpdSettings> settings_;
  InjectSink sink_;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SMTPD_HANDLER_H_
