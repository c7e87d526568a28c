// config.cc: TextFormat parsing of mailfarm.conf with file:line:col errors,
// semantic checks, and the paths derived from the config.
#include "farm/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "farm/ascii.h"

#ifndef MAILFARM_CONFIG_PATH
#error "MAILFARM_CONFIG_PATH is set by farm/CMakeLists.txt"
#endif

namespace farm {

const char kDefaultConfigPath[] = MAILFARM_CONFIG_PATH;

namespace {

using mailfarm::config::FarmConfig;

// Keeps the first error TextFormat reports, with its position.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (!has_error_) {
      has_error_ = true;
      // TextFormat counts from zero; editors count from one.
      text_ = std::to_string(line + 1) + ":" + std::to_string(column + 1) +
              ": " + message;
    }
  }
  bool has_error() const { return has_error_; }
  const std::string& text() const { return text_; }

 private:
  bool has_error_ = false;
  std::string text_;
};

void ResolveInPlace(std::string* path) {
  if (!path->empty()) *path = ResolvePath(*path);
}

// A command's argv[0] is resolved only when it names a relative file ("bin/x");
// a bare name ("spamc") is looked up in PATH at run time.
void ResolveCommand(google::protobuf::RepeatedPtrField<std::string>* argv) {
  if (!argv->empty() && (*argv)[0].find('/') != std::string::npos) {
    ResolveInPlace(&(*argv)[0]);
  }
}

void ResolveAllPaths(Config* c) {
  auto* paths = c->mutable_paths();
  paths->set_spool_dir(ResolvePath(paths->spool_dir()));
  paths->set_run_dir(ResolvePath(paths->run_dir()));
  if (!paths->log_dir().empty())
    paths->set_log_dir(ResolvePath(paths->log_dir()));
  if (paths->has_bin_dir()) ResolveInPlace(paths->mutable_bin_dir());
  if (paths->has_pid_file()) ResolveInPlace(paths->mutable_pid_file());
  if (c->routing().has_aliases_file())
    ResolveInPlace(c->mutable_routing()->mutable_aliases_file());
  if (c->smtpd().has_tls_cert_file())
    ResolveInPlace(c->mutable_smtpd()->mutable_tls_cert_file());
  if (c->smtpd().has_tls_key_file())
    ResolveInPlace(c->mutable_smtpd()->mutable_tls_key_file());
  if (c->smtpd().has_sasl_path() &&
      c->smtpd().sasl_path().rfind("inet:", 0) != 0) {
    ResolveInPlace(c->mutable_smtpd()->mutable_sasl_path());
  }
  if (c->has_filter_rules()) {
    auto* rules = c->mutable_filter_rules();
    for (auto& key : *rules->mutable_dkim()) {
      if (key.has_private_key_file())
        ResolveInPlace(key.mutable_private_key_file());
    }
    if (rules->has_scanner())
      ResolveCommand(rules->mutable_scanner()->mutable_argv());
  }
  for (auto& channel : *c->mutable_channel()) {
    if (channel.smtp().tls().has_ca_file()) {
      ResolveInPlace(channel.mutable_smtp()->mutable_tls()->mutable_ca_file());
    }
    // The mailbox template is a path too; resolving its fixed prefix is enough.
    if (channel.type() == mailfarm::config::ChannelConfig::LOCAL) {
      channel.mutable_local()->set_mailbox(
          ResolvePath(channel.local().mailbox()));
    }
    if (channel.has_pipe())
      ResolveCommand(channel.mutable_pipe()->mutable_argv());
  }
}

// Postfix's mydestination default: the host name and localhost are local
// unless routing.hostname_is_local is false or no local channel exists (a
// config that delivers nothing locally).
void AddHostnameDomains(Config* c) {
  auto* routing = c->mutable_routing();
  if (!routing->hostname_is_local() ||
      FindChannel(*c, routing->local_channel()) == nullptr) {
    return;
  }
  for (std::string domain : {Hostname(*c), std::string("localhost")}) {
    domain = AsciiLower(domain);
    bool listed = false;
    for (const auto& d : routing->local_domains())
      listed |= AsciiLower(d) == domain;
    if (!listed && !domain.empty()) routing->add_local_domains(domain);
  }
}

