#include "agent/dev_placer.h"

#include <spdlog/spdlog.h>

#include <map>
#include <tuple>

#include "jobs/job_registry.h"
#include "runtime/alloc.h"
#include "spec/job_json.h"

namespace berth::agent {

DevPlacer::DevPlacer(store::Store& store, store::Keys keys, std::string machine_id, ClockPtr clock)
    : store_(store),
      keys_(std::move(keys)),
      machine_id_(std::move(machine_id)),
      clock_(std::move(clock)) {}

DevPlacer::~DevPlacer() {
  Stop();
}

void DevPlacer::Start() {
  store::PrefixWatcher::Callbacks cb;
  auto place = [this] {
    Status st = PlaceOnce();
    if (!st.ok()) spdlog::warn("dev placement: {}", st.message());
  };
  cb.on_list = [place](const store::RangeResult&) { place(); };
  cb.on_events = [place](const std::vector<store::Event>&) { place(); };
  watcher_ = std::make_unique<store::PrefixWatcher>(store_, keys_.Jobs(), std::move(cb));
  watcher_->Start();
}

void DevPlacer::Stop() {
  if (watcher_) watcher_->Stop();
}

Status DevPlacer::PlaceOnce() {
  std::lock_guard lock(mu_);
  BERTH_ASSIGN_OR_RETURN(auto jobs, store_.Range(keys_.Jobs()));
  BERTH_ASSIGN_OR_RETURN(auto allocs, store_.Range(keys_.MachineAllocs(machine_id_)));

  // What should run: (job, group, index) -> the job version and group spec.
  using Slot = std::tuple<std::string, std::string, int>;
  struct Want {
    const spec::Job* job;
    const spec::Group* group;
    int64_t version;
  };
  std::vector<spec::Job> specs;
  specs.reserve(jobs.kvs.size());
  std::map<Slot, Want> want;
  for (const auto& kv : jobs.kvs) {
    auto j = nlohmann::json::parse(kv.value, nullptr, false);
    auto record = jobs::JobRecord::FromJson(j);
    if (!record.ok()) {
      spdlog::warn("dev placement: skipping {}: {}", kv.key, record.status().message());
      continue;
    }
    if (record->status != "running") continue;
    auto job = spec::JobFromJson(record->spec, kv.key);
    if (!job.ok()) {
      spdlog::warn("dev placement: skipping {}: {}", kv.key, job.status().message());
      continue;
    }
    job->version = record->version;
    specs.push_back(std::move(*job));
  }
  for (const auto& job : specs) {
    for (const auto& g : job.groups) {
      int n = job.type == spec::JobType::kSystem ? 1 : g.count;
      for (int i = 0; i < n; ++i) want[{job.name, g.name, i}] = {&job, &g, job.version};
    }
  }

  std::vector<store::TxnOp> ops;
  std::map<Slot, bool> placed;
  for (const auto& kv : allocs.kvs) {
    auto j = nlohmann::json::parse(kv.value, nullptr, false);
    auto alloc = runtime::Allocation::FromJson(j, kv.key);
    if (!alloc.ok()) {
      spdlog::warn("dev placement: deleting unreadable {}: {}", kv.key, alloc.status().message());
      ops.push_back(store::TxnOp::Delete(kv.key));
      continue;
    }
    Slot slot{alloc->job, alloc->group, alloc->index};
    auto w = want.find(slot);
    bool keep = w != want.end() && !placed[slot] && alloc->FindGroup() != nullptr &&
                *alloc->FindGroup() == *w->second.group && alloc->spec.type == w->second.job->type;
    if (keep) {
      placed[slot] = true;
    } else {
      ops.push_back(store::TxnOp::Delete(kv.key));
    }
  }
  for (const auto& [slot, w] : want) {
    if (placed[slot]) continue;
    runtime::Allocation a;
    a.job = w.job->name;
    a.group = w.group->name;
    a.index = std::get<2>(slot);
    a.id = runtime::NewAllocId(a.job, a.group, a.index);
    a.machine = machine_id_;
    a.job_version = w.version;
    a.spec = *w.job;
    a.created_at_ms = clock_->WallMillis();
    ops.push_back(store::TxnOp::Put(keys_.Alloc(machine_id_, a.id), a.ToJson().dump()));
  }
  if (ops.empty()) return Status::Ok();
  BERTH_ASSIGN_OR_RETURN(auto txn, store_.Txn({}, ops, {}));
  (void)txn;
  return Status::Ok();
}

}  // namespace berth::agent
