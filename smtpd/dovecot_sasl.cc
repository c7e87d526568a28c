// dovecot_sasl.cc: the client of Dovecot's auth protocol used by smtpd's
// children for SMTP AUTH (see dovecot_sasl.h). Blocking socket with
// SO_RCVTIMEO/SO_SNDTIMEO: a child serves one session, so waiting is fine.
#include "smtpd/dovecot_sasl.h"

#include <glog/logging.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "farm/sockets.h"

namespace smtpd {

namespace {

// Dovecot's own limit for one auth protocol line.
constexpr size_t kMaxLine = 16384;
constexpr const char kInetPrefix[] = "inet:";

farm::Status SetTimeouts(int fd, int timeout_ms) {
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return farm::Status::FromErrno("setsockopt(SO_RCVTIMEO)", errno);
  }
  return farm::Status::Ok();
}

// "inet:HOST:PORT" or "inet:[V6]:PORT" -> host, port.
bool SplitInet(std::string_view spec, std::string* host, std::string* port) {
  spec.remove_prefix(std::strlen(kInetPrefix));
  size_t colon = spec.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view h = spec.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  *host = std::string(h);
  *port = std::string(spec.substr(colon + 1));
  return !host->empty() && !port->empty();
}

bool IsMechanismName(std::string_view name) {
  return !name.empty() && name.size() <= 20 &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
         });
}

}  // namespace

std::string DovecotUnescape(std::string_view value) {
  // \001 followed by one of these letters stands for the matching byte (LF
  // is "n" in Dovecot's code, "l" in one version of its documentation).
  constexpr std::string_view kLetters = "01trnl";
  constexpr std::string_view kBytes("\0\001\t\r\n\n", 6);
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '\001' || i + 1 == value.size()) {
      out.push_back(value[i]);
      continue;
    }
    size_t k = kLetters.find(value[++i]);
    out.push_back(k == std::string_view::npos ? value[i] : kBytes[k]);
  }
  return out;
}

std::vector<std::string> SplitDovecotLine(std::string_view line) {
  std::vector<std::string> fields;
  while (true) {
    size_t tab = line.find('\t');
    fields.push_back(DovecotUnescape(line.substr(0, tab)));
    if (tab == std::string_view::npos) return fields;
    line.remove_prefix(tab + 1);
  }
}

farm::StatusOr<SaslStep> DovecotStep(const std::vector<std::string>& fields,
                                     uint32_t id) {
  if (fields.size() < 2)
    return farm::Status::Error("auth service: short reply");
  uint32_t got = 0;
  auto [ptr, ec] = std::from_chars(fields[1].data(),
                                   fields[1].data() + fields[1].size(), got);
  if (ec != std::errc() || ptr != fields[1].data() + fields[1].size() ||
      got != id) {
    return farm::Status::Error("auth service: reply for request " + fields[1] +
                               ", expected " + std::to_string(id));
  }
  SaslStep step;
  const std::string& verb = fields[0];
  if (verb == "CONT") {
    step.kind = SaslStep::Kind::kContinue;
    if (fields.size() > 2) step.challenge = fields[2];
    return step;
  }
  if (verb != "OK" && verb != "FAIL")
    return farm::Status::Error("auth service: unexpected reply " + verb);
  step.kind = verb == "OK" ? SaslStep::Kind::kOk : SaslStep::Kind::kFail;
  for (size_t i = 2; i < fields.size(); ++i) {
    std::string_view f = fields[i];
    if (f.rfind("user=", 0) == 0) {
      step.user = std::string(f.substr(5));
    } else if (f.rfind("reason=", 0) == 0) {
      step.reason = std::string(f.substr(7));
    } else if (step.kind == SaslStep::Kind::kFail &&
               (f == "temp" || f == "code=temp_fail")) {
      step.kind = SaslStep::Kind::kTempFail;
    }
  }
  if (step.kind == SaslStep::Kind::kOk && step.user.empty())
    return farm::Status::Error("auth service: OK without user=");
  return step;
}

DovecotSasl::DovecotSasl(std::string path, int timeout_ms)
    : path_(std::move(path)), timeout_ms_(std::max(1, timeout_ms)) {}

farm::StatusOr<farm::UniqueFd> DovecotSasl::Connect() const {
  if (path_.rfind(kInetPrefix, 0) != 0) {
    auto fd = farm::ConnectUnix(path_);
    if (fd.ok()) MAILFARM_RETURN_IF_ERROR(SetTimeouts(fd->get(), timeout_ms_));
    return fd;
  }
  std::string host, port;
  if (!SplitInet(path_, &host, &port))
    return farm::Status::Invalid("bad sasl_path " + path_);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return farm::Status::Error("sasl_path " + path_ + ": " +
                               ::gai_strerror(rc));
  }
  farm::Status last =
      farm::Status::Error("sasl_path " + path_ + ": no address");
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    farm::UniqueFd fd(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0));
    if (!fd) continue;
    // SO_SNDTIMEO also bounds connect() on Linux.
    last = SetTimeouts(fd.get(), timeout_ms_);
    if (last.ok() && ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    if (last.ok()) last = farm::Status::FromErrno("connect " + path_, errno);
  }
  ::freeaddrinfo(found);
  return last;
}

