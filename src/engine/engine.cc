#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "spec/job_json.h"

namespace berth::engine {

namespace {

std::string LastSegment(const std::string& key) {
  auto slash = key.rfind('/');
  return slash == std::string::npos ? key : key.substr(slash + 1);
}

nlohmann::json ParseJson(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

Engine::Engine(store::Store& store, store::Keys keys, ClockPtr clock, Options options)
    : store_(store),
      keys_(keys),
      clock_(std::move(clock)),
      options_(std::move(options)),
      election_(store, keys, LeaderRecord{options_.machine_id, options_.address, 0},
                options_.leader_ttl, clock_),
      started_(clock_->Now()) {}

Engine::~Engine() {
  Stop();
}

void Engine::Start() {
  thread_ = std::thread([this] { Loop(); });
  election_.Start({[this](int64_t term) { OnElected(term); }, [this] { OnLost(); }});
}

void Engine::Stop(bool resign) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  election_.Stop(resign);
  if (watch_) watch_->Cancel();  // the loop has ended: nobody else touches it
  watch_.reset();
}

void Engine::MarkDirty() {
  {
    std::lock_guard lock(mu_);
    dirty_ = true;
  }
  cv_.notify_all();
}

void Engine::OnElected(int64_t) {
  watch_failed_ = true;  // the loop makes the watch for this term
  MarkDirty();
}

void Engine::OnLost() {
  MarkDirty();  // the loop drops the watch
}

bool Engine::Relevant(const store::WatchResponse& r) const {
  if (!r.status.ok()) return true;
  // Routes, job history and secrets change often and never change a plan.
  const std::string prefixes[] = {keys_.Machines(), keys_.MachineAdmins(), keys_.Jobs(),
                                  keys_.Allocs(),   keys_.Status(),        keys_.Deployments()};
  for (const auto& e : r.events) {
    for (const auto& p : prefixes) {
      if (e.kv.key.compare(0, p.size(), p) == 0) return true;
    }
  }
  return false;
}

void Engine::Loop() {
  auto last_pass = clock_->Now() - options_.tick;
  while (true) {
    bool dirty = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, options_.tick / 4, [&] { return stop_ || dirty_; });
      if (stop_) return;
      dirty = dirty_;
      dirty_ = false;
    }
    // The watch is this thread's alone, and is made and cancelled without mu_ held: its
    // callback takes mu_, and Cancel() waits for a callback in flight.
    int64_t term = election_.term();
    if (term == 0) {
      if (watch_) watch_->Cancel();
      watch_.reset();
      continue;
    }
    if (!watch_ || watch_failed_) {
      if (watch_) watch_->Cancel();
      watch_.reset();
      watch_failed_ = false;
      auto w = store_.Watch(keys_.prefix(), 0, [this](const store::WatchResponse& r) {
        if (!r.status.ok()) watch_failed_ = true;
        if (Relevant(r)) MarkDirty();
      });
      if (w.ok()) {
        watch_ = std::move(*w);
      } else {
        watch_failed_ = true;
      }
      dirty = true;
    }
    if (!dirty && clock_->Now() - last_pass < options_.tick) continue;
    last_pass = clock_->Now();
    auto plan = RunOnce(term);
    if (!plan.ok()) {
      spdlog::warn("engine: pass failed: {}", plan.status().message());
      MarkDirty();
    }
    // Debounce: a burst of changes makes one pass, not one each.
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, options_.min_pass_interval, [&] { return stop_; });
  }
}

