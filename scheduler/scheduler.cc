// scheduler.cc: wiring of the scheduler's parts around one libevent loop.
// Start-up order matters: the spool lock comes first, so a second scheduler
// exits before it touches the first one's sockets.
#include "scheduler/scheduler.h"

#include <event2/event.h>
#include <glog/logging.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "farm/sockets.h"
#include "scheduler/control_server.h"
#include "scheduler/farm_link.h"
#include "scheduler/inject_server.h"
#include "scheduler/loop_tasks.h"
#include "scheduler/maildrop_pickup.h"
#include "scheduler/metrics.h"
#include "scheduler/metrics_server.h"
#include "scheduler/queue_manager.h"
#include "scheduler/spool_store.h"

namespace mailfarm::scheduler {

namespace {

constexpr int kTickMs = 100;

// The real StageDispatcher: one FarmLink per farm the config names.
class FarmDispatcher : public StageDispatcher {
 public:
  FarmDispatcher(event_base* base, QueueManager* queue)
      : base_(base), queue_(queue) {}

  bool Submit(const std::string& farm, const WorkItem& item) override {
    auto it = links_.find(farm);
    if (it == links_.end()) return false;
    it->second->Submit(item);
    return true;
  }

  std::optional<size_t> Room(const std::string& farm) const override {
    auto it = links_.find(farm);
    if (it == links_.end()) return std::nullopt;
    return it->second->Room();
  }

  std::vector<WorkItem> Cancel(uint64_t job_id) override {
    std::vector<WorkItem> dropped;
    for (auto& [name, link] : links_) {
      for (WorkItem& item : link->Cancel(job_id))
        dropped.push_back(std::move(item));
    }
    return dropped;
  }

  // Adds links for farms new in `config` and updates every link's limits.
  // A farm that disappears from the config keeps its link (jobs may be on it).
  void Configure(const farm::Config& config) {
    const auto& s = config.scheduler();
    Ensure(config, "router",
           {s.router_concurrency(), s.route_timeout_ms(),
            config.router().max_frame_bytes()});
    if (s.filter_enabled()) {
      Ensure(config, "filter",
             {s.filter_concurrency(), s.filter_timeout_ms(),
              config.filter().max_frame_bytes()});
    }
    for (const auto& channel : config.channel()) {
      Ensure(config, farm::TransportFarmName(channel.name()),
             {channel.concurrency(), channel.delivery_timeout_ms(),
              channel.farm().max_frame_bytes()});
    }
  }

  void FillStats(Stats* stats) const {
    for (const auto& [name, link] : links_) {
      auto add = [&](const char* metric, double value) {
        auto* sample = stats->add_samples();
        sample->set_name(metric);
        (*sample->mutable_labels())["farm"] = name;
        sample->set_value(value);
      };
      add("mailfarm_farm_connections",
          static_cast<double>(link->connections()));
      add("mailfarm_farm_busy", static_cast<double>(link->busy()));
      add("mailfarm_farm_queued", static_cast<double>(link->queued()));
      add("mailfarm_farm_child_deaths_total",
          static_cast<double>(link->counters().child_deaths));
      add("mailfarm_farm_timeouts_total",
          static_cast<double>(link->counters().timeouts));
      add("mailfarm_farm_reachable", link->reachable() ? 1 : 0);
      add("mailfarm_farm_open_sessions",
          static_cast<double>(link->open_sessions()));
      add("mailfarm_farm_affinity_hits_total",
          static_cast<double>(link->counters().affinity_hits));
      add("mailfarm_farm_jobs_sent_total",
          static_cast<double>(link->counters().jobs_sent));
    }
  }

