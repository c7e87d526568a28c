// transport.h: the byte stream an SMTP session runs on. The session and the
// fuzz target only see this interface: production uses SocketTransport (a TCP
// socket with optional OpenSSL STARTTLS, socket_transport.h), tests and the
// fuzzer use an in-memory script.
#ifndef MAILFARM_SMTPD_TRANSPORT_H_
#define MAILFARM_SMTPD_TRANSPORT_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "farm/status.h"

namespace smtpd {

struct TlsInfo {
  std::string protocol;  // "TLSv1.3"; empty when TLS is not active
  std::string cipher;    // "TLS_AES_256_GCM_SHA384"
  int bits = 0;
};

// One connection. Not thread-safe.
class Transport {
 public:
  virtual ~Transport() = default;
  // Reads between 1 and n bytes, waiting at most timeout_ms. Returns the count,
  // or Closed at EOF, TempFail on timeout, Error on a socket or TLS error.
  virtual farm::StatusOr<size_t> Read(char* buf, size_t n, int timeout_ms) = 0;
  // Writes all of `data` within timeout_ms; Error/TempFail when it cannot.
  virtual farm::Status Write(std::string_view data, int timeout_ms) = 0;
  // True when STARTTLS may be offered (a certificate is configured, TLS not
  // active).
  virtual bool CanStartTls() const = 0;
  // Runs the server side of the TLS handshake. Bytes the peer sent before it
  // and that the caller buffered are the caller's to discard. After an error
  // the connection is unusable.
  virtual farm::Status StartTls(int timeout_ms) = 0;
  virtual TlsInfo tls_info() const = 0;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_TRANSPORT_H_
