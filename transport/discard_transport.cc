// discard_transport.cc: accepts and drops (see discard_transport.h).
#include "transport/discard_transport.h"

#include "transport/delivery.h"

namespace transport {

void DiscardTransport::Handle(const mailfarm::Job& job,
                              mailfarm::Result* result) {
  DeliveryReport report(job, result);
  report.AddAll(mailfarm::OUTCOME_OK, "2.0.0", "discarded", "none");
  report.Finish();
}

}  // namespace transport
