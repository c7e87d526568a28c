// smtpd_handler.h: the farm ConnectionHandler of mailfarm-smtpd's children:
// one blocking SMTP Session per accepted TCP connection, messages streamed to
// the scheduler through a per-child InjectSink.
#ifndef MAILFARM_SMTPD_SMTPD_HANDLER_H_
#define MAILFARM_SMTPD_SMTPD_HANDLER_H_

#include <memory>
#include <vector>

#include "farm/farm_manager.h"
#include "smtpd/dovecot_sasl.h"
#include "smtpd/inject_sink.h"
#include "smtpd/smtpd_settings.h"

namespace smtpd {

class SmtpdHandler : public farm::ConnectionHandler {
 public:
  // `anvil`: the per-client counters shared by the farm's children (made by
  // the manager before forking); may be null (no per-client limits).
  SmtpdHandler(std::shared_ptr<const SmtpdSettings> settings,
               AnvilTable* anvil);
  void Serve(farm::UniqueFd conn, farm::ChildContext& ctx) override;

 private:
  // The index in settings_->listeners of the listener the connection
  // arrived on; -1 when none matches.
  int ListenerIndex(int fd) const;

  std::shared_ptr<const SmtpdSettings> settings_;
  InjectSink sink_;
  // Per listener: the session options (PROXY, submission policy).
  std::vector<SessionOptions> listener_options_;
  std::unique_ptr<DovecotSasl> sasl_;  // null without smtpd.sasl_path
  AnvilTable* anvil_;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SMTPD_HANDLER_H_