farm::Status DovecotSasl::EnsureConnected() {
  if (fd_) return farm::Status::Ok();
  auto fd = Connect();
  if (!fd.ok()) return fd.status();
  fd_ = std::move(*fd);
  in_.clear();
  mechanisms_.clear();
  farm::Status s =
      SendLine("VERSION\t1\t2\nCPID\t" + std::to_string(::getpid()));
  while (s.ok()) {
    auto line = ReadLine();
    if (!line.ok()) {
      s = line.status();
      break;
    }
    std::vector<std::string> f = SplitDovecotLine(*line);
    if (f[0] == "VERSION" && (f.size() < 2 || f[1] != "1")) {
      s = farm::Status::Error("auth service speaks protocol version " +
                              (f.size() > 1 ? f[1] : std::string("?")) +
                              ", not 1");
    } else if (f[0] == "MECH" && f.size() >= 2 && IsMechanismName(f[1]) &&
               std::find(f.begin() + 2, f.end(), "private") == f.end()) {
      mechanisms_.push_back(f[1]);
    } else if (f[0] == "DONE") {
      return farm::Status::Ok();
    }
  }
  Drop();
  return s;
}

farm::Status DovecotSasl::SendLine(const std::string& line) {
  std::string data = line + "\n";
  farm::Status s = farm::WriteFull(fd_.get(), data.data(), data.size());
  if (!s.ok())
    return farm::Status::Error("auth service " + path_ + ": " + s.message());
  return s;
}

farm::StatusOr<std::string> DovecotSasl::ReadLine() {
  while (true) {
    size_t lf = in_.find('\n');
    if (lf != std::string::npos) {
      std::string line = in_.substr(0, lf);
      in_.erase(0, lf + 1);
      return line;
    }
    if (in_.size() > kMaxLine)
      return farm::Status::Error("auth service " + path_ + ": line too long");
    char buf[4096];
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return farm::Status::Closed("auth service " + path_ +
                                  " closed the connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return farm::Status::TempFail("auth service " + path_ +
                                    ": no answer in time");
    } else if (errno != EINTR) {
      return farm::Status::FromErrno("read from auth service " + path_, errno);
    }
  }
}

void DovecotSasl::Drop() {
  fd_.Reset();
  in_.clear();
  current_id_ = 0;
}

farm::StatusOr<std::vector<std::string>> DovecotSasl::Mechanisms() {
  farm::Status s = EnsureConnected();
  if (!s.ok()) return s;
  return mechanisms_;
}

farm::StatusOr<SaslStep> DovecotSasl::Exchange(const std::string& line) {
  farm::Status s = SendLine(line);
  farm::StatusOr<std::string> reply =
      s.ok() ? ReadLine() : farm::StatusOr<std::string>(s);
  if (!reply.ok()) {
    Drop();
    return reply.status();
  }
  auto step = DovecotStep(SplitDovecotLine(*reply), current_id_);
  if (!step.ok() || step->kind != SaslStep::Kind::kContinue) {
    current_id_ = 0;
    if (!step.ok()) Drop();
  }
  return step;
}

farm::StatusOr<SaslStep> DovecotSasl::Start(
    std::string_view mechanism,
    const std::optional<std::string>& initial_response,
    const SaslClientInfo& client) {
  if (current_id_ != 0) Cancel();
  MAILFARM_RETURN_IF_ERROR(EnsureConnected());
  current_id_ = next_id_++;
  // The session checked that mechanism, address and response hold no TAB or
  // LF; resp= must come last (Dovecot ignores what follows it).
  std::string line = "AUTH\t" + std::to_string(current_id_) + "\t" +
                     std::string(mechanism) + "\tservice=smtp\tnologin";
  if (!client.remote_address.empty()) {
    line += "\trip=" + client.remote_address +
            "\trport=" + std::to_string(client.remote_port);
  }
  if (client.secured) line += "\tsecured";
  if (initial_response) line += "\tresp=" + *initial_response;
  return Exchange(line);
}

farm::StatusOr<SaslStep> DovecotSasl::Continue(std::string_view response) {
  if (current_id_ == 0 || !fd_)
    return farm::Status::Error("no authentication in progress");
  return Exchange("CONT\t" + std::to_string(current_id_) + "\t" +
                  std::string(response));
}

void DovecotSasl::Cancel() {
  // Protocol v1.1 has no cancel that every Dovecot answers the same way; a
  // fresh connection next time is simple and cheap.
  if (current_id_ != 0) Drop();
}

}  // namespace smtpd
