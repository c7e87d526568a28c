// session.cc: the SMTP server state machine of mailfarm-smtpd (see session.h).
#include "smtpd/session.h"

#include <glog/logging.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "smtpd/data_reader.h"
#include "smtpd/proxy_protocol.h"

namespace smtpd {

namespace {

constexpr size_t kInputBuffer = 64 * 1024;
constexpr size_t kSinkChunk = 64 * 1024;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool InDomainList(const std::vector<std::string>& list,
                  const std::string& domain) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& d) {
    return EqualsIgnoreCase(d, domain);
  });
}

std::string AddressLiteral(const std::string& address) {
  if (address.find(':') != std::string::npos) return "[IPv6:" + address + "]";
  return "[" + address + "]";
}

std::string Rfc5322Date(time_t t) {
  struct tm tm;
  ::localtime_r(&t, &tm);
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed",
                                "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  long off = tm.tm_gmtoff / 60;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
                kDays[tm.tm_wday], tm.tm_mday, kMonths[tm.tm_mon],
                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
                off / 60, off % 60);
  return buf;
}

}  // namespace

Session::Session(const SessionOptions& options, Transport* transport,
                 MessageSink* sink, PeerAddress peer)
    : options_(options),
      transport_(transport),
      sink_(sink),
      peer_(peer),
      client_(std::move(peer)),
      in_(kInputBuffer) {}

void Session::Run() {
  if (options_.proxy_protocol && !ReadProxyHeader()) {
    Flush();
    return;
  }
  client_trusted_ = options_.trusted_networks.Contains(client_.address);
  if (!AdmitClient()) return;
  if (options_.implicit_tls && !StartImplicitTls()) return;
  Reply("220 " + options_.hostname + " " + options_.banner);
  while (true) {
    std::string line;
    switch (ReadCommandLine(&line)) {
      case LineStatus::kLine:
        if (line.find('\0') != std::string::npos) {
          ReplyError("500 5.5.2 Error: NUL character in command");
        } else if (!HandleCommand(line)) {
          return;
        }
        break;
      case LineStatus::kTooLong:
        ReplyError("500 5.5.2 Error: command line longer than 512 octets");
        break;
      case LineStatus::kTimeout:
        Reply("421 4.4.2 " + options_.hostname + " Error: timeout exceeded");
        End("timeout");
        return;
      case LineStatus::kClosed:
        End("lost connection");
        return;
      case LineStatus::kError:
        End("read error");
        return;
    }
    if (io_failed_) {
      End("write error");
      return;
    }
    if (errors_ >= options_.max_errors) {
      Reply("421 4.7.0 " + options_.hostname + " Error: too many errors");
      End("too many errors");
      return;
    }
  }
}

void Session::End(std::string reason) {
  Flush();
  end_reason_ = std::move(reason);
  if (mail_given_) sink_->Abort();
}

bool Session::ReadProxyHeader() {
  if (!options_.proxy_networks.Contains(peer_.address)) {
    LOG(WARNING) << "PROXY protocol listener: connection from unlisted address "
                 << peer_.address << " refused";
    Reply("421 4.7.0 " + options_.hostname + " Error: connection refused");
    end_reason_ = "proxy: peer not in proxy_networks";
    return false;
  }
  while (true) {
    ProxyHeader header;
    size_t consumed = 0;
    farm::Status s = ParseProxyHeader(in_.data() + in_begin_, Buffered(),
                                      &header, &consumed);
    if (s.ok()) {
      Consume(consumed);
      if (header.has_address)
        client_ = PeerAddress{header.source_address, header.source_port};
      return true;
    }
    if (s.code() != farm::Status::Code::kTempFail) {
      LOG(WARNING) << "bad PROXY header from " << peer_.address << ": "
                   << s.message();
      Reply("421 4.7.0 " + options_.hostname +
            " Error: bad PROXY protocol header");
      end_reason_ = "proxy: " + s.message();
      return false;
    }
    farm::Status fill = Fill(options_.command_timeout_ms);
    if (!fill.ok()) {
      end_reason_ = "proxy: " + fill.message();
      return false;
    }
  }
}

