// smtp_connection.cc: buffered, deadline-bounded SMTP I/O over TCP or TLS
// (see smtp_connection.h).
#include "transport/smtp_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "farm/clock.h"
#include "farm/sockets.h"

namespace transport {

namespace {

constexpr size_t kMaxLine = 64 * 1024;  // RFC 5321 says 512; be lenient
constexpr size_t kReadBytes = 16 * 1024;

int64_t Now() { return farm::RealClock()->MonotonicMs(); }

// The queued OpenSSL errors as one string (and clears the queue).
std::string SslErrors() {
  std::string text;
  unsigned long err;
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text;
}

bool IsAddressLiteral(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

}  // namespace

farm::StatusOr<std::unique_ptr<SmtpConnection>> SmtpConnection::Connect(
    const Endpoint& endpoint, int timeout_ms) {
  int fd = ::socket(endpoint.addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return farm::Status::TempFail("connect to " + endpoint.Describe() +
                                  ": socket: " + strerror(errno));
  }
  farm::UniqueFd owned(fd);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint.addr),
                endpoint.addr_len) != 0 &&
      errno != EINPROGRESS) {
    return farm::Status::TempFail("connect to " + endpoint.Describe() + ": " +
                                  strerror(errno));
  }
  pollfd pfd{fd, POLLOUT, 0};
  int64_t deadline = Now() + timeout_ms;
  while (true) {
    int64_t left = deadline - Now();
    if (left <= 0) {
      return farm::Status::TempFail("connect to " + endpoint.Describe() +
                                    ": Connection timed out");
    }
    int r = ::poll(&pfd, 1, static_cast<int>(left));
    if (r > 0) break;
    if (r < 0 && errno != EINTR) {
      return farm::Status::TempFail("connect to " + endpoint.Describe() +
                                    ": poll: " + strerror(errno));
    }
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return farm::Status::TempFail("connect to " + endpoint.Describe() + ": " +
                                  strerror(err));
  }
  // The constructor is private (only Connect makes one), so no make_unique.
  return std::unique_ptr<SmtpConnection>(
      new SmtpConnection(std::move(owned), endpoint));
}

SmtpConnection::~SmtpConnection() = default;

farm::Status SmtpConnection::WaitFd(short events, int64_t deadline_ms) {
  pollfd pfd{fd_.get(), events, 0};
  while (true) {
    int64_t left = deadline_ms - Now();
    if (left <= 0) return farm::Status::TempFail("timed out");
    int r = ::poll(&pfd, 1, static_cast<int>(left));
    if (r > 0) return farm::Status::Ok();
    if (r < 0 && errno != EINTR) return farm::Status::FromErrno("poll", errno);
  }
}

farm::Status SmtpConnection::SslWait(int ret, const char* what,
                                     int64_t deadline_ms) {
  int err = SSL_get_error(ssl_.get(), ret);
  if (err == SSL_ERROR_WANT_READ) return WaitFd(POLLIN, deadline_ms);
  if (err == SSL_ERROR_WANT_WRITE) return WaitFd(POLLOUT, deadline_ms);
  if (err == SSL_ERROR_ZERO_RETURN) return farm::Status::Closed("TLS closed");
  if (err == SSL_ERROR_SYSCALL) {
    int saved = errno;
    std::string queued = SslErrors();
    if (!queued.empty())
      return farm::Status::Error(std::string(what) + ": " + queued);
    if (ret == 0 || saved == 0)
      return farm::Status::Closed("connection closed");
    return farm::Status::FromErrno(what, saved);
  }
  return farm::Status::Error(std::string(what) + ": " + SslErrors());
}

farm::Status SmtpConnection::Fill(int64_t deadline_ms) {
  if (in_pos_ > 0 && in_pos_ == in_.size()) {
    in_.clear();
    in_pos_ = 0;
  } else if (in_pos_ > kReadBytes) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
  char buf[kReadBytes];
  while (true) {
    ssize_t n;
    if (ssl_) {
      n = SSL_read(ssl_.get(), buf, sizeof(buf));
      if (n <= 0) {
        MAILFARM_RETURN_IF_ERROR(
            SslWait(static_cast<int>(n), "TLS read", deadline_ms));
        continue;
      }
    } else {
      n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n == 0) return farm::Status::Closed("connection closed");
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          MAILFARM_RETURN_IF_ERROR(WaitFd(POLLIN, deadline_ms));
          continue;
        }
        return farm::Status::FromErrno("read", errno);
      }
    }
    in_.append(buf, static_cast<size_t>(n));
    return farm::Status::Ok();
  }
}

