// recipient_resolver.cc: alias expansion and routing of one recipient (see
// recipient_resolver.h). Expansion is a depth-first walk that keeps the alias
// names on the current path (loop detection) and every name already expanded
// (duplicate suppression across branches).
#include "router/recipient_resolver.h"

#include <glog/logging.h>
#include <pwd.h>

#include <algorithm>
#include <cctype>

#include "farm/ascii.h"

namespace router {
namespace {

struct Failure {
  std::string dsn;
  std::string text;
};

std::string JoinPath(const std::vector<std::string>& names,
                     const std::string& last) {
  std::string out;
  for (const auto& n : names) out += n + " -> ";
  return out + last;
}

}  // namespace

struct RecipientResolver::Expansion {
  std::vector<mailfarm::Route> routes;
  std::set<std::string> route_keys;
  std::vector<std::string> path;  // alias names being expanded
  std::unordered_set<std::string>
      expanded;                      // alias names and include files done
  std::optional<Failure> perm;       // first permanent failure
  std::optional<Failure> temp;       // first temporary failure
  std::optional<std::string> loop;   // first loop seen, as "a -> b -> a"
  std::vector<std::string> dropped;  // failed alias members, for the text

  void AddRoute(std::string address, const std::string& channel,
                const std::string& nexthop) {
    std::string key =
        channel + '\0' + nexthop + '\0' + farm::AsciiLower(address);
    if (!route_keys.insert(key).second) return;
    mailfarm::Route& r = routes.emplace_back();
    r.set_address(std::move(address));
    r.set_channel(channel);
    r.set_nexthop(nexthop);
  }
  void Perm(const std::string& dsn, const std::string& text) {
    if (!path.empty()) dropped.push_back(text);
    if (!perm) perm = Failure{dsn, text};
  }
  void Temp(const std::string& text) {
    if (!temp) temp = Failure{"4.3.0", text};
  }
};

namespace {
// Whether the passwd database (files, NSS) has an account named `user`.
// getpwnam_r: the resolver may be called from several threads.
bool SystemAccountExists(const std::string& user) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  return ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) == 0 &&
         found != nullptr;
}
}  // namespace

farm::StatusOr<RouterTables> LoadRouterTables(
    const mailfarm::config::RoutingConfig& config, bool strict) {
  auto routes = RoutingTable::Build(config);
  if (!routes.ok()) return routes.status();
  RouterTables tables{config, std::move(routes.value()), std::nullopt,
                      farm::Status::Ok()};
  if (config.has_aliases_file() && !config.aliases_file().empty()) {
    auto aliases = AliasTable::Load(config.aliases_file(),
                                    config.case_sensitive_local_parts());
    if (aliases.ok()) {
      tables.aliases = std::move(aliases.value());
    } else if (strict) {
      return farm::Status::Invalid("routing.aliases_file: " +
                                   aliases.status().message());
    } else {
      LOG(ERROR) << "aliases file unusable, local recipients will be deferred: "
                 << aliases.status().message();
      tables.aliases_error = aliases.status();
    }
  }
  return tables;
}

RecipientResolver::RecipientResolver(const RouterTables& tables,
                                     IncludeLoader include)
    : tables_(tables), include_(std::move(include)) {
  for (const auto& d : tables_.config.local_domains())
    local_domains_.insert(NormalizeDomain(d));
  for (const auto& u : tables_.config.local_users())
    local_users_.insert(NormalizeLocal(u));
}

bool RecipientResolver::IsLocalDomain(const std::string& domain) const {
  return local_domains_.count(domain) > 0;
}

bool RecipientResolver::UserExists(const std::string& user) const {
  return tables_.config.local_users_any() || local_users_.count(user) > 0 ||
         (tables_.config.local_users_from_passwd() &&
          SystemAccountExists(user));
}

std::string RecipientResolver::NormalizeLocal(const std::string& local) const {
  return tables_.config.case_sensitive_local_parts() ? local
                                                     : farm::AsciiLower(local);
}

std::string RecipientResolver::StripExtension(const std::string& local) const {
  const std::string& delimiters = tables_.config.recipient_delimiter();
  if (delimiters.empty()) return local;
  size_t pos = local.find_first_of(delimiters);
  // "+tag" alone is a name, not an extension of an empty user.
  return pos == std::string::npos || pos == 0 ? local : local.substr(0, pos);
}

mailfarm::RecipientResult RecipientResolver::Resolve(
    const std::string& address) const {
  Expansion x;
  const std::string default_domain =
      tables_.config.local_domains_size() > 0
          ? NormalizeDomain(tables_.config.local_domains(0))
          : std::string();
  ExpandAddress(address, default_domain, 0, x);

  mailfarm::RecipientResult result;
  if (x.temp) {
    result.set_outcome(mailfarm::OUTCOME_TEMPFAIL);
    result.set_dsn(x.temp->dsn);
    result.set_text(x.temp->text);
  } else if (!x.routes.empty()) {
    result.set_outcome(mailfarm::OUTCOME_OK);
    result.set_dsn("2.0.0");
    std::string text = "routed to " + std::to_string(x.routes.size()) +
                       " destination" + (x.routes.size() == 1 ? "" : "s");
    for (const auto& d : x.dropped) text += "; dropped alias member " + d;
    if (x.loop) text += "; alias loop ignored: " + *x.loop;
    result.set_text(text);
    for (auto& r : x.routes) *result.add_routes() = std::move(r);
    if (!x.dropped.empty())
      LOG(WARNING) << "<" << address << ">: " << result.text();
  } else if (x.perm) {
    result.set_outcome(mailfarm::OUTCOME_PERMFAIL);
    result.set_dsn(x.perm->dsn);
    result.set_text(x.perm->text);
  } else if (x.loop) {
    result.set_outcome(mailfarm::OUTCOME_PERMFAIL);
    result.set_dsn("5.4.6");
    result.set_text("<" + address + ">: alias loop: " + *x.loop);
  } else {
    result.set_outcome(mailfarm::OUTCOME_PERMFAIL);
    result.set_dsn("5.1.1");
    result.set_text("<" + address + ">: alias expands to no recipients");
  }
  return result;
}

