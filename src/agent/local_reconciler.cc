#include "agent/local_reconciler.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace berth::agent {

using runtime::Allocation;
using runtime::AllocStatus;

namespace {

constexpr std::chrono::milliseconds kOrphanGrace{10'000};
constexpr std::chrono::milliseconds kJanitorInterval{200};

std::string LastSegment(const std::string& key) {
  auto slash = key.rfind('/');
  return slash == std::string::npos ? key : key.substr(slash + 1);
}

}  // namespace

LocalReconciler::LocalReconciler(store::Store& store, store::Keys keys,
                                 std::map<spec::DriverKind, driver::Driver*> drivers,
                                 runtime::PortAllocator& ports, ClockPtr clock, Options options)
    : store_(store),
      keys_(std::move(keys)),
      drivers_(std::move(drivers)),
      ports_(ports),
      clock_(std::move(clock)),
      options_(std::move(options)) {
  if (options_.max_parallel_starts > 0) {
    start_gate_ = std::make_shared<std::counting_semaphore<>>(options_.max_parallel_starts);
  }
}

LocalReconciler::~LocalReconciler() {
  Stop();
}

void LocalReconciler::Start() {
  ListDrivers();
  for (const auto& [kind, d] : drivers_) {
    if (d != nullptr) d->SetExitCallback([this](const std::string& id) { OnDriverExit(id); });
  }
  store::PrefixWatcher::Callbacks cb;
  cb.on_list = [this](const store::RangeResult& r) { OnList(r); };
  cb.on_events = [this](const std::vector<store::Event>& e) { OnEvents(e); };
  cb.on_error = [this](const Status& st) {
    spdlog::warn("machine {}: watching its allocations: {} (retrying)", options_.machine_id,
                 st.message());
  };
  watcher_ = std::make_unique<store::PrefixWatcher>(
      store_, keys_.MachineAllocs(options_.machine_id), std::move(cb));
  watcher_->Start();
  if (options_.secrets) {
    store::PrefixWatcher::Callbacks scb;
    // A listing (the first, or after the store came back) may hold values set meanwhile.
    scb.on_list = [this](const store::RangeResult& listing) {
      std::set<std::string> keys;
      for (const auto& kv : listing.kvs) keys.insert(kv.key);
      OnSecretsChanged(keys);
    };
    scb.on_events = [this](const std::vector<store::Event>& events) {
      std::set<std::string> keys;
      for (const auto& e : events) {
        if (e.type == store::Event::Type::kPut) keys.insert(e.kv.key);
      }
      OnSecretsChanged(keys);
    };
    scb.on_error = [this](const Status& st) {
      spdlog::debug("machine {}: watching secrets: {} (retrying)", options_.machine_id,
                    st.message());
    };
    secrets_watcher_ =
        std::make_unique<store::PrefixWatcher>(store_, keys_.Secrets(), std::move(scb));
    secrets_watcher_->Start();
  }
  janitor_ = std::thread([this] { JanitorLoop(); });
}

void LocalReconciler::Stop() {
  if (watcher_) watcher_->Stop();
  if (secrets_watcher_) secrets_watcher_->Stop();
  for (const auto& [kind, d] : drivers_) {
    if (d != nullptr) d->SetExitCallback(nullptr);
  }
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (janitor_.joinable()) janitor_.join();
  std::map<std::string, std::unique_ptr<AllocRunner>> runners;
  std::vector<std::unique_ptr<AllocRunner>> stopping;
  {
    std::lock_guard lock(mu_);
    runners.swap(runners_);
    stopping.swap(stopping_runners_);
  }
  for (auto& [id, r] : runners) r->Detach();  // tasks keep running
  for (auto& r : stopping) r->Join();         // finish stopping what was being stopped
}

void LocalReconciler::ListDrivers() {
  for (const auto& [kind, d] : drivers_) {
    if (d == nullptr) continue;
    auto handles = d->List();
    std::lock_guard lock(mu_);
    if (!handles.ok()) {
      unlisted_.insert(kind);
      spdlog::warn("{} driver: cannot list its tasks ({}); asking again before starting any",
                   d->Name(), handles.status().message());
      continue;
    }
    for (auto& h : *handles) adoptable_[h.alloc_id].push_back(std::move(h));
  }
}

RunnerDeps LocalReconciler::Deps(const Allocation& alloc) {
  RunnerDeps deps;
  deps.drivers = drivers_;
  deps.ports = &ports_;
  deps.clock = clock_;
  deps.machine_id = options_.machine_id;
  deps.alloc_root = options_.alloc_root;
  deps.check_host = options_.check_host;
  deps.poll_interval = options_.poll_interval;
  deps.start_gate = start_gate_;
  deps.secrets = options_.secrets;
  deps.secrets_dir = options_.secrets_dir;
  RoutePublisher* routes = options_.routes;
  std::shared_ptr<const Allocation> routed;
  const spec::Group* group = alloc.FindGroup();
  bool has_route = group != nullptr && std::any_of(group->tasks.begin(), group->tasks.end(),
                                                   [](const spec::Task& t) { return t.route; });
  if (routes != nullptr && has_route) routed = std::make_shared<const Allocation>(alloc);
  deps.publish = [this, routes, routed](const AllocStatus& s) -> Status {
    auto put = store_.Put(keys_.AllocStatus(s.id), s.ToJson().dump());
    if (!put.ok()) return put.status();
    if (routed) {
      Status st = routes->Sync(*routed, s);
      if (!st.ok()) spdlog::warn("alloc {}: routes: {}", s.id, st.message());
    }
    return Status::Ok();
  };
  deps.find_existing = [this](const std::string& alloc_id, const std::string& task,
                              spec::DriverKind kind) { return FindExisting(alloc_id, task, kind); };
  return deps;
}

void LocalReconciler::OnList(const store::RangeResult& listing) {
  std::set<std::string> wanted;
  for (const auto& kv : listing.kvs) {
    wanted.insert(LastSegment(kv.key));
    Want(kv);
  }
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, r] : runners_) {
      if (!wanted.count(id)) gone.push_back(id);
    }
    listed_once_ = true;
  }
  for (const auto& id : gone) Unwant(id);
  ReportUsage();
  cv_.notify_all();  // the janitor sweeps orphans and stale statuses after the first listing
}

