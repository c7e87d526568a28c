// local_transport.h: the local channel's handler: delivers each recipient into
// a Maildir (tmp/ -> new/, fsynced) or an mbox file (fcntl lock, From_ line)
// at the path LocalConfig.mailbox gives for it. Created by transport/main.cc
// for type LOCAL. Runs as the service user: no per-user privilege switching.
#ifndef MAILFARM_TRANSPORT_LOCAL_TRANSPORT_H_
#define MAILFARM_TRANSPORT_LOCAL_TRANSPORT_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "config.pb.h"
#include "farm/job_server.h"
#include "transport/delivery.h"

namespace transport {

// Writes `prefix` then the message into a new file of the Maildir `dir`
// (which ends in '/'), creating the Maildir when `create` is set. The file is
// fsynced, renamed into new/ and new/ is fsynced before an OK outcome.
// `unique_host` goes into the file name. Failure outcomes name the path.
RecipientOutcome DeliverMaildir(const std::string& dir, bool create,
                                const std::string& prefix,
                                const MessageReader& message,
                                const std::string& unique_host);

// Appends a From_ line, `prefix` and the message (From_ quoted) to the mbox
// `path` under an fcntl write lock (waiting up to lock_timeout_ms), fsyncs,
// and cuts the file back to its old size on a write error. Refuses (5.2.0)
// a file with more than one link, or owned by neither this process's uid
// (which creates mailboxes) nor `owner_uid` (the recipient's account).
RecipientOutcome DeliverMbox(const std::string& path, bool create,
                             const std::string& sender,
                             const std::string& prefix,
                             const MessageReader& message, int lock_timeout_ms,
                             std::optional<uid_t> owner_uid);

// One per child; Handle is not thread-safe.
class LocalTransport : public farm::JobHandler {
 public:
  LocalTransport(const mailfarm::config::ChannelConfig& channel,
                 std::string hostname);
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override;

 private:
  RecipientOutcome DeliverOne(const mailfarm::Job& job,
                              const mailfarm::JobRecipient& recipient,
                              const MessageReader& message, std::string* where);

  mailfarm::config::LocalConfig config_;
  std::string hostname_;
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_LOCAL_TRANSPORT_H_