Status ValidateFarm(const std::string& what, const FarmConfig& farm) {
  if (farm.max_children() < 1)
    return Status::Invalid(what + ": max_children must be >= 1");
  if (farm.min_spare() > farm.max_spare()) {
    return Status::Invalid(what + ": min_spare (" +
                           std::to_string(farm.min_spare()) +
                           ") is larger than max_spare (" +
                           std::to_string(farm.max_spare()) + ")");
  }
  if (farm.start_children() > farm.max_children()) {
    return Status::Invalid(what +
                           ": start_children is larger than max_children");
  }
  if (farm.max_frame_bytes() < 1024)
    return Status::Invalid(what + ": max_frame_bytes < 1024");
  return Status::Ok();
}

bool ValidChannelName(const std::string& name) {
  if (name.empty() || name.size() > 32) return false;
  for (char ch : name) {
    if (!(isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_'))
      return false;
  }
  return true;
}

}  // namespace

std::string ResolvePath(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  std::string rel = path;
  while (rel.rfind("./", 0) == 0) rel.erase(0, 2);
  return std::string(cwd) + "/" + rel;
}

StatusOr<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno("cannot read config " + path, errno);
  std::stringstream text;
  text << in.rdbuf();

  Config config;
  FirstErrorCollector errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &config)) {
    return Status::Invalid(
        path + ":" + (errors.has_error() ? errors.text() : "parse error"));
  }
  Status valid = ValidateConfig(config);
  if (!valid.ok()) return Status::Invalid(path + ": " + valid.message());
  ResolveAllPaths(&config);
  AddHostnameDomains(&config);
  return config;
}

Status ValidateConfig(const Config& config) {
  MAILFARM_RETURN_IF_ERROR(ValidateFarm("router", config.router()));
  MAILFARM_RETURN_IF_ERROR(ValidateFarm("filter", config.filter()));
  MAILFARM_RETURN_IF_ERROR(ValidateFarm("smtpd.farm", config.smtpd().farm()));
  std::set<std::string> channels;
  for (const auto& channel : config.channel()) {
    if (!ValidChannelName(channel.name())) {
      return Status::Invalid("channel name \"" + channel.name() +
                             "\" must be 1-32 letters, digits, '-' or '_'");
    }
    if (!channels.insert(channel.name()).second) {
      return Status::Invalid("channel \"" + channel.name() +
                             "\" is defined twice");
    }
    MAILFARM_RETURN_IF_ERROR(
        ValidateFarm("channel " + channel.name() + " farm", channel.farm()));
    if (channel.concurrency() < 1) {
      return Status::Invalid("channel " + channel.name() +
                             ": concurrency must be >= 1");
    }
  }
  for (const auto& route : config.routing().route()) {
    if (route.domain().empty()) return Status::Invalid("a route has no domain");
    if (!channels.count(route.channel())) {
      return Status::Invalid("route for \"" + route.domain() +
                             "\" names unknown channel \"" + route.channel() +
                             "\"");
    }
  }
  if (config.routing().local_domains_size() > 0 &&
      !channels.count(config.routing().local_channel())) {
    return Status::Invalid("routing.local_channel \"" +
                           config.routing().local_channel() +
                           "\" is not a configured channel");
  }
  for (const auto& listener : config.smtpd().listen()) {
    if (listener.port() > 65535) {
      return Status::Invalid("smtpd listener port " +
                             std::to_string(listener.port()) +
                             " is out of range");
    }
    if (listener.mode() != mailfarm::config::Listener::SMTP) {
      const auto& smtpd = config.smtpd();
      std::string where =
          "smtpd listener port " + std::to_string(listener.port()) + " (" +
          mailfarm::config::Listener::Mode_Name(listener.mode()) + ")";
      if (!smtpd.has_tls_cert_file() || !smtpd.has_tls_key_file())
        return Status::Invalid(where +
                               " needs smtpd.tls_cert_file and "
                               "smtpd.tls_key_file");
      if (smtpd.sasl_path().empty())
        return Status::Invalid(where +
                               " needs smtpd.sasl_path (Dovecot's "
                               "auth-client socket)");
      if (listener.mode() == mailfarm::config::Listener::SUBMISSIONS &&
          listener.proxy_protocol()) {
        return Status::Invalid(where +
                               ": proxy_protocol with implicit TLS "
                               "is not supported");
      }
    }
  }
  for (const auto& channel : config.channel()) {
    for (const std::string* rate :
         {&channel.rate(), &channel.destination_rate()}) {
      if (rate->empty()) continue;
      auto parsed = ParseRate(*rate);
      if (!parsed.ok()) {
        return Status::Invalid("channel " + channel.name() + ": " +
                               parsed.status().message());
      }
    }
  }
  for (const auto& o : config.destination()) {
    if (o.destination().empty())
      return Status::Invalid("a destination override names no destination");
    if (o.has_channel() && !channels.count(o.channel())) {
      return Status::Invalid("destination \"" + o.destination() +
                             "\" names unknown channel \"" + o.channel() +
                             "\"");
    }
    if (o.has_concurrency() && o.concurrency() < 1) {
      return Status::Invalid("destination \"" + o.destination() +
                             "\": concurrency must be >= 1");
    }
    if (o.has_rate()) {
      auto parsed = ParseRate(o.rate());
      if (!parsed.ok()) {
        return Status::Invalid("destination \"" + o.destination() +
                               "\": " + parsed.status().message());
      }
    }
  }
  const auto& sched = config.scheduler();
  if (sched.min_backoff_s() > sched.max_backoff_s()) {
    return Status::Invalid(
        "scheduler.min_backoff_s is larger than max_backoff_s");
  }
  return Status::Ok();
}