void LocalReconciler::OnEvents(const std::vector<store::Event>& events) {
  for (const auto& e : events) {
    if (e.type == store::Event::Type::kPut) {
      Want(e.kv);
    } else {
      Unwant(LastSegment(e.kv.key));
    }
  }
  ReportUsage();
}

void LocalReconciler::ReportUsage() {
  if (!options_.on_usage) return;
  int64_t cpu = 0;
  int64_t memory = 0;
  int count = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, r] : runners_) {
      ++count;
      if (const spec::Group* g = r->alloc().FindGroup()) {
        for (const auto& t : g->tasks) {
          cpu += t.resources.cpu;
          memory += t.resources.memory_bytes;
        }
      }
    }
  }
  options_.on_usage(cpu, memory, count);
}

void LocalReconciler::Want(const store::KeyValue& kv) {
  std::string id = LastSegment(kv.key);
  {
    std::lock_guard lock(mu_);
    if (runners_.count(id) || stopping_) return;
  }
  auto json = nlohmann::json::parse(kv.value, nullptr, false);
  auto alloc = Allocation::FromJson(json, kv.key);
  if (!alloc.ok()) {
    spdlog::error("machine {}: ignoring allocation {}: {}", options_.machine_id, kv.key,
                  alloc.status().message());
    return;
  }
  if (alloc->id != id) {
    spdlog::error("machine {}: ignoring allocation {}: its id is \"{}\"", options_.machine_id,
                  kv.key, alloc->id);
    return;
  }
  std::optional<AllocStatus> previous;
  if (auto got = store_.Get(keys_.AllocStatus(id)); got.ok() && got->has_value()) {
    auto pj = nlohmann::json::parse((*got)->value, nullptr, false);
    if (auto ps = AllocStatus::FromJson(pj, keys_.AllocStatus(id)); ps.ok()) {
      previous = std::move(*ps);
    }
  }
  std::lock_guard lock(mu_);
  if (runners_.count(id) || stopping_) return;
  std::vector<driver::TaskHandle> adopted;
  if (auto it = adoptable_.find(id); it != adoptable_.end()) {
    adopted = std::move(it->second);
    adoptable_.erase(it);
  }
  auto runner =
      std::make_unique<AllocRunner>(std::move(*alloc), Deps(*alloc), std::move(adopted), previous);
  runner->Start();
  runners_[id] = std::move(runner);
}

