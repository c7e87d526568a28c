// socket_transport.cc: TCP + OpenSSL STARTTLS transport of smtpd's children.
#include "smtpd/socket_transport.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace smtpd {

namespace {

int64_t NowMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

}  // namespace

farm::StatusOr<std::shared_ptr<TlsServerContext>> TlsServerContext::Create(
    const std::string& cert_file, const std::string& key_file,
    const std::string* key_pem) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr)
    return farm::Status::Error("SSL_CTX_new: " + OpenSslError());
  std::shared_ptr<TlsServerContext> holder(new TlsServerContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Session tickets would need a key shared between children; full handshakes
  // are fine.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return farm::Status::Invalid("tls_cert_file " + cert_file + ": " +
                                 OpenSslError());
  }
  if (key_pem != nullptr) {
    BIO* bio =
        BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size()));
    EVP_PKEY* key =
        bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    bool used = key != nullptr && SSL_CTX_use_PrivateKey(ctx, key) == 1;
    EVP_PKEY_free(key);
    if (!used) {
      return farm::Status::Invalid("tls_key_file " + key_file +
                                   " (read by mailfarmd): " + OpenSslError());
    }
  } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(),
                                         SSL_FILETYPE_PEM) != 1) {
    return farm::Status::Invalid("tls_key_file " + key_file + ": " +
                                 OpenSslError());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return farm::Status::Invalid("tls_key_file " + key_file +
                                 " does not match " + cert_file + ": " +
                                 OpenSslError());
  }
  return holder;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

SocketTransport::SocketTransport(farm::UniqueFd fd,
                                 std::shared_ptr<TlsServerContext> tls)
    : fd_(std::move(fd)), tls_(std::move(tls)) {
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
  // Replies already leave in one write per batch; Nagle would only hold the
  // next batch back until the client's delayed ACK.
  int one = 1;
  ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

SocketTransport::~SocketTransport() {
  if (ssl_ != nullptr) {
    SSL_shutdown(
        ssl_);  // best effort close_notify; never waits (non-blocking fd)
    SSL_free(ssl_);
  }
}

farm::Status SocketTransport::Wait(short events, int64_t deadline_ms) {
  while (true) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return farm::Status::TempFail("timeout");
    pollfd p{fd_.get(), events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (r > 0) return farm::Status::Ok();
    if (r == 0) return farm::Status::TempFail("timeout");
    if (errno != EINTR) return farm::Status::FromErrno("poll", errno);
  }
}

farm::Status SocketTransport::WaitSsl(int ssl_error, int64_t deadline_ms,
                                      const char* what) {
  switch (ssl_error) {
    case SSL_ERROR_WANT_READ:
      return Wait(POLLIN, deadline_ms);
    case SSL_ERROR_WANT_WRITE:
      return Wait(POLLOUT, deadline_ms);
    case SSL_ERROR_ZERO_RETURN:
      return farm::Status::Closed("TLS close_notify");
    case SSL_ERROR_SYSCALL:
      if (errno == 0 || ERR_peek_error() == 0)
        return farm::Status::Closed("EOF in TLS");
      return farm::Status::FromErrno(what, errno);
    default:
      return farm::Status::Error(std::string(what) + ": " + OpenSslError());
  }
}

farm::StatusOr<size_t> SocketTransport::Read(char* buf, size_t n,
                                             int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  while (true) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r =
          SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
      if (r > 0) return static_cast<size_t>(r);
      MAILFARM_RETURN_IF_ERROR(
          WaitSsl(SSL_get_error(ssl_, r), deadline, "SSL_read"));
      continue;
    }
    ssize_t r = ::read(fd_.get(), buf, n);
    if (r > 0) return static_cast<size_t>(r);
    if (r == 0) return farm::Status::Closed("EOF");
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      MAILFARM_RETURN_IF_ERROR(Wait(POLLIN, deadline));
    } else if (errno != EINTR) {
      return farm::Status::FromErrno("read", errno);
    }
  }
}

farm::Status SocketTransport::Write(std::string_view data, int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  while (!data.empty()) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r =
          SSL_write(ssl_, data.data(),
                    static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
      if (r > 0) {
        data.remove_prefix(r);
        continue;
      }
      MAILFARM_RETURN_IF_ERROR(
          WaitSsl(SSL_get_error(ssl_, r), deadline, "SSL_write"));
      continue;
    }
    ssize_t r = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (r > 0) {
      data.remove_prefix(r);
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      MAILFARM_RETURN_IF_ERROR(Wait(POLLOUT, deadline));
    } else if (r < 0 && errno != EINTR) {
      return farm::Status::FromErrno("write", errno);
    }
  }
  return farm::Status::Ok();
}

farm::Status SocketTransport::StartTls(int timeout_ms) {
  if (!CanStartTls()) return farm::Status::Error("TLS not available");
  ssl_ = SSL_new(tls_->get());
  if (ssl_ == nullptr) return farm::Status::Error("SSL_new: " + OpenSslError());
  SSL_set_fd(ssl_, fd_.get());
  int64_t deadline = NowMs() + timeout_ms;
  while (true) {
    ERR_clear_error();
    int r = SSL_accept(ssl_);
    if (r == 1) return farm::Status::Ok();
    int err = SSL_get_error(ssl_, r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      farm::Status s = WaitSsl(err, deadline, "SSL_accept");
      return s.ok() ? farm::Status::Error("SSL_accept failed") : s;
    }
    MAILFARM_RETURN_IF_ERROR(WaitSsl(err, deadline, "SSL_accept"));
  }
}

TlsInfo SocketTransport::tls_info() const {
  if (ssl_ == nullptr) return TlsInfo{};
  TlsInfo info;
  info.protocol = SSL_get_version(ssl_);
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  if (cipher != nullptr) {
    info.cipher = SSL_CIPHER_get_name(cipher);
    info.bits = SSL_CIPHER_get_bits(cipher, nullptr);
  }
  return info;
}

}  // namespace smtpd