 private:
  struct Spec {
    uint32_t connections;
    uint32_t timeout_ms;
    uint32_t max_frame;
  };
  void Ensure(const farm::Config& config, const std::string& farm, Spec spec) {
    FarmLink::Limits limits;
    limits.max_connections = std::max<uint32_t>(1, spec.connections);
    limits.job_timeout_ms = spec.timeout_ms;
    limits.max_frame_bytes = spec.max_frame;
    auto it = links_.find(farm);
    if (it != links_.end()) {
      it->second->SetLimits(limits);
      return;
    }
    FarmLink::Callbacks callbacks;
    callbacks.build = [this](const WorkItem& item, Job* job) {
      return queue_->BuildJob(item, job);
    };
    callbacks.on_result = [this](const WorkItem& item, const Result& r) {
      queue_->OnResult(item, r);
    };
    callbacks.on_abort = [this](const WorkItem& item, const farm::Status& why) {
      queue_->OnAbort(item, why);
    };
    links_[farm] = std::make_unique<FarmLink>(
        base_, farm, farm::FarmSocketPath(config, farm), limits,
        std::move(callbacks), farm::RealClock());
  }

  event_base* base_;
  QueueManager* queue_;
  std::map<std::string, std::unique_ptr<FarmLink>> links_;
};

InjectLimits InjectLimitsFrom(const farm::Config& config) {
  InjectLimits limits;
  const auto& s = config.scheduler();
  limits.max_message_bytes = s.max_message_bytes();
  limits.max_recipients = s.max_recipients();
  limits.max_connections = s.max_inject_connections();
  limits.max_frame_bytes = s.max_frame_bytes();
  limits.max_inflight_bytes = uint64_t{s.max_inflight_mb()} << 20;
  for (uint32_t uid : config.identity().inject_uids())
    limits.uids.push_back(uid);
  if (!config.identity().inject_group().empty()) {
    if (group* g = ::getgrnam(config.identity().inject_group().c_str());
        g != nullptr) {
      limits.gids.push_back(g->gr_gid);
    } else {
      LOG(WARNING) << "identity.inject_group \""
                   << config.identity().inject_group()
                   << "\" does not exist; ignoring it";
    }
  }
  return limits;
}

std::vector<uid_t> ControlUids(const farm::Config& config) {
  return {config.identity().control_uids().begin(),
          config.identity().control_uids().end()};
}

// Everything the loop's callbacks reach, in one place.
struct Process {
  farm::Config config;
  std::string config_path;
  event_base* base = nullptr;
  std::unique_ptr<LoopTasks> tasks;
  std::unique_ptr<FileSpoolStore> store;
  std::unique_ptr<QueueManager> queue;
  std::unique_ptr<FarmDispatcher> farms;
  std::unique_ptr<InjectServer> inject;
  std::unique_ptr<MaildropPickup> pickup;
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<MetricsServer> metrics;
  event* tick = nullptr;

