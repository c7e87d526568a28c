// router_handler.cc: STAGE_ROUTE jobs -> per-recipient routes (see
// router_handler.h).
#include "router/router_handler.h"

#include <glog/logging.h>

#include "farm/config.h"

namespace router {
namespace {

// Answers every job with the same TEMPFAIL (tables that could not be built).
class BrokenRouterHandler : public farm::JobHandler {
 public:
  explicit BrokenRouterHandler(std::string why) : why_(std::move(why)) {}
  void Handle(const mailfarm::Job&, mailfarm::Result* result) override {
    result->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
    result->set_dsn("4.3.5");
    result->set_text("router configuration error: " + why_);
  }

 private:
  std::string why_;
};

}  // namespace

RouterHandler::RouterHandler(RouterTables tables)
    : tables_(std::make_unique<RouterTables>(std::move(tables))),
      resolver_(*tables_) {}

void RouterHandler::Handle(const mailfarm::Job& job, mailfarm::Result* result) {
  if (job.stage() != mailfarm::STAGE_ROUTE) {
    LOG(ERROR) << job.qid() << ": router got a job for stage "
               << mailfarm::Stage_Name(job.stage());
    result->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
    result->set_dsn("4.3.0");
    result->set_text("router: job is not for the routing stage");
    return;
  }
  result->set_outcome(mailfarm::OUTCOME_OK);
  for (const mailfarm::JobRecipient& rcpt : job.recipients()) {
    mailfarm::RecipientResult* r = result->add_recipients();
    *r = resolver_.Resolve(rcpt.address());
    r->set_index(rcpt.index());
    if (r->outcome() == mailfarm::OUTCOME_OK) {
      for (const auto& route : r->routes()) {
        VLOG(1) << job.qid() << ": to=<" << rcpt.address() << ">, route=<"
                << route.address() << ">, channel=" << route.channel()
                << ", nexthop=" << route.nexthop();
      }
    } else {
      LOG(INFO) << job.qid() << ": to=<" << rcpt.address()
                << ">, dsn=" << r->dsn() << ", status="
                << (r->outcome() == mailfarm::OUTCOME_TEMPFAIL ? "deferred"
                                                               : "bounced")
                << " (" << r->text() << ")";
    }
  }
}

farm::Status CheckRouterConfig(const mailfarm::config::Config& config) {
  auto tables = LoadRouterTables(config.routing(), /*strict=*/true);
  if (!tables.ok()) return tables.status();
  if (!tables->aliases) return farm::Status::Ok();
  const auto& routing = config.routing();
  for (const auto& [name, targets] : tables->aliases->entries()) {
    for (const AliasTarget& t : targets) {
      const std::string* channel = nullptr;
      if (t.kind == AliasTarget::Kind::kPipe) channel = &routing.pipe_channel();
      if (t.kind == AliasTarget::Kind::kFile) channel = &routing.file_channel();
      if (channel != nullptr &&
          farm::FindChannel(config, *channel) == nullptr) {
        return farm::Status::Invalid("routing.aliases_file: alias \"" + name +
                                     "\" has target \"" + t.value +
                                     "\", which needs channel \"" + *channel +
                                     "\", and no such channel is configured");
      }
    }
  }
  return farm::Status::Ok();
}

std::unique_ptr<farm::JobHandler> MakeRouterHandler(
    const mailfarm::config::Config& config) {
  auto tables = LoadRouterTables(config.routing(), /*strict=*/false);
  if (!tables.ok()) {
    LOG(ERROR) << "router tables: " << tables.status().message();
    return std::make_unique<BrokenRouterHandler>(tables.status().message());
  }
  LOG(INFO) << "router tables loaded: " << tables->routes.size() << " routes, "
            << (tables->aliases ? tables->aliases->size() : 0) << " aliases";
  return std::make_unique<RouterHandler>(std::move(tables.value()));
}

}  // namespace router
