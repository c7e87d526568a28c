// proxy_protocol.h: parser of HAProxy's PROXY protocol header (v1 text, v2
// binary) that a load balancer sends before the SMTP session. mailfarm-smtpd
// uses it on listeners with proxy_protocol = true. Pure code, no I/O.
#ifndef MAILFARM_SMTPD_PROXY_PROTOCOL_H_
#define MAILFARM_SMTPD_PROXY_PROTOCOL_H_

#include <cstddef>
#include <string>

#include "farm/status.h"

namespace smtpd {

struct ProxyHeader {
  int version = 0;             // 1 or 2
  bool has_address = false;    // false for "PROXY UNKNOWN" and v2 LOCAL/UNSPEC
  std::string source_address;  // text form
  int source_port = 0;
  std::string dest_address;
  int dest_port = 0;
};

// The longest header accepted: v1's 107 octets, v2's 16 + 2048 (TLVs included).
inline constexpr size_t kMaxProxyHeader = 16 + 2048;

// Looks for one PROXY header at the start of [data, data+size).
// Returns Ok with *consumed set once a complete, valid header is there;
// TempFail when more bytes are needed (a prefix of a valid header); Invalid
// (with a reason) for anything else, after which the connection must be closed.
farm::Status ParseProxyHeader(const char* data, size_t size,
                              ProxyHeader* header, size_t* consumed);

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_PROXY_PROTOCOL_H_
