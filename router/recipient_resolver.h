// recipient_resolver.h: turns one envelope recipient into its routes: local
// domains go through the aliases file to local mailboxes, pipes and files;
// every other domain goes through the routing table. The router farm's
// JobHandler calls Resolve once per recipient of a STAGE_ROUTE job.
#ifndef MAILFARM_ROUTER_RECIPIENT_RESOLVER_H_
#define MAILFARM_ROUTER_RECIPIENT_RESOLVER_H_

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "config.pb.h"
#include "farm/status.h"
#include "router/aliases.h"
#include "router/routing_table.h"
#include "wire.pb.h"

namespace router {

// The router's tables, loaded once per farm child (so a SIGHUP graceful
// restart, which forks a new generation, reloads them).
struct RouterTables {
  mailfarm::config::RoutingConfig config;
  RoutingTable routes;
  // The aliases file; when it failed to load, `aliases_error` says why and
  // local recipients are tempfailed until it is fixed and reloaded.
  std::optional<AliasTable> aliases;
  farm::Status aliases_error;
};

// Builds the tables from the config. A bad routing table is an error (the
// config is wrong); a bad aliases file is an error only when `strict` (the
// manager's start-up check), otherwise it is kept in aliases_error.
farm::StatusOr<RouterTables> LoadRouterTables(
    const mailfarm::config::RoutingConfig& config, bool strict);

// Reads :include: files; replaced in tests.
using IncludeLoader =
    std::function<farm::StatusOr<std::vector<AliasTarget>>(const std::string&)>;

// Stateless between calls; const methods are safe to call from several threads.
// `tables` must outlive the resolver.
class RecipientResolver {
 public:
  explicit RecipientResolver(const RouterTables& tables,
                             IncludeLoader include = LoadIncludeFile);

  // Routes of `address`. On success outcome OK with one or more routes
  // (address, channel, nexthop), duplicates removed. Failures:
  //   PERMFAIL 5.1.1 unknown local user, 5.1.3 bad address syntax,
  //   5.4.4 no route for the domain, 5.4.6 alias loop or expansion too deep,
  //   5.7.1 a pipe or file target from an :include: file (not allowed);
  //   TEMPFAIL 4.3.0 aliases file or :include: file unavailable.
  // Pipe routes carry the command in nexthop, file routes the path; both carry
  // the alias's own address (name@domain) as address. index is left 0.
  mailfarm::RecipientResult Resolve(const std::string& address) const;

 private:
  struct Expansion;
  void ExpandAddress(const std::string& address,
                     const std::string& default_domain, int depth,
                     Expansion& x) const;
  void ExpandLocal(const std::string& local, const std::string& domain,
                   int depth, bool alias_lookup, Expansion& x) const;
  // from_include: the targets come from an :include: file (pipes and files
  // are then refused unless include_allows_pipes_and_files).
  void ExpandTargets(const std::vector<AliasTarget>& targets,
                     const std::string& owner_local, const std::string& domain,
                     int depth, bool from_include, Expansion& x) const;
  bool IsLocalDomain(const std::string& domain) const;
  bool UserExists(const std::string& user) const;
  std::string NormalizeLocal(const std::string& local) const;
  std::string StripExtension(const std::string& local) const;

  const RouterTables& tables_;
  IncludeLoader include_;
  std::unordered_set<std::string> local_domains_;
  std::unordered_set<std::string> local_users_;
};

}  // namespace router

#endif  // MAILFARM_ROUTER_RECIPIENT_RESOLVER_H_