farm::Status Session::Fill(int timeout_ms) {
  // About to block: this is where pipelined replies leave in one write.
  if (!Flush()) return farm::Status::Error("write failed");
  if (in_begin_ > 0) {
    std::memmove(in_.data(), in_.data() + in_begin_, Buffered());
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  if (in_end_ == in_.size()) return farm::Status::Error("input buffer full");
  if (activity_) activity_(false);
  auto got =
      transport_->Read(in_.data() + in_end_, in_.size() - in_end_, timeout_ms);
  if (activity_) activity_(true);
  if (!got.ok()) return got.status();
  in_end_ += *got;
  return farm::Status::Ok();
}

void Session::Consume(size_t n) {
  in_begin_ += n;
  if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
}

Session::LineStatus Session::ReadCommandLine(std::string* line,
                                             size_t max_len) {
  bool too_long = false;
  while (true) {
    const char* start = in_.data() + in_begin_;
    const char* lf =
        static_cast<const char*>(std::memchr(start, '\n', Buffered()));
    if (lf != nullptr) {
      size_t len = lf - start + 1;  // with the LF
      if (!too_long && len <= max_len) {
        line->assign(start, len - 1);
        if (!line->empty() && line->back() == '\r') line->pop_back();
      }
      Consume(len);
      return too_long || len > max_len ? LineStatus::kTooLong
                                       : LineStatus::kLine;
    }
    if (Buffered() >= max_len) {
      // Over the limit: drop what we have and skip to the end of the line.
      too_long = true;
      Consume(Buffered());
    }
    farm::Status s = WaitForCommand();
    if (!s.ok()) {
      if (s.code() == farm::Status::Code::kTempFail)
        return LineStatus::kTimeout;
      if (s.code() == farm::Status::Code::kClosed) return LineStatus::kClosed;
      return LineStatus::kError;
    }
  }
}

void Session::Reply(std::string_view line) {
  out_.append(line);
  out_.append("\r\n");
}

void Session::ReplyError(std::string_view line) {
  ++errors_;
  Reply(line);
}

bool Session::Flush() {
  if (out_.empty() || io_failed_) return !io_failed_;
  farm::Status s = transport_->Write(out_, options_.command_timeout_ms);
  out_.clear();
  if (!s.ok()) {
    io_failed_ = true;
    VLOG(1) << "write to " << client_.address << " failed: " << s.message();
  }
  return s.ok();
}

void Session::ResetTransaction() {
  if (mail_given_) envelope_ = Envelope();
  mail_given_ = false;
}

std::string Session::Protocol() const {
  std::string p = envelope_.smtputf8 ? "UTF8SMTP" : (esmtp_ ? "ESMTP" : "SMTP");
  if (tls_active_) p += "S";
  if (!auth_user_.empty()) p += "A";  // RFC 3848
  return p;
}

bool Session::HandleCommand(std::string_view line) {
  Command cmd = ParseCommand(line);
  switch (cmd.verb) {
    case Verb::kHelo:
      return Helo(cmd.args, false);
    case Verb::kEhlo:
      return Helo(cmd.args, true);
    case Verb::kMail:
      return Mail(cmd.args);
    case Verb::kRcpt:
      return Rcpt(cmd.args);
    case Verb::kData:
      return Data(cmd.args);
    case Verb::kStartTls:
      return StartTls(cmd.args);
    case Verb::kAuth:
      return Auth(cmd.args);
    case Verb::kRset:
      if (!cmd.args.empty()) {
        ReplyError("501 5.5.4 Syntax: RSET");
      } else {
        ResetTransaction();
        Reply("250 2.0.0 Ok");
      }
      return true;
    case Verb::kNoop:
      Reply("250 2.0.0 Ok");
      return true;
    case Verb::kQuit:
      Reply("221 2.0.0 Bye");
      End("quit");
      return false;
    case Verb::kHelp:
      Reply(
          "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP "
          "VRFY STARTTLS");
      return true;
    case Verb::kVrfy:
      if (cmd.args.empty()) {
        ReplyError("501 5.5.4 Syntax: VRFY address");
      } else {
        Reply(
            "252 2.0.0 Cannot VRFY user, but will accept message and attempt "
            "delivery");
      }
      return true;
    case Verb::kNotImplemented:
      ReplyError("502 5.5.1 Error: command not implemented");
      return true;
    case Verb::kUnknown:
      ReplyError("500 5.5.2 Error: command not recognized");
      return true;
  }
  return true;
}

bool Session::Helo(std::string_view args, bool extended) {
  while (!args.empty() && args.back() == ' ') args.remove_suffix(1);
  if (!IsValidHeloArgument(args)) {
    ReplyError(extended ? "501 5.5.4 Syntax: EHLO hostname"
                        : "501 5.5.4 Syntax: HELO hostname");
    return true;
  }
  ResetTransaction();
  helo_ = std::string(args);
  esmtp_ = extended;
  if (!extended) {
    Reply("250 " + options_.hostname);
    return true;
  }
  Reply("250-" + options_.hostname);
  Reply("250-PIPELINING");
  Reply("250-SIZE " + std::to_string(options_.max_message_bytes));
  Reply("250-ENHANCEDSTATUSCODES");
  Reply("250-8BITMIME");
  if (!tls_active_ && transport_->CanStartTls()) Reply("250-STARTTLS");
  if (std::string auth = AuthKeyword(); !auth.empty()) Reply("250-" + auth);
  Reply("250 SMTPUTF8");
  return true;
}

bool Session::Mail(std::string_view args) {
  if (helo_.empty()) {
    ReplyError("503 5.5.1 Error: send HELO/EHLO first");
    return true;
  }
  if (mail_given_) {
    ReplyError("503 5.5.1 Error: nested MAIL command");
    return true;
  }
  if (!SubmissionPolicyAllows(true) || !CountMessage()) return true;
  PathArgs path;
  switch (ParsePathArgs(args, "FROM:", true, true, &path)) {
    case PathError::kNone:
      break;
    case PathError::kSyntax:
    case PathError::kBadParam:
      ReplyError("501 5.5.4 Syntax: MAIL FROM:<address>");
      return true;
    case PathError::kBadAddress:
      ReplyError("501 5.1.7 Bad sender address syntax");
      return true;
  }
  Envelope env;
  if (!path.params.empty() && !esmtp_) {
    ReplyError("555 5.5.4 Error: MAIL parameters need EHLO");
    return true;
  }
  for (const auto& [key, value] : path.params) {
    if (key == "SIZE") {
      uint64_t size = 0;
      auto [ptr, ec] =
          std::from_chars(value.data(), value.data() + value.size(), size);
      if (value.empty() || ec != std::errc() ||
          ptr != value.data() + value.size()) {
        ReplyError("501 5.5.4 Bad SIZE parameter");
        return true;
      }
      if (size > options_.max_message_bytes) {
        ReplyError("552 5.3.4 Message size exceeds fixed limit");
        return true;
      }
      env.announced_size = size;
    } else if (key == "BODY") {
      if (EqualsIgnoreCase(value, "8BITMIME")) {
        env.eight_bit = true;
      } else if (!EqualsIgnoreCase(value, "7BIT")) {
        ReplyError("501 5.5.4 Unsupported BODY type");
        return true;
      }
    } else if (key == "SMTPUTF8" && value.empty()) {
      env.smtputf8 = true;
    } else if (key == "AUTH" && options_.offer_auth) {
      // RFC 4954 5: the submitter's identity; a server may ignore it.
    } else {
      ReplyError("555 5.5.4 Unsupported option: " + Printable(key));
      return true;
    }
  }
  if (HasNonAscii(path.mailbox) && !env.smtputf8) {
    ReplyError("553 5.6.7 Error: non-ASCII address needs SMTPUTF8");
    return true;
  }
  env.sender = std::move(path.mailbox);
  envelope_ = std::move(env);
  mail_given_ = true;
  Reply("250 2.1.0 Ok");
  return true;
}

bool Session::RelayAllowed(const std::string& mailbox) const {
  if (client_trusted_ || !auth_user_.empty()) return true;
  // Routing tricks in the local part ("a%b@local", "b!a@local",
  // "\"a@b\"@local") must not turn a local domain into a relay.
  std::string_view local = LocalPartOf(mailbox);
  if (local.find_first_of("@%!") != std::string_view::npos) return false;
  std::string domain = DomainOf(mailbox);
  if (domain.empty() || domain.front() == '[') return false;
  return InDomainList(options_.local_domains, domain) ||
         InDomainList(options_.relay_domains, domain);
}

bool Session::Rcpt(std::string_view args) {
  if (helo_.empty()) {
    ReplyError("503 5.5.1 Error: send HELO/EHLO first");
    return true;
  }
  if (!mail_given_) {
    ReplyError("503 5.5.1 Error: need MAIL command");
    return true;
  }
  PathArgs path;
  switch (ParsePathArgs(args, "TO:", false, envelope_.smtputf8, &path)) {
    case PathError::kNone:
      break;
    case PathError::kSyntax:
    case PathError::kBadParam:
      ReplyError("501 5.5.4 Syntax: RCPT TO:<address>");
      return true;
    case PathError::kBadAddress:
      if (!envelope_.smtputf8 && HasNonAscii(args)) {
        ReplyError("553 5.6.7 Error: non-ASCII address needs SMTPUTF8");
      } else {
        ReplyError("501 5.1.3 Bad recipient address syntax");
      }
      return true;
  }
  if (!path.params.empty()) {
    ReplyError("555 5.5.4 Unsupported option: " +
               Printable(path.params.front().first));
    return true;
  }
  if (envelope_.recipients.size() >= options_.max_recipients) {
    ReplyError("452 4.5.3 Error: too many recipients");
    return true;
  }
  if (path.mailbox == "postmaster") {
    // RFC 5321 4.5.1: <Postmaster> must always be accepted.
    std::string domain = options_.local_domains.empty()
                             ? options_.hostname
                             : options_.local_domains.front();
    path.mailbox = "postmaster@" + domain;
  } else if (!RelayAllowed(path.mailbox)) {
    ReplyError("554 5.7.1 <" + Printable(path.mailbox) +
               ">: Relay access denied");
    return true;
  }
  if (!CountRecipient()) return true;
  envelope_.recipients.push_back(std::move(path.mailbox));
  Reply("250 2.1.5 Ok");
  return true;
}

std::string Session::ReceivedHeader() const {
  TlsInfo tls = transport_->tls_info();
  std::string h = "Received: from " + helo_ + " (" +
                  AddressLiteral(client_.address) + ")\r\n";
  if (!auth_user_.empty())
    h += "\t(Authenticated sender: " + Printable(auth_user_) + ")\r\n";
  h += "\tby " + options_.hostname + " (mailfarm) with " + Protocol();
  if (tls_active_ && !tls.protocol.empty()) {
    h += "\r\n\t(using " + tls.protocol + " with cipher " + tls.cipher + " (" +
         std::to_string(tls.bits) + "/" + std::to_string(tls.bits) + " bits))";
  }
  if (envelope_.recipients.size() == 1)
    h += "\r\n\tfor <" + envelope_.recipients.front() + ">";
  h += "; " + Rfc5322Date(options_.now()) + "\r\n";
  return h;
}

bool Session::Data(std::string_view args) {
  if (helo_.empty()) {
    ReplyError("503 5.5.1 Error: send HELO/EHLO first");
    return true;
  }
  if (!mail_given_) {
    ReplyError("503 5.5.1 Error: need MAIL command");
    return true;
  }
  if (envelope_.recipients.empty()) {
    ReplyError("503 5.5.1 Error: need RCPT command");
    return true;
  }
  if (!args.empty()) {
    ReplyError("501 5.5.4 Syntax: DATA");
    return true;
  }
  TlsInfo tls = transport_->tls_info();
  envelope_.client =
      ClientIdentity{helo_,
                     client_.address,
                     client_.port,
                     Protocol(),
                     tls_active_ ? tls.protocol + " " + tls.cipher : "",
                     auth_method_,
                     auth_user_};
  farm::Status begin = sink_->Begin(envelope_);
  if (!begin.ok()) {
    LOG(WARNING) << "queue unavailable for a message from " << client_.address
                 << ": " << begin.message();
    sink_->Abort();
    Reply("451 4.3.0 Error: queue unavailable, try again later");
    ResetTransaction();
    return true;
  }
  Reply("354 End data with <CR><LF>.<CR><LF>");
  DataReader reader(kMaxTextLine, options_.max_message_bytes);
  farm::Status sink_status;
  if (!ReceiveBody(&reader, &sink_status)) return false;
  if (reader.flags() != 0 || !sink_status.ok()) {
    sink_->Abort();
    ResetTransaction();
    RefuseMessage(reader.flags(), sink_status);
    return true;
  }
  auto reply = sink_->Finish();
  ReplyVerdict(reply, reader.message_bytes());
  ResetTransaction();
  return true;
}

bool Session::ReceiveBody(DataReader* reader, farm::Status* sink_status) {
  std::string chunk = ReceivedHeader();
  while (!reader->done()) {
    if (Buffered() == 0) {
      farm::Status s = Fill(options_.data_timeout_ms);
      if (!s.ok()) {
        sink_->Abort();
        ResetTransaction();
        if (s.code() == farm::Status::Code::kTempFail) {
          Reply("421 4.4.2 " + options_.hostname + " Error: timeout exceeded");
          End("timeout in DATA");
        } else {
          End("lost connection in DATA");
        }
        return false;
      }
    }
    Consume(reader->Feed(in_.data() + in_begin_, Buffered(), &chunk));
    if (reader->flags() != 0) {
      chunk.clear();  // the message will be refused: stop sending it
    } else if (chunk.size() >= kSinkChunk || reader->done()) {
      if (sink_status->ok()) *sink_status = sink_->Write(chunk);
      chunk.clear();
    }
  }
  return true;
}

void Session::RefuseMessage(uint32_t flags, const farm::Status& sink_status) {
  if (flags & DataReader::kTooBig) {
    ReplyError("552 5.3.4 Error: message size exceeds fixed limit");
  } else if (flags & (DataReader::kBareLf | DataReader::kBareCr)) {
    ReplyError(
        "550 5.5.2 Error: bare <CR> or <LF> in message; only <CR><LF> line "
        "endings are allowed");
  } else if (flags & DataReader::kNul) {
    ReplyError("550 5.6.0 Error: NUL character in message");
  } else if (flags & DataReader::kLongLine) {
    ReplyError("500 5.5.0 Error: message line longer than 1000 octets");
  } else {
    LOG(WARNING) << "queue write failed: " << sink_status.message();
    Reply("451 4.3.0 Error: queue unavailable, try again later");
  }
}

void Session::ReplyVerdict(const farm::StatusOr<SinkReply>& reply,
                           uint64_t size) {
  if (!reply.ok()) {
    LOG(WARNING) << "no verdict from the queue for a message from "
                 << client_.address << ": " << reply.status().message();
    Reply("451 4.3.0 Error: queue unavailable, try again later");
    return;
  }
  // The scheduler's text is shown to the client, its dsn only when its class
  // agrees with the reply code.
  const SinkReply& r = reply.value();
  switch (r.kind) {
    case SinkReply::Kind::kAccepted:
      ++messages_accepted_;
      LOG(INFO) << r.qid << ": client=[" << client_.address << "]"
                << (auth_user_.empty()
                        ? ""
                        : ", sasl_method=" + auth_method_ +
                              ", sasl_username=" + Printable(auth_user_))
                << ", from=<" << envelope_.sender
                << ">, nrcpt=" << envelope_.recipients.size()
                << ", size=" << size;
      Reply("250 2.0.0 Ok: queued as " + Printable(r.qid));
      break;
    case SinkReply::Kind::kTempFail:
      // 452 for a full queue (4.3.1), as Postfix says "452 4.3.1
      // Insufficient system storage"; 451 for any other local problem.
      Reply((r.dsn == "4.3.1" ? "452 " : "451 ") +
            (r.dsn.rfind("4.", 0) != 0 ? std::string("4.3.0")
                                       : Printable(r.dsn)) +
            " " +
            (r.text.empty() ? std::string("Error: try again later")
                            : Printable(r.text)));
      break;
    case SinkReply::Kind::kReject:
      Reply("554 " +
            (r.dsn.rfind("5.", 0) != 0 ? std::string("5.7.1")
                                       : Printable(r.dsn)) +
            " " +
            (r.text.empty() ? std::string("Error: message rejected")
                            : Printable(r.text)));
      break;
  }
}

bool Session::StartTls(std::string_view args) {
  if (tls_active_) {
    ReplyError("503 5.5.1 Error: TLS already active");
    return true;
  }
  if (!transport_->CanStartTls()) {
    ReplyError("502 5.5.1 Error: command not implemented");
    return true;
  }
  if (!args.empty()) {
    ReplyError("501 5.5.4 Syntax: STARTTLS");
    return true;
  }
  Reply("220 2.0.0 Ready to start TLS");
  if (!Flush()) {
    End("write error");
    return false;
  }
  // RFC 3207 / CVE-2011-0411: anything the client pipelined after STARTTLS was
  // sent in plaintext and must never be executed inside the TLS session.
  if (Buffered() > 0) {
    LOG(WARNING) << "discarding " << Buffered()
                 << " octets of plaintext pipelined after STARTTLS from "
                 << client_.address;
    Consume(Buffered());
  }
  farm::Status s = transport_->StartTls(options_.command_timeout_ms);
  if (!s.ok()) {
    LOG(WARNING) << "TLS handshake with " << client_.address
                 << " failed: " << s.message();
    end_reason_ = "TLS handshake failed";
    ResetTransaction();
    return false;
  }
  // RFC 3207 4.2: forget everything learnt before TLS.
  tls_active_ = true;
  helo_.clear();
  esmtp_ = false;
  auth_user_.clear();
  auth_method_.clear();
  ResetTransaction();
  return true;
}

}  // namespace smtpd