  std::string Reload() {
    auto fresh = farm::LoadConfig(config_path);
    if (!fresh.ok()) {
      LOG(ERROR) << "reload refused, keeping the old configuration: "
                 << fresh.status().message();
      return "reload refused: " + fresh.status().message();
    }
    config = std::move(*fresh);
    queue->SetSettings(QueueSettings::FromConfig(config));
    farms->Configure(config);
    queue->PumpDeliveries();  // the farms' room may have grown
    inject->SetLimits(InjectLimitsFrom(config));
    control->SetUids(ControlUids(config));
    LOG(INFO) << "configuration reloaded from " << config_path;
    return "configuration reloaded";
  }
};

// Farm links and the spool's group commit, for `mailfarmctl stats` and
// /metrics.
void FillProcessStats(Process& p, Stats* stats) {
  p.farms->FillStats(stats);
  GroupCommitStats g = p.store->stats();
  for (auto [name, value] :
       {std::pair<const char*, uint64_t>{"mailfarm_spool_commit_batches_total",
                                         g.batches},
        {"mailfarm_spool_files_created_total", g.files},
        {"mailfarm_spool_files_reused_total", g.reused},
        {"mailfarm_spool_data_syncs_total", g.data_syncs},
        {"mailfarm_spool_fs_syncs_total", g.fs_syncs},
        {"mailfarm_spool_dir_syncs_total", g.dir_syncs},
        {"mailfarm_spool_max_batch", g.max_batch},
        {"mailfarm_spool_journal_syncs_total", g.journal_syncs},
        {"mailfarm_spool_journal_checkpoints_total", g.checkpoints},
        {"mailfarm_spool_journal_side_checkpoints_total", g.side_checkpoints},
        {"mailfarm_spool_journal_checkpoint_waits_total", g.checkpoint_waits},
        {"mailfarm_spool_files_restored_total", g.restored},
        {"mailfarm_spool_failures_total", g.failures}}) {
    auto* sample = stats->add_samples();
    sample->set_name(name);
    sample->set_value(static_cast<double>(value));
  }
  if (p.inject != nullptr) {
    auto* sample = stats->add_samples();
    sample->set_name("mailfarm_inject_inflight_bytes");
    sample->set_value(static_cast<double>(p.inject->inflight_bytes()));
  }
}

void OnSignal(evutil_socket_t sig, short, void* arg) {
  auto* p = static_cast<Process*>(arg);
  if (sig == SIGHUP) {
    p->Reload();
    return;
  }
  LOG(INFO) << "signal " << sig << ": stopping";
  event_base_loopbreak(p->base);
}

void OnTick(evutil_socket_t, short, void* arg) {
  static_cast<Process*>(arg)->queue->Tick();
}

}  // namespace

int RunScheduler(const farm::Config& config, const std::string& config_path) {
  ::signal(SIGPIPE, SIG_IGN);
  Process p;
  p.config = config;
  p.config_path = config_path;
  p.base = event_base_new();
  auto tasks = LoopTasks::Create(p.base);
  if (!tasks.ok()) {
    LOG(ERROR) << tasks.status().message();
    return farm::kExitOsErr;
  }
  p.tasks = std::move(*tasks);

  FileSpoolStore::Options options;
  options.spool_dir = farm::SpoolDir(config);
  options.io_threads = static_cast<int>(config.scheduler().io_threads());
  options.max_batch = config.scheduler().group_commit_max_batch();
  options.spare_files = config.scheduler().spool_spare_files();
  options.journal_bytes = uint64_t{config.scheduler().spool_journal_mb()} << 20;
  auto store = FileSpoolStore::Open(options, p.tasks.get());
  if (!store.ok()) {
    std::fprintf(stderr, "mailfarm-scheduler: %s\n",
                 store.status().message().c_str());
    LOG(ERROR) << store.status().message();
    event_base_free(p.base);
    return store.status().message().find("locked by another") !=
                   std::string::npos
               ? farm::kExitTempFail
               : farm::kExitCantCreate;
  }
  p.store = std::move(*store);
  ::mkdir(farm::RunDir(config).c_str(),
          0750);  // mailfarmd normally made it already

  p.queue =
      std::make_unique<QueueManager>(p.store.get(), nullptr, farm::RealClock(),
                                     QueueSettings::FromConfig(config));
  p.farms = std::make_unique<FarmDispatcher>(p.base, p.queue.get());
  p.queue->SetDispatcher(p.farms.get());
  p.farms->Configure(config);

  auto inject_fd = farm::ListenUnix(farm::InjectSocketPath(config), 0660);
  auto control_fd = farm::ListenUnix(farm::ControlSocketPath(config), 0600);
  if (!inject_fd.ok() || !control_fd.ok()) {
    const farm::Status& bad =
        inject_fd.ok() ? control_fd.status() : inject_fd.status();
    std::fprintf(stderr, "mailfarm-scheduler: %s\n", bad.message().c_str());
    LOG(ERROR) << bad.message();
    p.farms.reset();
    p.queue.reset();
    p.store.reset();
    p.tasks.reset();
    event_base_free(p.base);
    return farm::kExitOsErr;
  }
  p.inject = std::make_unique<InjectServer>(
      p.base, std::move(*inject_fd), p.queue.get(), p.store.get(),
      farm::RealClock(), InjectLimitsFrom(config));
  // Messages sendmail left in spool/maildrop/ while this scheduler was down.
  p.pickup =
      std::make_unique<MaildropPickup>(options.spool_dir, p.queue.get(),
                                       p.tasks.get(), InjectLimitsFrom(config));
  if (farm::Status started = p.pickup->Start(); !started.ok()) {
    LOG(ERROR) << "maildrop pickup not running (messages sendmail leaves in "
               << options.spool_dir << "/maildrop wait): " << started.message();
  }
  ControlServer::Hooks hooks;
  hooks.reload = [&p] { return p.Reload(); };
  hooks.stop = [&p] { event_base_loopbreak(p.base); };
  hooks.extra_stats = [&p](Stats* stats) { FillProcessStats(p, stats); };
  p.control = std::make_unique<ControlServer>(
      p.base, std::move(*control_fd), p.queue.get(), ControlUids(config),
      config.scheduler().max_frame_bytes(), std::move(hooks));

  // Prometheus text on metrics.address:port (0 disables); a port in use is
  // logged and the scheduler runs without the endpoint.
  auto metrics =
      MetricsServer::Start(p.base, config.metrics(), [&p](MetricsPage* page) {
        Stats stats;
        p.queue->FillStats(&stats);
        FillProcessStats(p, &stats);
        for (const auto& sample : stats.samples()) {
          const std::string& name = sample.name();
          bool counter = name.size() > 6 &&
                         name.compare(name.size() - 6, 6, "_total") == 0;
          Labels labels(sample.labels().begin(), sample.labels().end());
          page->Add(name, counter ? "counter" : "gauge",
                    "mailfarm scheduler " + name, labels, sample.value());
        }
        p.queue->AppendHistograms(page);
        AddScoreboardMetrics(farm::RunDir(p.config), page);
      });
  if (metrics.ok()) {
    p.metrics = std::move(*metrics);
  } else {
    LOG(WARNING) << metrics.status().message()
                 << "; running without the metrics endpoint";
  }

  event* sigterm = evsignal_new(p.base, SIGTERM, &OnSignal, &p);
  event* sigint = evsignal_new(p.base, SIGINT, &OnSignal, &p);
  event* sighup = evsignal_new(p.base, SIGHUP, &OnSignal, &p);
  for (event* e : {sigterm, sigint, sighup}) event_add(e, nullptr);
  p.tick = event_new(p.base, -1, EV_PERSIST, &OnTick, &p);
  timeval tick{0, kTickMs * 1000};
  event_add(p.tick, &tick);

  LOG(INFO) << "mailfarm-scheduler ready: spool " << options.spool_dir
            << ", inject " << farm::InjectSocketPath(config);
  event_base_dispatch(p.base);

  // Orderly stop: no new work, finish the disk work already queued (its
  // completions still run, so acknowledged means durable), then tear down.
  p.pickup->Stop();
  p.inject->Quiesce();
  p.store->Shutdown();
  p.tasks->RunPending();
  // Let the replies of messages made durable during the stop reach their
  // clients (bounded: a client that does not read is not waited for).
  for (int i = 0; i < 200 && p.inject->PendingOutput() > 0; ++i) {
    event_base_loop(p.base, EVLOOP_NONBLOCK);
    ::usleep(10'000);
  }
  for (event* e : {sigterm, sigint, sighup, p.tick}) event_free(e);
  p.metrics.reset();
  p.control.reset();
  p.pickup.reset();
  p.inject.reset();
  p.farms.reset();
  p.queue.reset();
  p.store.reset();
  p.tasks.reset();
  event_base_free(p.base);
  ::unlink(farm::InjectSocketPath(config).c_str());
  ::unlink(farm::ControlSocketPath(config).c_str());
  LOG(INFO) << "mailfarm-scheduler stopped";
  return farm::kExitOk;
}

}  // namespace mailfarm::scheduler
