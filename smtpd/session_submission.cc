// session_submission.cc: the submission side of an smtpd Session (see
// session.h): implicit TLS (RFC 8314, port 465), the STARTTLS-then-AUTH
// policy of submission listeners (RFC 6409, port 587), and SMTP AUTH (RFC
// 4954) relayed to a SaslServer. Replies follow Postfix's.
#include <glog/logging.h>

#include <algorithm>

#include "smtpd/session.h"

namespace smtpd {

namespace {

// RFC 4954 section 4: an AUTH exchange line may be this long.
constexpr size_t kMaxAuthLine = 12288;

bool IsBase64(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
  });
}

// RFC 4422 3.1 mechanism names, upper-cased; empty when malformed.
std::string MechanismName(std::string_view text) {
  if (text.empty() || text.size() > 20) return "";
  std::string out;
  for (char c : text) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_')) {
      return "";
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

bool Session::StartImplicitTls() {
  farm::Status s = transport_->StartTls(options_.command_timeout_ms);
  if (!s.ok()) {
    LOG(WARNING) << "TLS handshake with " << client_.address
                 << " failed: " << s.message();
    end_reason_ = "TLS handshake failed";
    return false;
  }
  tls_active_ = true;
  return true;
}

bool Session::SubmissionPolicyAllows(bool is_mail) {
  if (options_.require_tls && !tls_active_) {
    ReplyError("530 5.7.0 Must issue a STARTTLS command first");
    return false;
  }
  if (is_mail && options_.require_auth && auth_user_.empty()) {
    ReplyError("530 5.7.0 Authentication required");
    return false;
  }
  return true;
}

std::string Session::AuthKeyword() {
  if (!options_.offer_auth || sasl_ == nullptr) return "";
  // Passwords never cross the wire in clear (Postfix's smtpd_tls_auth_only).
  if (options_.require_tls && !tls_active_) return "";
  auto mechanisms = sasl_->Mechanisms();
  if (!mechanisms.ok()) {
    LOG(WARNING) << "SASL: " << mechanisms.status().message()
                 << " (AUTH not offered)";
    return "";
  }
  if (mechanisms->empty()) return "";
  std::string keyword = "AUTH";
  for (const std::string& m : *mechanisms) keyword += " " + m;
  return keyword;
}

bool Session::Auth(std::string_view args) {
  if (!options_.offer_auth || sasl_ == nullptr) {
    ReplyError("503 5.5.1 Error: authentication not enabled");
    return true;
  }
  if (!SubmissionPolicyAllows(false)) return true;
  if (helo_.empty()) {
    ReplyError("503 5.5.1 Error: send HELO/EHLO first");
    return true;
  }
  if (!auth_user_.empty()) {
    ReplyError("503 5.5.1 Error: already authenticated");
    return true;
  }
  if (mail_given_) {
    ReplyError("503 5.5.1 Error: MAIL transaction in progress");
    return true;
  }
  size_t sp = args.find(' ');
  std::string mechanism = MechanismName(args.substr(0, sp));
  std::optional<std::string> initial;
  if (sp != std::string_view::npos) {
    std::string_view response = args.substr(sp + 1);
    if (response.empty() || !IsBase64(response)) {
      ReplyError("501 5.5.2 Error: invalid base64 data in initial response");
      return true;
    }
    initial = response == "=" ? "" : std::string(response);
  }
  if (mechanism.empty()) {
    ReplyError("501 5.5.4 Syntax: AUTH mechanism");
    return true;
  }
  auto mechanisms = sasl_->Mechanisms();
  if (!mechanisms.ok()) {
    LOG(WARNING) << "SASL: " << mechanisms.status().message();
    Reply("454 4.7.0 Temporary authentication failure");
    return true;
  }
  if (std::find(mechanisms->begin(), mechanisms->end(), mechanism) ==
      mechanisms->end()) {
    ReplyError("504 5.5.4 Unsupported authentication mechanism");
    return true;
  }
  SaslClientInfo info{client_.address, client_.port, tls_active_};
  return AuthExchange(mechanism, sasl_->Start(mechanism, initial, info));
}

bool Session::AuthExchange(const std::string& mechanism,
                           farm::StatusOr<SaslStep> step) {
  const std::string who = "[" + client_.address + "]";
  while (true) {
    if (!step.ok()) {
      LOG(WARNING) << who << ": SASL " << mechanism
                   << " authentication aborted: " << step.status().message();
      Reply("454 4.7.0 Temporary authentication failure");
      return true;
    }
    switch (step->kind) {
      case SaslStep::Kind::kOk:
        auth_user_ = step->user;
        auth_method_ = mechanism;
        LOG(INFO) << who << ": SASL " << mechanism
                  << " authentication succeeded: sasl_username="
                  << Printable(auth_user_);
        Reply("235 2.7.0 Authentication successful");
        return true;
      case SaslStep::Kind::kFail:
        LOG(WARNING) << who << ": SASL " << mechanism
                     << " authentication failed: " << Printable(step->reason)
                     << (step->user.empty()
                             ? ""
                             : ", sasl_username=" + Printable(step->user));
        ReplyError("535 5.7.8 Error: authentication failed: " +
                   (step->reason.empty() ? std::string("authentication failure")
                                         : Printable(step->reason)));
        return true;
      case SaslStep::Kind::kTempFail:
        LOG(WARNING) << who << ": SASL " << mechanism
                     << " authentication temporarily failed: "
                     << Printable(step->reason);
        Reply("454 4.7.0 Temporary authentication failure");
        return true;
      case SaslStep::Kind::kContinue:
        break;
    }
    Reply("334 " + Printable(step->challenge));
    std::string line;
    LineStatus got = ReadCommandLine(&line, kMaxAuthLine);
    if (got != LineStatus::kLine) sasl_->Cancel();
    switch (got) {
      case LineStatus::kLine:
        break;
      case LineStatus::kTooLong:
        ReplyError("500 5.5.6 Error: authentication exchange line too long");
        return true;
      case LineStatus::kTimeout:
        Reply("421 4.4.2 " + options_.hostname + " Error: timeout exceeded");
        End("timeout in AUTH");
        return false;
      case LineStatus::kClosed:
      case LineStatus::kError:
        End("lost connection in AUTH");
        return false;
    }
    if (line == "*") {
      sasl_->Cancel();
      ReplyError("501 5.7.0 Authentication aborted");
      return true;
    }
    if (!IsBase64(line)) {
      sasl_->Cancel();
      ReplyError("501 5.5.2 Error: invalid base64 data");
      return true;
    }
    step = sasl_->Continue(line);
  }
}

}  // namespace smtpd
