// client_limits.h: the per-client limits an smtpd session asks about
// (Postfix's anvil): concurrent sessions and connection rate at connect,
// message and recipient rates at MAIL and RCPT, and whether the farm is
// under stress (near max_children: idle clients get a short timeout).
// Production uses AnvilClient (anvil.h, a table shared by all children);
// kept free of shared memory so the protocol core builds without it.
#ifndef MAILFARM_SMTPD_CLIENT_LIMITS_H_
#define MAILFARM_SMTPD_CLIENT_LIMITS_H_

#include <cstdint>
#include <string>

namespace smtpd {

// A refusal: which limit, and the count that went over it (for the log
// line "Connection rate limit exceeded: 31 from [ADDR] for service smtp").
struct LimitExceeded {
  enum class Kind {
    kNone,
    kConcurrency,  // "Connection concurrency"
    kConnectionRate,
    kMessageRate,    // "Message delivery request rate"
    kRecipientRate,  // "Recipient address rate"
  };
  Kind kind = Kind::kNone;
  uint32_t count = 0;
  explicit operator bool() const { return kind != Kind::kNone; }
};

// One session's view; not thread-safe.
class ClientLimits {
 public:
  virtual ~ClientLimits() = default;
  // At connect (after a PROXY header): counts the connection and, when
  // admitted, holds one concurrent session for `address` until the object
  // goes away.
  virtual LimitExceeded Connect(const std::string& address) = 0;
  // At MAIL and at each RCPT of `address`.
  virtual LimitExceeded CountMessage(const std::string& address) = 0;
  virtual LimitExceeded CountRecipient(const std::string& address) = 0;
  // True when the farm is near max_children.
  virtual bool UnderStress() = 0;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_CLIENT_LIMITS_H_