void RecipientResolver::ExpandAddress(const std::string& address,
                                      const std::string& default_domain,
                                      int depth, Expansion& x) const {
  size_t at = address.rfind('@');
  std::string local = at == std::string::npos ? address : address.substr(0, at);
  std::string domain = at == std::string::npos
                           ? default_domain
                           : NormalizeDomain(address.substr(at + 1));
  if (local.empty() || domain.empty() ||
      std::any_of(address.begin(), address.end(), [](unsigned char c) {
        return std::isspace(c) || std::iscntrl(c);
      })) {
    x.Perm("5.1.3", "<" + address + ">: bad address syntax");
    return;
  }
  if (IsLocalDomain(domain)) {
    ExpandLocal(local, domain, depth, /*alias_lookup=*/true, x);
    return;
  }
  const RouteTarget* target = tables_.routes.Lookup(domain);
  if (target == nullptr) {
    x.Perm("5.4.4", "<" + address + ">: no route to domain " + domain);
    return;
  }
  // Remote local parts are case-sensitive (RFC 5321 2.4): keep them as given.
  x.AddRoute(local + "@" + domain, target->channel, target->nexthop);
}

void RecipientResolver::ExpandLocal(const std::string& local,
                                    const std::string& domain, int depth,
                                    bool alias_lookup, Expansion& x) const {
  const std::string key = NormalizeLocal(local);
  const std::string base = StripExtension(key);
  if (alias_lookup && !tables_.aliases_error.ok()) {
    x.Temp("<" + local + "@" + domain +
           ">: aliases unavailable: " + tables_.aliases_error.message());
    return;
  }
  if (alias_lookup && tables_.aliases) {
    std::string name = key;
    const std::vector<AliasTarget>* targets = tables_.aliases->Find(key);
    if (targets == nullptr && base != key) {
      name = base;
      targets = tables_.aliases->Find(base);
    }
    if (targets != nullptr) {
      if (std::find(x.path.begin(), x.path.end(), name) != x.path.end()) {
        if (!x.loop) x.loop = JoinPath(x.path, name);
        return;
      }
      if (!x.expanded.insert(name).second)
        return;  // reached twice: already routed
      x.path.push_back(name);
      ExpandTargets(*targets, name, domain, depth + 1, /*from_include=*/false,
                    x);
      x.path.pop_back();
      return;
    }
  }
  if (!UserExists(base)) {
    x.Perm("5.1.1", "<" + base + "@" + domain + ">: user unknown");
    return;
  }
  x.AddRoute(base + "@" + domain, tables_.config.local_channel(), "");
}

void RecipientResolver::ExpandTargets(const std::vector<AliasTarget>& targets,
                                      const std::string& owner,
                                      const std::string& domain, int depth,
                                      bool from_include, Expansion& x) const {
  if (depth > static_cast<int>(tables_.config.alias_max_depth())) {
    x.Perm("5.4.6",
           "<" + owner + "@" + domain + ">: alias expansion deeper than " +
               std::to_string(tables_.config.alias_max_depth()) + " levels");
    return;
  }
  const std::string owner_address = owner + "@" + domain;
  for (const AliasTarget& t : targets) {
    switch (t.kind) {
      case AliasTarget::Kind::kAddress: {
        // "root: root, backup" names itself: the mailbox, not a loop
        // (sendmail's rule).
        size_t at = t.value.rfind('@');
        std::string t_local =
            at == std::string::npos ? t.value : t.value.substr(0, at);
        std::string t_domain = at == std::string::npos
                                   ? domain
                                   : NormalizeDomain(t.value.substr(at + 1));
        if (t_domain == domain && NormalizeLocal(t_local) == owner) {
          ExpandLocal(t_local, domain, depth, /*alias_lookup=*/false, x);
        } else {
          ExpandAddress(t.value, domain, depth, x);
        }
        break;
      }
      case AliasTarget::Kind::kMailbox:
        ExpandLocal(t.value, domain, depth, /*alias_lookup=*/false, x);
        break;
      case AliasTarget::Kind::kPipe:
      case AliasTarget::Kind::kFile: {
        const bool pipe = t.kind == AliasTarget::Kind::kPipe;
        if (from_include && !tables_.config.include_allows_pipes_and_files()) {
          x.Perm("5.7.1", "<" + owner_address + ">: " + (pipe ? "|" : "") +
                              t.value +
                              " from an :include: file is not allowed");
          break;
        }
        x.AddRoute(owner_address,
                   pipe ? tables_.config.pipe_channel()
                        : tables_.config.file_channel(),
                   t.value);
        break;
      }
      case AliasTarget::Kind::kInclude: {
        if (!x.expanded.insert(":include:" + t.value).second) break;
        auto included = include_(t.value);
        if (!included.ok()) {
          x.Temp("<" + owner_address + ">: cannot use :include:" + t.value +
                 ": " + included.status().message());
          break;
        }
        ExpandTargets(included.value(), owner, domain, depth + 1,
                      /*from_include=*/true, x);
        break;
      }
    }
  }
}

}  // namespace router