Result<ClusterState> Engine::Load() {
  ClusterState s;
  BERTH_ASSIGN_OR_RETURN(auto machines, store_.Range(keys_.Machines()));
  BERTH_ASSIGN_OR_RETURN(auto admins, store_.Range(keys_.MachineAdmins()));
  BERTH_ASSIGN_OR_RETURN(auto jobs, store_.Range(keys_.Jobs()));
  BERTH_ASSIGN_OR_RETURN(auto allocs, store_.Range(keys_.Allocs()));
  BERTH_ASSIGN_OR_RETURN(auto statuses, store_.Range(keys_.Status()));
  BERTH_ASSIGN_OR_RETURN(auto deployments, store_.Range(keys_.Deployments()));

  std::map<std::string, MachineAdmin> admin;
  for (const auto& kv : admins.kvs) {
    auto a = MachineAdmin::FromJson(ParseJson(kv.value));
    if (!a.ok()) {
      spdlog::warn("engine: ignoring {}: {}", kv.key, a.status().message());
      continue;
    }
    admin[LastSegment(kv.key)] = *a;
  }
  std::vector<std::pair<std::string, int64_t>> registrations;  // (machine, create revision)
  for (const auto& kv : machines.kvs) {
    MachineState m;
    m.id = LastSegment(kv.key);
    registrations.emplace_back(m.id, kv.create_revision);
    m.record = ParseJson(kv.value);
    if (auto it = admin.find(m.id); it != admin.end()) m.admin = it->second;
    s.machines.push_back(std::move(m));
  }
  for (const auto& kv : jobs.kvs) {
    std::string name = LastSegment(kv.key);
    auto rec = jobs::JobRecord::FromJson(ParseJson(kv.value));
    if (!rec.ok()) {
      spdlog::warn("engine: job record {} unreadable, leaving its allocations alone: {}", kv.key,
                   rec.status().message());
      s.unreadable_jobs.insert(name);
      continue;
    }
    rec->mod_revision = kv.mod_revision;
    auto job = spec::JobFromJson(rec->spec, kv.key);
    if (!job.ok()) {
      spdlog::warn("engine: job {} unreadable, leaving its allocations alone: {}", kv.key,
                   job.status().message());
      s.unreadable_jobs.insert(name);
      continue;
    }
    job->version = rec->version;
    s.jobs.push_back({std::move(*rec), std::move(*job)});
  }
  // Each status record is parsed once; an unreadable one still counts (by key) for collection.
  std::map<std::string, runtime::AllocStatus> status_by_id;
  std::map<std::string, std::string> status_key;
  for (const auto& kv : statuses.kvs) {
    std::string id = LastSegment(kv.key);
    status_key[id] = kv.key;
    auto st = runtime::AllocStatus::FromJson(ParseJson(kv.value), kv.key);
    if (st.ok()) status_by_id[id] = std::move(*st);
  }
  std::set<std::string> alloc_ids;
  for (const auto& kv : allocs.kvs) {
    auto a = runtime::Allocation::FromJson(ParseJson(kv.value), kv.key);
    if (!a.ok()) {
      spdlog::warn("engine: ignoring allocation {}: {}", kv.key, a.status().message());
      continue;
    }
    AllocState as;
    as.key = kv.key;
    as.mod_revision = kv.mod_revision;
    if (auto it = status_by_id.find(a->id); it != status_by_id.end()) {
      as.status = std::move(it->second);  // the orphan loop below reads only other ids
    }
    alloc_ids.insert(a->id);
    as.alloc = std::move(*a);
    s.allocs.push_back(std::move(as));
  }
  for (const auto& [id, key] : status_key) {
    if (alloc_ids.count(id)) continue;
    StatusOnly o;
    o.key = key;
    o.id = id;
    if (auto it = status_by_id.find(id); it != status_by_id.end()) {
      o.machine = it->second.machine;
      o.state = std::string(runtime::RunStateName(it->second.state));
      o.updated_at_ms = it->second.updated_at_ms;
    }
    s.orphan_statuses.push_back(std::move(o));
  }
  for (const auto& kv : deployments.kvs) {
    auto d = Deployment::FromJson(ParseJson(kv.value));
    if (!d.ok()) {
      spdlog::warn("engine: ignoring {}: {}", kv.key, d.status().message());
      continue;
    }
    s.deployments[LastSegment(kv.key)] = std::move(*d);
  }

  // Absent machines with allocations: lost, unless this engine is too young to tell. Only a
  // registration made after this engine's first look counts as seen alive: a record left by a
  // machine's previous run (the whole cluster restarting) may expire before that machine
  // registers again, and the machine is then coming back, not gone.
  bool young = clock_->Now() - started_ < options_.startup_grace;
  std::lock_guard lock(mu_);
  if (start_revision_ == 0) start_revision_ = machines.revision;
  for (const auto& [id, created] : registrations) {
    if (created > start_revision_) seen_live_.insert(id);
  }
  if (young) {
    std::set<std::string> live;
    for (const auto& m : s.machines) live.insert(m.id);
    for (const auto& a : s.allocs) {
      if (!live.count(a.alloc.machine) && !seen_live_.count(a.alloc.machine)) {
        s.grace_machines.insert(a.alloc.machine);
      }
    }
  }
  return s;
}

Result<Plan> Engine::RunOnce(int64_t term) {
  if (term == 0) term = election_.term();
  if (term == 0) return FailedPrecondition("not the engine leader");
  BERTH_ASSIGN_OR_RETURN(ClusterState state, Load());
  Plan plan = Reconcile(state, options_.reconcile, clock_->WallMillis());
  ++passes_;
  if (plan.empty()) return plan;
  for (const auto& l : plan.lost) {
    spdlog::info("engine: allocation {} lost: {}", l.status.id, l.status.message);
  }
  for (const auto& st : plan.stop) {
    spdlog::info("engine: stopping allocation {} on {}: {}", st.id, st.machine, st.reason);
  }
  for (const auto& a : plan.place) {
    spdlog::info("engine: placing allocation {} (job {} v{}) on {}", a.id, a.job, a.job_version,
                 a.machine);
  }
  BERTH_RETURN_IF_ERROR(Apply(plan, term));
  return plan;
}