void LocalReconciler::Unwant(const std::string& id) {
  // Routes go first, so the router stops sending requests before the tasks stop.
  if (options_.routes != nullptr) options_.routes->Close(id);
  std::lock_guard lock(mu_);
  auto it = runners_.find(id);
  if (it == runners_.end()) return;
  it->second->Stop();
  stopping_runners_.push_back(std::move(it->second));
  runners_.erase(it);
  cv_.notify_all();
}

Result<std::optional<driver::TaskHandle>> LocalReconciler::FindExisting(const std::string& alloc,
                                                                        const std::string& task,
                                                                        spec::DriverKind kind) {
  BERTH_RETURN_IF_ERROR(ListUnlisted(kind));
  std::lock_guard lock(mu_);
  auto it = adoptable_.find(alloc);
  if (it == adoptable_.end()) return std::optional<driver::TaskHandle>();
  for (auto h = it->second.begin(); h != it->second.end(); ++h) {
    if (h->task == task) {
      driver::TaskHandle found = *h;
      it->second.erase(h);
      if (it->second.empty()) adoptable_.erase(it);
      return std::optional<driver::TaskHandle>(found);
    }
  }
  return std::optional<driver::TaskHandle>();
}

void LocalReconciler::JanitorLoop() {
  bool swept_statuses = false;
  int ticks = 0;
  while (true) {
    // A driver that could not be listed at start is asked again about once a second (runners
    // also ask before their first start), so its orphans are found and waiting runners retry.
    if (++ticks % 5 == 0) RelistDrivers();
    std::vector<std::unique_ptr<AllocRunner>> finished;
    std::vector<driver::TaskHandle> orphans;
    bool sweep = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, kJanitorInterval);
      if (stopping_) return;
      for (auto it = stopping_runners_.begin(); it != stopping_runners_.end();) {
        if ((*it)->done()) {
          finished.push_back(std::move(*it));
          it = stopping_runners_.erase(it);
        } else {
          ++it;
        }
      }
      if (listed_once_) {
        // Tasks no allocation of this machine wants (and no runner took): stop them.
        for (auto it = adoptable_.begin(); it != adoptable_.end();) {
          if (runners_.count(it->first)) {
            ++it;
            continue;
          }
          for (auto& h : it->second) orphans.push_back(std::move(h));
          it = adoptable_.erase(it);
        }
        sweep = !swept_statuses;
      }
    }
    if (options_.routes != nullptr && ticks % 5 == 0) options_.routes->Refresh();
    for (auto& r : finished) {
      r->Join();
      if (options_.routes != nullptr) options_.routes->Forget(r->id());
      // Its tasks are stopped: the status goes with the allocation.
      auto del = store_.Delete(keys_.AllocStatus(r->id()));
      if (!del.ok()) {
        spdlog::warn("alloc {}: deleting its status: {}", r->id(), del.status().message());
      }
    }
    for (const auto& h : orphans) {
      spdlog::info("{} {} (alloc {}) is not wanted on this machine: stopping it", h.driver, h.id,
                   h.alloc_id);
      for (const auto& [kind, d] : drivers_) {
        if (d == nullptr || d->Name() != h.driver) continue;
        Status st = d->Stop(h, kOrphanGrace);
        if (st.ok() || st.code() == Code::kNotFound) st = d->Remove(h);
        if (!st.ok() && st.code() != Code::kNotFound) {
          spdlog::warn("stopping orphan {} {}: {}", h.driver, h.id, st.message());
        }
      }
    }
    if (sweep && options_.secrets_dir) {
      // Secret files of allocations this machine no longer runs (an agent died before it
      // removed them): plaintext must not outlive its task.
      // Under mu_, so no runner is made meanwhile whose fresh directory this would take away.
      std::vector<std::string> removed;
      {
        std::lock_guard lock(mu_);
        std::set<std::string> keep;
        for (const auto& [id, r] : runners_) keep.insert(id);
        for (const auto& r : stopping_runners_) keep.insert(r->id());
        removed = options_.secrets_dir->RemoveAllExcept(keep);
      }
      for (const auto& id : removed) {
        spdlog::info("secrets: removed the files of allocation {} (not on this machine)", id);
      }
    }
    if (sweep) {
      // Statuses of this machine's allocations that no longer exist (the agent died between
      // stopping an allocation and deleting its status).
      auto listing = store_.Range(keys_.Status());
      if (listing.ok()) {
        swept_statuses = true;
        for (const auto& kv : listing->kvs) {
          auto j = nlohmann::json::parse(kv.value, nullptr, false);
          if (!j.is_object() || j.value("machine", "") != options_.machine_id) continue;
          std::string id = LastSegment(kv.key);
          {
            std::lock_guard lock(mu_);
            if (runners_.count(id)) continue;
            bool being_stopped = false;
            for (const auto& r : stopping_runners_) being_stopped |= r->id() == id;
            if (being_stopped) continue;
          }
          (void)store_.Delete(kv.key);
        }
      }
    }
  }
}

