// discard_transport.h: the discard channel's handler: every recipient is
// reported delivered and the message is dropped, with a delivery log line (for
// sinks and benchmarks). Created by transport/main.cc for type DISCARD.
#ifndef MAILFARM_TRANSPORT_DISCARD_TRANSPORT_H_
#define MAILFARM_TRANSPORT_DISCARD_TRANSPORT_H_

#include "farm/job_server.h"

namespace transport {

// Stateless; one per child.
class DiscardTransport : public farm::JobHandler {
 public:
  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override;
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_DISCARD_TRANSPORT_H_