farm::Status SmtpConnection::ReadReply(int timeout_ms, SmtpReply* reply) {
  int64_t deadline = Now() + timeout_ms;
  while (true) {
    size_t eol = in_.find('\n', in_pos_);
    if (eol == std::string::npos) {
      if (in_.size() - in_pos_ > kMaxLine) {
        return farm::Status::Invalid("reply line longer than " +
                                     std::to_string(kMaxLine) + " bytes");
      }
      MAILFARM_RETURN_IF_ERROR(Fill(deadline));
      continue;
    }
    size_t end = eol;
    if (end > in_pos_ && in_[end - 1] == '\r') --end;
    std::string_view line(in_.data() + in_pos_, end - in_pos_);
    in_pos_ = eol + 1;
    bool done = false;
    MAILFARM_RETURN_IF_ERROR(parser_.AddLine(line, &done));
    if (done) {
      *reply = parser_.reply();
      return farm::Status::Ok();
    }
  }
}

farm::Status SmtpConnection::Flush(int timeout_ms) {
  int64_t deadline = Now() + timeout_ms;
  size_t sent = 0;
  while (sent < out_.size()) {
    const char* data = out_.data() + sent;
    size_t size = out_.size() - sent;
    if (ssl_) {
      int n = SSL_write(ssl_.get(), data, static_cast<int>(size));
      if (n <= 0) {
        MAILFARM_RETURN_IF_ERROR(SslWait(n, "TLS write", deadline));
        continue;
      }
      sent += static_cast<size_t>(n);
    } else {
      ssize_t n = ::send(fd_.get(), data, size, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          MAILFARM_RETURN_IF_ERROR(WaitFd(POLLOUT, deadline));
          continue;
        }
        return farm::Status::FromErrno("write", errno);
      }
      sent += static_cast<size_t>(n);
    }
  }
  out_.clear();
  return farm::Status::Ok();
}

farm::Status SmtpConnection::StartTls(SSL_CTX* ctx, const TlsCheck& check,
                                      int timeout_ms) {
  ERR_clear_error();
  ssl_.reset(SSL_new(ctx));
  if (!ssl_) return farm::Status::Error("SSL_new: " + SslErrors());
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!check.sni.empty() && !IsAddressLiteral(check.sni)) {
    SSL_set_tlsext_host_name(ssl_.get(), check.sni.c_str());
  }
  if (check.verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
    if (IsAddressLiteral(check.verify_name)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, check.verify_name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param,
                                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, check.verify_name.c_str(), 0);
    }
  }
  SSL_set_fd(ssl_.get(), fd_.get());
  // Bytes the server sent after its 220 would be plaintext injection.
  if (in_pos_ != in_.size()) {
    return farm::Status::Error("server sent data after its STARTTLS reply");
  }
  int64_t deadline = Now() + timeout_ms;
  while (true) {
    int r = SSL_connect(ssl_.get());
    if (r == 1) break;
    farm::Status s = SslWait(r, "TLS handshake", deadline);
    if (!s.ok()) {
      return farm::Status::Error(s.code() == farm::Status::Code::kTempFail
                                     ? "TLS handshake timed out"
                                     : s.message());
    }
  }
  if (check.verify) {
    X509* cert = SSL_get1_peer_certificate(ssl_.get());
    if (cert == nullptr) {
      return farm::Status::Error("server presented no certificate");
    }
    X509_free(cert);
    long result = SSL_get_verify_result(ssl_.get());
    if (result != X509_V_OK) {
      return farm::Status::Error(
          std::string("server certificate not verified: ") +
          X509_verify_cert_error_string(result));
    }
  }
  return farm::Status::Ok();
}

std::string SmtpConnection::TlsDescription() const {
  if (!ssl_) return "";
  return std::string(SSL_get_version(ssl_.get())) + " with cipher " +
         SSL_get_cipher_name(ssl_.get());
}

bool SmtpConnection::PeerClosedOrSpoke() {
  if (in_pos_ != in_.size()) return true;
  if (ssl_) {
    // TLS 1.3 servers send session tickets after the handshake: readable
    // bytes are not necessarily application data, so ask OpenSSL.
    char byte;
    int r = SSL_peek(ssl_.get(), &byte, 1);
    if (r > 0) return true;
    int err = SSL_get_error(ssl_.get(), r);
    ERR_clear_error();
    return err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE;
  }
  pollfd pfd{fd_.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) != 0;
}

}  // namespace transport
