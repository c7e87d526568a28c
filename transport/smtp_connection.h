// smtp_connection.h: one TCP connection to an SMTP server with buffered,
// deadline-bounded I/O and an optional OpenSSL layer after STARTTLS. Reads
// whole replies; queues commands so a pipelined group goes out in one write.
// Used by smtp_session; blocking (a farm child may block).
#ifndef MAILFARM_TRANSPORT_SMTP_CONNECTION_H_
#define MAILFARM_TRANSPORT_SMTP_CONNECTION_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "transport/mx_lookup.h"
#include "transport/smtp_reply.h"

namespace transport {

// What the TLS handshake checks. `sni` is sent when it is a host name;
// `verify_name` (a host name or an address literal) is matched against the
// certificate when `verify` is set.
struct TlsCheck {
  std::string sni;
  std::string verify_name;
  bool verify = false;
};

// Not thread-safe. Owns the socket and the SSL object.
class SmtpConnection {
 public:
  // Connects within timeout_ms. kTempFail "connect to host[addr]:port: why".
  static farm::StatusOr<std::unique_ptr<SmtpConnection>> Connect(
      const Endpoint& endpoint, int timeout_ms);
  ~SmtpConnection();
  SmtpConnection(const SmtpConnection&) = delete;
  SmtpConnection& operator=(const SmtpConnection&) = delete;

  // Reads one complete (maybe multi-line) reply within timeout_ms.
  // kTempFail on timeout, kClosed when the server closed the connection,
  // kInvalid for a malformed reply or an over-long line, kError on I/O errors.
  farm::Status ReadReply(int timeout_ms, SmtpReply* reply);

  // Appends to the output buffer (nothing is sent until Flush).
  void Queue(std::string_view data) { out_.append(data); }
  std::string* mutable_output() { return &out_; }
  size_t queued() const { return out_.size(); }
  // Sends the whole output buffer within timeout_ms (kTempFail on timeout).
  farm::Status Flush(int timeout_ms);

  // Runs the TLS handshake (after a 220 reply to STARTTLS) and, when
  // check.verify, checks the certificate chain and name. kError with the
  // OpenSSL reason on failure; the connection is then unusable.
  farm::Status StartTls(SSL_CTX* ctx, const TlsCheck& check, int timeout_ms);
  bool tls() const { return ssl_ != nullptr; }
  // "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384", or "" without TLS.
  std::string TlsDescription() const;

  // True when the server sent something or closed the connection while we
  // were not waiting for a reply (a dead idle session).
  bool PeerClosedOrSpoke();

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  SmtpConnection(farm::UniqueFd fd, Endpoint endpoint)
      : fd_(std::move(fd)), endpoint_(std::move(endpoint)) {}
  // Waits until the socket is ready for `events` or the deadline passes.
  farm::Status WaitFd(short events, int64_t deadline_ms);
  // Reads more bytes into in_; kClosed at EOF.
  farm::Status Fill(int64_t deadline_ms);
  // Handles an SSL_ERROR_WANT_* by waiting; other errors become a Status.
  farm::Status SslWait(int ret, const char* what, int64_t deadline_ms);

  farm::UniqueFd fd_;
  Endpoint endpoint_;
  struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };
  std::unique_ptr<SSL, SslFree> ssl_;
  std::string in_;
  size_t in_pos_ = 0;
  std::string out_;
  ReplyParser parser_;
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_SMTP_CONNECTION_H_