Status Engine::Apply(const Plan& plan, int64_t term) {
  std::vector<Unit> units;
  for (const auto& l : plan.lost) {
    units.push_back({{store::Compare::ModRevisionEquals(l.key, l.mod_revision)},
                     {store::TxnOp::Delete(l.key), store::TxnOp::Put(keys_.AllocStatus(l.status.id),
                                                                     l.status.ToJson().dump())}});
  }
  for (const auto& s : plan.stop) {
    units.push_back({{store::Compare::ModRevisionEquals(s.key, s.mod_revision)},
                     {store::TxnOp::Delete(s.key)}});
  }
  for (const auto& a : plan.place) {
    std::string key = keys_.Alloc(a.machine, a.id);
    units.push_back({{store::Compare::Absent(key)}, {store::TxnOp::Put(key, a.ToJson().dump())}});
  }
  for (const auto& d : plan.deployments) {
    units.push_back({{}, {store::TxnOp::Put(keys_.Deployment(d.job), d.ToJson().dump())}});
  }
  for (const auto& job : plan.delete_deployments) {
    units.push_back({{}, {store::TxnOp::Delete(keys_.Deployment(job))}});
  }
  for (const auto& key : plan.delete_statuses) units.push_back({{}, {store::TxnOp::Delete(key)}});
  BERTH_RETURN_IF_ERROR(ApplyUnits(units, term));
  for (const auto& r : plan.reverts) {
    Status st = Revert(r, term);
    if (!st.ok()) spdlog::warn("engine: reverting job {}: {}", r.job, st.message());
  }
  return Status::Ok();
}

Status Engine::ApplyUnits(const std::vector<Unit>& units, int64_t term) {
  const store::Compare fence = LeaderElection::Fence(keys_, term);
  auto commit = [&](size_t begin, size_t end) -> Result<bool> {
    std::vector<store::Compare> cmp = {fence};
    std::vector<store::TxnOp> ops;
    for (size_t i = begin; i < end; ++i) {
      cmp.insert(cmp.end(), units[i].compares.begin(), units[i].compares.end());
      ops.insert(ops.end(), units[i].ops.begin(), units[i].ops.end());
    }
    BERTH_ASSIGN_OR_RETURN(auto res, store_.Txn(cmp, ops));
    return res.succeeded;
  };
  auto still_leader = [&]() -> Status {
    BERTH_ASSIGN_OR_RETURN(auto got, store_.Get(keys_.EngineLeader()));
    if (!got || got->create_revision != term) {
      return FailedPrecondition(fmt::format("term {} is over: not writing its plan", term));
    }
    return Status::Ok();
  };
  size_t i = 0;
  while (i < units.size()) {
    size_t end = i;
    size_t ops = 0;
    while (end < units.size() && (end == i || ops + units[end].ops.size() <= kMaxOpsPerTxn)) {
      ops += units[end].ops.size();
      ++end;
    }
    BERTH_ASSIGN_OR_RETURN(bool ok, commit(i, end));
    if (!ok) {
      BERTH_RETURN_IF_ERROR(still_leader());
      // Some revision moved under us: apply what still holds, one change at a time.
      for (size_t k = i; k < end; ++k) {
        BERTH_ASSIGN_OR_RETURN(bool one, commit(k, k + 1));
        if (!one) BERTH_RETURN_IF_ERROR(still_leader());
      }
    }
    i = end;
  }
  return Status::Ok();
}

Status Engine::Revert(const RevertAction& r, int64_t term) {
  BERTH_ASSIGN_OR_RETURN(auto target, store_.Get(keys_.JobVersion(r.job, r.to_version)));
  if (!target) return NotFound(fmt::format("version {} is not in the history", r.to_version));
  BERTH_ASSIGN_OR_RETURN(auto old, jobs::JobRecord::FromJson(ParseJson(target->value)));
  BERTH_ASSIGN_OR_RETURN(auto cur_kv, store_.Get(keys_.Job(r.job)));
  if (!cur_kv) return NotFound("the job is gone");
  BERTH_ASSIGN_OR_RETURN(auto cur, jobs::JobRecord::FromJson(ParseJson(cur_kv->value)));
  if (cur.version != r.from_version || cur.status != "running") {
    return Status::Ok();  // someone submitted meanwhile: their version wins
  }
  jobs::JobRecord next;
  next.name = r.job;
  next.version = cur.version + 1;
  next.status = "running";
  next.submitted_at_ms = clock_->WallMillis();
  next.spec = old.spec;
  Deployment dep;
  dep.job = r.job;
  dep.version = next.version;
  dep.stable_version = r.to_version;
  dep.reverted_from = r.from_version;
  dep.started_at_ms = next.submitted_at_ms;
  dep.updated_at_ms = next.submitted_at_ms;
  dep.message =
      fmt::format("reverted version {} to the spec of version {}", r.from_version, r.to_version);
  std::string value = next.ToJson().dump();
  BERTH_ASSIGN_OR_RETURN(
      auto res,
      store_.Txn({LeaderElection::Fence(keys_, term),
                  store::Compare::ModRevisionEquals(keys_.Job(r.job), cur_kv->mod_revision)},
                 {store::TxnOp::Put(keys_.Job(r.job), value),
                  store::TxnOp::Put(keys_.JobVersion(r.job, next.version), value),
                  store::TxnOp::Put(keys_.Deployment(r.job), dep.ToJson().dump())}));
  if (res.succeeded) {
    spdlog::warn(
        "engine: job {}: version {} failed its deployment; reverted to version {}'s spec "
        "as version {}",
        r.job, r.from_version, r.to_version, next.version);
  }
  return Status::Ok();
}

}  // namespace berth::engine
