// socket_transport.h: the production Transport of mailfarm-smtpd: a connected
// TCP socket driven with poll() timeouts, upgraded in place to TLS (OpenSSL,
// server side) on STARTTLS. Used by the farm child (smtpd_handler.cc).
#ifndef MAILFARM_SMTPD_SOCKET_TRANSPORT_H_
#define MAILFARM_SMTPD_SOCKET_TRANSPORT_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "smtpd/transport.h"

namespace smtpd {

// An OpenSSL server context holding the certificate and key from the config.
// Created once in the manager before fork; children share it read-only.
class TlsServerContext {
 public:
  // Loads a PEM certificate chain and private key and checks they match.
  // The key comes from `key_pem` when given (the bytes mailfarmd read as
  // root, farm/inherited_key.h), else from key_file. Errors name the file
  // and carry OpenSSL's reason.
  static farm::StatusOr<std::shared_ptr<TlsServerContext>> Create(
      const std::string& cert_file, const std::string& key_file,
      const std::string* key_pem = nullptr);
  ~TlsServerContext();
  SSL_CTX* get() const { return ctx_; }

 private:
  explicit TlsServerContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// Owns the connection. Not thread-safe.
class SocketTransport : public Transport {
 public:
  // `tls` may be null (no STARTTLS). The fd is switched to non-blocking.
  SocketTransport(farm::UniqueFd fd, std::shared_ptr<TlsServerContext> tls);
  ~SocketTransport() override;

  farm::StatusOr<size_t> Read(char* buf, size_t n, int timeout_ms) override;
  farm::Status Write(std::string_view data, int timeout_ms) override;
  bool CanStartTls() const override {
    return tls_ != nullptr && ssl_ == nullptr;
  }
  farm::Status StartTls(int timeout_ms) override;
  TlsInfo tls_info() const override;

 private:
  // Waits for `events` (POLLIN/POLLOUT) until the absolute deadline.
  farm::Status Wait(short events, int64_t deadline_ms);
  // Drives an SSL call that wants to read or write until deadline.
  farm::Status WaitSsl(int ssl_error, int64_t deadline_ms, const char* what);

  farm::UniqueFd fd_;
  std::shared_ptr<TlsServerContext> tls_;
  SSL* ssl_ = nullptr;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SOCKET_TRANSPORT_H_