void LocalReconciler::RelistDrivers() {
  std::set<spec::DriverKind> unlisted;
  {
    std::lock_guard lock(mu_);
    unlisted = unlisted_;
  }
  for (auto kind : unlisted) ListUnlisted(kind).IgnoreError();
}

Status LocalReconciler::ListUnlisted(spec::DriverKind kind) {
  {
    std::lock_guard lock(mu_);
    if (!unlisted_.count(kind)) return Status::Ok();
  }
  driver::Driver* d = drivers_.at(kind);
  auto handles = d->List();
  if (!handles.ok()) {
    return Unavailable(std::string(d->Name()) +
                       " driver cannot list its tasks yet: " + handles.status().message());
  }
  std::lock_guard lock(mu_);
  if (!unlisted_.erase(kind)) return Status::Ok();  // listed meanwhile by another caller
  spdlog::info("{} driver answers again: {} task(s) to re-adopt or stop", d->Name(),
               handles->size());
  for (auto& h : *handles) {
    if (auto it = runners_.find(h.alloc_id); it != runners_.end()) it->second->Wake();
    adoptable_[h.alloc_id].push_back(std::move(h));
  }
  return Status::Ok();
}

void LocalReconciler::OnSecretsChanged(const std::set<std::string>& keys) {
  if (keys.empty()) return;
  std::lock_guard lock(mu_);
  for (const auto& [id, r] : runners_) {
    const spec::Group* g = r->alloc().FindGroup();
    if (g == nullptr) continue;
    bool uses = false;
    for (const auto& t : g->tasks) {
      for (const auto& ref : t.secrets) uses |= keys.count(keys_.Secret(ref.path)) > 0;
    }
    if (uses) r->Wake();
  }
}

void LocalReconciler::OnDriverExit(const std::string& alloc_id) {
  std::lock_guard lock(mu_);
  if (auto it = runners_.find(alloc_id); it != runners_.end()) it->second->Wake();
}

Status LocalReconciler::Logs(const std::string& alloc_id, const std::string& task,
                             const driver::LogOptions& options,
                             const std::function<bool(std::string_view)>& sink) {
  std::optional<driver::TaskHandle> h;
  {
    std::lock_guard lock(mu_);
    auto it = runners_.find(alloc_id);
    if (it == runners_.end()) {
      return NotFound("allocation " + alloc_id + " does not run on this machine");
    }
    h = it->second->handle(task);
  }
  if (!h) return NotFound("task " + task + " of allocation " + alloc_id + " is not running");
  for (const auto& [kind, d] : drivers_) {
    if (d != nullptr && d->Name() == h->driver) return d->Logs(*h, options, sink);
  }
  return NotFound("no " + h->driver + " driver on this machine");
}

std::vector<AllocStatus> LocalReconciler::Statuses() const {
  std::lock_guard lock(mu_);
  std::vector<AllocStatus> out;
  for (const auto& [id, r] : runners_) out.push_back(r->status());
  return out;
}

size_t LocalReconciler::runner_count() const {
  std::lock_guard lock(mu_);
  return runners_.size();
}

}  // namespace berth::agent
