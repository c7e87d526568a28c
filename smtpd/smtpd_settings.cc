// smtpd_settings.cc: config -> smtpd settings, with the safety checks.
#include "smtpd/smtpd_settings.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "farm/inherited_key.h"

namespace smtpd {

namespace {

std::vector<std::string> LowerDomains(
    const google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<std::string> out;
  for (std::string d : in) {
    std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) {
      return static_cast<char>(std::tolower(c));
    });
    if (!d.empty() && d.back() == '.') d.pop_back();
    out.push_back(std::move(d));
  }
  return out;
}

farm::StatusOr<CidrList> Networks(
    const google::protobuf::RepeatedPtrField<std::string>& in,
    const char* key) {
  auto list = CidrList::Parse(std::vector<std::string>(in.begin(), in.end()));
  if (!list.ok())
    return farm::Status::Invalid(std::string("smtpd.") + key + ": " +
                                 list.status().message());
  return list;
}

ListenerMode ModeOf(mailfarm::config::Listener::Mode mode) {
  switch (mode) {
    case mailfarm::config::Listener::SUBMISSION:
      return ListenerMode::kSubmission;
    case mailfarm::config::Listener::SUBMISSIONS:
      return ListenerMode::kSubmissions;
    default:
      return ListenerMode::kSmtp;
  }
}

}  // namespace

SessionOptions OptionsForListener(const SessionOptions& base,
                                  const ListenerSettings& listener) {
  SessionOptions options = base;
  bool submission = listener.mode != ListenerMode::kSmtp;
  options.implicit_tls = listener.mode == ListenerMode::kSubmissions;
  options.require_tls = listener.mode == ListenerMode::kSubmission;
  options.offer_auth = submission;
  options.require_auth = submission;
  return options;
}

farm::StatusOr<std::shared_ptr<const SmtpdSettings>> BuildSettings(
    const farm::Config& config, int tls_key_fd) {
  const auto& c = config.smtpd();
  auto settings = std::make_shared<SmtpdSettings>();
  SessionOptions& s = settings->session;
  s.hostname = farm::Hostname(config);
  s.banner = c.banner();
  s.max_message_bytes = c.max_message_bytes();
  s.max_recipients = std::max<uint32_t>(1, c.max_recipients());
  s.max_errors = std::max<uint32_t>(1, c.max_errors());
  s.command_timeout_ms =
      static_cast<int>(std::max<uint32_t>(1, c.command_timeout_ms()));
  s.data_timeout_ms =
      static_cast<int>(std::max<uint32_t>(1, c.data_timeout_ms()));
  s.max_session_ms =
      static_cast<int>(std::max<uint32_t>(1, c.max_session_ms()));
  s.stress_command_timeout_ms =
      static_cast<int>(std::max<uint32_t>(1, c.stress_command_timeout_ms()));
  s.local_domains = LowerDomains(config.routing().local_domains());
  s.relay_domains = LowerDomains(config.routing().relay_domains());
  auto trusted = Networks(c.trusted_networks(), "trusted_networks");
  if (!trusted.ok()) return trusted.status();
  for (const Cidr& net : trusted->entries()) {
    if (net.WrittenPrefix() == 0) {
      return farm::Status::Invalid(
          "smtpd.trusted_networks: a /0 network trusts every address on the "
          "Internet and would "
          "make an open relay; list the networks of your own clients instead");
    }
  }
  s.trusted_networks = std::move(*trusted);
  auto proxies = Networks(c.proxy_networks(), "proxy_networks");
  if (!proxies.ok()) return proxies.status();
  s.proxy_networks = std::move(*proxies);

  if (c.listen_size() == 0) {
    mailfarm::config::Listener def;  // 127.0.0.1:2525
    settings->listeners.push_back(
        {def.address(), static_cast<int>(def.port()), false});
  }
  for (const auto& l : c.listen()) {
    if (l.port() == 0 || l.port() > 65535) {
      return farm::Status::Invalid("smtpd.listen: bad port " +
                                   std::to_string(l.port()));
    }
    if (!IpAddress::Parse(l.address())) {
      return farm::Status::Invalid(
          "smtpd.listen: not an IPv4/IPv6 address: \"" + l.address() + "\"");
    }
    if (l.proxy_protocol() && s.proxy_networks.entries().empty()) {
      return farm::Status::Invalid(
          "smtpd.listen " + l.address() + ":" + std::to_string(l.port()) +
          ": proxy_protocol needs smtpd.proxy_networks (the load "
          "balancers allowed to send PROXY headers)");
    }
    settings->listeners.push_back({l.address(), static_cast<int>(l.port()),
                                   l.proxy_protocol(), ModeOf(l.mode())});
  }
  settings->proxy_session = s;
  settings->proxy_session.proxy_protocol = true;

  if (c.has_tls_cert_file() != c.has_tls_key_file()) {
    return farm::Status::Invalid(
        "smtpd: tls_cert_file and tls_key_file go together");
  }
  if (c.has_tls_cert_file()) {
    std::optional<std::string> key_pem;
    if (tls_key_fd >= 0) {
      auto key = farm::ReadKeyFd(tls_key_fd);
      if (!key.ok())
        return farm::Status::Invalid("smtpd: " + key.status().message());
      key_pem = std::move(*key);
    }
    auto tls = TlsServerContext::Create(farm::ResolvePath(c.tls_cert_file()),
                                        farm::ResolvePath(c.tls_key_file()),
                                        key_pem ? &*key_pem : nullptr);
    if (!tls.ok())
      return farm::Status::Invalid("smtpd: " + tls.status().message());
    settings->tls = std::move(*tls);
  }
  AnvilLimits& anvil = settings->anvil;
  uint32_t max_children = std::max<uint32_t>(1, c.farm().max_children());
  anvil.concurrency = c.client_connection_count_limit() > 0
                          ? c.client_connection_count_limit()
                          : std::max<uint32_t>(1, max_children / 2);
  anvil.connection_rate = c.client_connection_rate_limit();
  anvil.message_rate = c.client_message_rate_limit();
  anvil.recipient_rate = c.client_recipient_rate_limit();
  anvil.rate_unit_ms =
      int64_t{1000} * std::max<uint32_t>(1, c.anvil_rate_time_unit_s());
  // "Near max_children": four in five children hold a session.
  anvil.stress_sessions = std::max<uint32_t>(1, max_children * 4 / 5);
  settings->sasl_path = c.sasl_path();
  settings->sasl_timeout_ms =
      static_cast<int>(std::max<uint32_t>(1, c.sasl_timeout_ms()));
  settings->inject_socket = farm::InjectSocketPath(config);
  settings->max_frame_bytes = config.scheduler().max_frame_bytes();
  settings->inject_timeout_ms =
      static_cast<int>(std::max<uint32_t>(1, c.inject_timeout_ms()));
  return std::shared_ptr<const SmtpdSettings>(std::move(settings));
}

}  // namespace smtpd