StatusOr<double> ParseRate(const std::string& text) {
  size_t slash = text.find('/');
  double per = 0;
  if (slash != std::string::npos && slash + 2 == text.size()) {
    switch (text[slash + 1]) {
      case 's':
        per = 1;
        break;
      case 'm':
        per = 60;
        break;
      case 'h':
        per = 3600;
        break;
      default:
        break;
    }
  }
  char* end = nullptr;
  std::string count = text.substr(0, slash == std::string::npos ? 0 : slash);
  double n = count.empty() ? 0 : std::strtod(count.c_str(), &end);
  if (per == 0 || end == nullptr || *end != '\0' || !(n > 0) ||
      !std::isfinite(n)) {
    return Status::Invalid("rate \"" + text +
                           "\" is not of the form N/s, N/m or N/h (N > 0)");
  }
  return n / per;
}

std::string SpoolDir(const Config& config) {
  return config.paths().spool_dir();
}
std::string RunDir(const Config& config) { return config.paths().run_dir(); }

std::string PidFilePath(const Config& config) {
  if (!config.paths().pid_file().empty()) return config.paths().pid_file();
  std::string run_dir = RunDir(config);
  while (run_dir.size() > 1 && run_dir.back() == '/') run_dir.pop_back();
  return run_dir + ".pid";
}

std::string Hostname(const Config& config) {
  if (config.has_hostname() && !config.hostname().empty())
    return config.hostname();
  char name[256] = {0};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

std::string BinDir(const Config& config) {
  if (config.paths().has_bin_dir()) return config.paths().bin_dir();
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return ".";
  std::string exe(self, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

std::string FarmSocketPath(const Config& config, const std::string& farm) {
  return RunDir(config) + "/" + farm + ".sock";
}
std::string ScoreboardPath(const Config& config, const std::string& farm) {
  return RunDir(config) + "/" + farm + ".scoreboard";
}
std::string InjectSocketPath(const Config& config) {
  return RunDir(config) + "/inject.sock";
}
std::string ControlSocketPath(const Config& config) {
  return RunDir(config) + "/control.sock";
}
std::string TransportFarmName(const std::string& channel) {
  return "transport-" + channel;
}

const mailfarm::config::ChannelConfig* FindChannel(const Config& config,
                                                   const std::string& name) {
  for (const auto& channel : config.channel()) {
    if (channel.name() == name) return &channel;
  }
  return nullptr;
}

}  // namespace farm
