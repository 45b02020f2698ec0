#include "engine/reconciler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>
#include <functional>
#include <unordered_map>

#include "scheduler/scheduler.h"

namespace berth::engine {

namespace {

using runtime::AllocStatus;
using runtime::RunState;

bool StateIs(const AllocState& a, RunState s) {
  return a.status && a.status->state == s;
}

// Running, and healthy if checked.
bool Healthy(const AllocState& a) {
  return a.status && a.status->state == RunState::kRunning &&
         (a.status->health.empty() || a.status->health == "healthy");
}

// The static host ports an instance of the group takes.
std::vector<int> StaticPorts(const spec::Group& g) {
  std::vector<int> ports;
  for (const auto& t : g.tasks) {
    for (const auto& p : t.ports) {
      if (p.static_port > 0) ports.push_back(p.static_port);
    }
  }
  return ports;
}

void Totals(const spec::Group& g, int64_t& cpu, int64_t& memory) {
  cpu = 0;
  memory = 0;
  for (const auto& t : g.tasks) {
    cpu += t.resources.cpu;
    memory += t.resources.memory_bytes;
  }
}

// Filters whose rejection means "this machine is not meant for the group" (a system group is
// not wanted there), as opposed to "it does not fit right now".
bool NotMeantFor(const std::string& filter) {
  return filter != "resources" && filter != "ports";
}

// Everything one pass needs while walking the jobs.
class Pass {
 public:
  Pass(const ClusterState& state, const ReconcileOptions& options, int64_t now)
      : s_(state), o_(options), now_(now) {}

  Plan Run();

 private:
  struct Group {
    const JobState* job = nullptr;
    const spec::Group* spec = nullptr;
    std::vector<const AllocState*> allocs;
  };

  void BuildMachines();
  bool Live(const std::string& machine) const {
    return live_.count(machine) > 0 || s_.grace_machines.count(machine) > 0;
  }
  bool Draining(const std::string& machine) const {
    auto it = live_.find(machine);
    return it != live_.end() && it->second->admin.drain;
  }
  void Account(const AllocState& a, const spec::Group& g, bool add);
  void Stop(const AllocState& a, std::string reason);
  // Places `count` instances (pinned to `pin` when set); returns the machines chosen.
  std::vector<std::string> Place(const JobState& js, const spec::Group& g, int count,
                                 const std::string& pin, scheduler::Explanation* failure);
  void NewAlloc(const JobState& js, const spec::Group& g, int index, const std::string& machine);
  bool Reschedule(const AllocState& a, const JobState& js, const spec::Group& g);
  bool Current(const AllocState& a, const JobState& js, const spec::Group& g) const;
  bool DoneFor(const AllocState& a, const spec::Job& job, Deployment& dep);
  void CountedGroup(Group& grp, Deployment& dep, GroupProgress& progress, bool& old_left);
  void SystemGroup(Group& grp, Deployment& dep, GroupProgress& progress, bool& old_left);
  void Job(const JobState& js, std::vector<const AllocState*> allocs);

  const ClusterState& s_;
  const ReconcileOptions& o_;
  const int64_t now_;
  Plan plan_;
  scheduler::MachineSet set_;
  scheduler::Scheduler scheduler_;
  std::map<std::string, const MachineState*> live_;
  std::set<std::string> stopped_;  // alloc ids stopped in this plan
};

void Pass::BuildMachines() {
  for (const auto& m : s_.machines) {
    live_[m.id] = &m;
    auto view = scheduler::MachineView::FromMachineRecord(m.record);
    if (!view.ok()) {
      spdlog::warn("engine: machine {} takes no work: {}", m.id, view.status().message());
      continue;
    }
    // Usage comes from the allocations (below), not from the agent's possibly older report.
    view->cpu_used = 0;
    view->memory_used = 0;
    view->used_ports.clear();
    view->allocs = 0;
    view->eligible = view->eligible && m.admin.TakesWork();
    if (auto added = set_.Add(std::move(*view)); !added.ok()) {
      spdlog::warn("engine: machine {}: {}", m.id, added.status().message());
    }
  }
}

void Pass::Account(const AllocState& a, const spec::Group& g, bool add) {
  auto idx = set_.Find(a.alloc.machine);
  if (!idx) return;
  int64_t cpu = 0;
  int64_t memory = 0;
  Totals(g, cpu, memory);
  std::vector<int> ports = StaticPorts(g);
  if (add) {
    set_.AddAllocation(*idx, a.alloc.job, a.alloc.group, cpu, memory, ports);
  } else {
    set_.RemoveAllocation(*idx, a.alloc.job, a.alloc.group, cpu, memory, ports);
  }
}

void Pass::Stop(const AllocState& a, std::string reason) {
  if (!stopped_.insert(a.alloc.id).second) return;
  plan_.stop.push_back({a.key, a.alloc.id, a.alloc.machine, a.mod_revision, std::move(reason)});
  if (const spec::Group* g = a.alloc.FindGroup();
      g != nullptr && !StateIs(a, RunState::kFailed) && !StateIs(a, RunState::kComplete)) {
    Account(a, *g, /*add=*/false);
  }
}

std::vector<std::string> Pass::Place(const JobState& js, const spec::Group& g, int count,
                                     const std::string& pin, scheduler::Explanation* failure) {
  std::vector<std::string> out;
  if (count <= 0) return out;
  auto req = scheduler::RequestFromJob(js.job, g.name, count);
  if (!req.ok()) {
    if (failure) {
      *failure = {};
      failure->rejections.push_back({"request", req.status().message(), 0});
    }
    return out;
  }
  if (!pin.empty()) {
    if (!req->pin_machine.empty() && req->pin_machine != pin) {
      if (failure) {
        *failure = {};
        failure->machines = 1;
        failure->rejections.push_back({"pin", "is not the pinned machine", 1});
      }
      return out;
    }
    req->pin_machine = pin;
  }
  auto result = scheduler_.Place(*req, set_);
  if (!result.ok()) {
    if (failure) {
      *failure = {};
      failure->rejections.push_back({"request", result.status().message(), 0});
    }
    return out;
  }
  for (const auto& p : result->placed) out.push_back(p.machine);
  if (failure && result->unplaced > 0) *failure = result->failure;
  return out;
}

void Pass::NewAlloc(const JobState& js, const spec::Group& g, int index,
                    const std::string& machine) {
  runtime::Allocation a;
  a.job = js.job.name;
  a.group = g.name;
  a.index = index;
  a.id = runtime::NewAllocId(a.job, a.group, index);
  a.machine = machine;
  a.job_version = js.job.version;
  a.spec = js.job;
  a.created_at_ms = now_;
  plan_.place.push_back(std::move(a));
}

// Whether an allocation runs the group as it is now. The count and the placement rules do not
// matter to a running instance (they decide how many and where new ones go), so changing them
// scales or steers, and never replaces what runs.
bool Pass::Current(const AllocState& a, const JobState& js, const spec::Group& g) const {
  const spec::Group* mine = a.alloc.FindGroup();
  return mine != nullptr && mine->restart == g.restart && mine->constraints == g.constraints &&
         mine->tasks == g.tasks && a.alloc.spec.type == js.job.type;
}

// Whether a current-version allocation has done its part of the rollout: batch allocations as
// soon as they exist (and did not fail); service and system ones once running and healthy for
// min_healthy_time (tracked in the deployment, so a new leader keeps the clock).
bool Pass::DoneFor(const AllocState& a, const spec::Job& job, Deployment& dep) {
  if (job.type == spec::JobType::kBatch) return !StateIs(a, RunState::kFailed);
  if (!Healthy(a)) {
    dep.healthy_since_ms.erase(a.alloc.id);
    return false;
  }
  auto [it, inserted] = dep.healthy_since_ms.emplace(a.alloc.id, now_);
  (void)inserted;
  return now_ - it->second >= job.update.min_healthy_time.count();
}

void Pass::CountedGroup(Group& grp, Deployment& dep, GroupProgress& progress, bool& old_left) {
  const JobState& js = *grp.job;
  const spec::Group& g = *grp.spec;
  const bool batch = js.job.type == spec::JobType::kBatch;
  const int desired = g.count;
  progress.desired = desired;

  std::map<int, std::vector<const AllocState*>> by_index;
  std::set<int> rescheduled;  // indexes whose failed allocation got a new home in this pass
  for (const AllocState* a : grp.allocs) {
    if (StateIs(*a, RunState::kFailed) && a->alloc.index < desired &&
        !rescheduled.count(a->alloc.index) &&
        now_ - a->status->updated_at_ms >= o_.reschedule_delay.count() && Reschedule(*a, js, g)) {
      rescheduled.insert(a->alloc.index);
      continue;
    }
    by_index[a->alloc.index].push_back(a);
  }
  for (auto& [index, list] : by_index) {
    if (index < desired) continue;
    for (const AllocState* a : list) Stop(*a, fmt::format("count lowered to {}", desired));
  }

  int in_flight = 0;
  std::vector<int> missing;
  std::vector<int> needs_update;
  for (int index = 0; index < desired; ++index) {
    if (rescheduled.count(index)) {
      ++progress.placed;
      for (const AllocState* a : by_index[index]) Stop(*a, "replaced after a failure");
      continue;
    }
    std::vector<const AllocState*> cur;
    std::vector<const AllocState*> old;
    for (const AllocState* a : by_index[index]) {
      if (Current(*a, js, g) && !Draining(a->alloc.machine)) {
        cur.push_back(a);
      } else {
        old.push_back(a);
      }
    }
    if (cur.size() > 1) {
      // Keep the healthiest, then the oldest; a leftover of a lost race goes.
      std::stable_sort(cur.begin(), cur.end(), [](const AllocState* x, const AllocState* y) {
        if (Healthy(*x) != Healthy(*y)) return Healthy(*x);
        return x->alloc.created_at_ms < y->alloc.created_at_ms;
      });
      for (size_t i = 1; i < cur.size(); ++i) Stop(*cur[i], "a duplicate of " + cur[0]->alloc.id);
      cur.resize(1);
    }
    if (!cur.empty()) {
      ++progress.placed;
      if (DoneFor(*cur[0], js.job, dep)) {
        ++progress.healthy;
        for (const AllocState* a : old) Stop(*a, "replaced by " + cur[0]->alloc.id);
      } else if (!old.empty()) {
        ++in_flight;
        old_left = true;
      }
    } else if (!old.empty()) {
      needs_update.push_back(index);
      old_left = true;
    } else {
      missing.push_back(index);
    }
  }

  scheduler::Explanation failure;
  // Missing instances (new, lost, failed) are placed at once: no budget.
  std::vector<std::string> machines = Place(js, g, static_cast<int>(missing.size()), "", &failure);
  for (size_t i = 0; i < machines.size(); ++i) NewAlloc(js, g, missing[i], machines[i]);
  progress.placed += static_cast<int>(machines.size());
  progress.unplaced += static_cast<int>(missing.size() - machines.size());

  // Updates and migrations, at most max_parallel in flight.
  const int max_parallel = js.job.update.max_parallel;
  int budget = max_parallel <= 0 ? INT_MAX : max_parallel - in_flight;
  for (int index : needs_update) {
    if (budget <= 0) break;
    const auto& list = by_index[index];
    bool version_change = false;
    for (const AllocState* a : list) version_change |= !Current(*a, js, g);
    if (version_change && dep.state == DeploymentState::kFailed) continue;
    if (batch) {
      for (const AllocState* a : list) Stop(*a, "replaced by a new version");
      scheduler::Explanation why;
      auto placed = Place(js, g, 1, "", &why);
      if (placed.empty()) {
        ++progress.unplaced;
        failure = why;
      } else {
        NewAlloc(js, g, index, placed[0]);
        ++progress.placed;
      }
      continue;
    }
    scheduler::Explanation why;
    auto placed = Place(js, g, 1, "", &why);
    if (placed.empty() && version_change) {
      // No room beside the old version: stop it first (a destructive update).
      for (const AllocState* a : list) Stop(*a, "replaced by a new version (no room for both)");
      placed = Place(js, g, 1, "", &why);
    }
    if (placed.empty()) {
      ++progress.unplaced;
      failure = why;
      continue;
    }
    NewAlloc(js, g, index, placed[0]);
    ++progress.placed;
    --budget;
  }
  progress.explanation = progress.unplaced > 0 ? failure.ToString() : "";
}

// A failed allocation (its restart policy gave up) moves to another machine if one can take it;
// on its own machine it would only fail again the same way, so with no other home it stays
// failed for people to see.
bool Pass::Reschedule(const AllocState& a, const JobState& js, const spec::Group& g) {
  auto own = set_.Find(a.alloc.machine);
  bool was_eligible = own && set_.at(*own).eligible;
  if (own) set_.SetEligible(*own, false);
  auto placed = Place(js, g, 1, "", nullptr);
  if (own) set_.SetEligible(*own, was_eligible);
  if (placed.empty()) return false;
  Stop(a, "failed: placed again on " + placed[0]);
  NewAlloc(js, g, a.alloc.index, placed[0]);
  return true;
}

void Pass::SystemGroup(Group& grp, Deployment& dep, GroupProgress& progress, bool& old_left) {
  const JobState& js = *grp.job;
  const spec::Group& g = *grp.spec;
  std::map<std::string, std::vector<const AllocState*>> by_machine;
  for (const AllocState* a : grp.allocs) by_machine[a->alloc.machine].push_back(a);
  int in_flight = 0;
  std::vector<std::string> missing;
  std::vector<std::string> needs_update;
  for (const auto& [id, m] : live_) {
    auto& list = by_machine[id];
    if (m->admin.drain) {
      for (const AllocState* a : list) Stop(*a, "machine draining");
      continue;
    }
    std::vector<const AllocState*> cur;
    std::vector<const AllocState*> old;
    for (const AllocState* a : list) (Current(*a, js, g) ? cur : old).push_back(a);
    if (cur.size() > 1) {
      for (size_t i = 1; i < cur.size(); ++i) Stop(*cur[i], "a duplicate of " + cur[0]->alloc.id);
      cur.resize(1);
    }
    if (!cur.empty()) {
      ++progress.desired;
      ++progress.placed;
      if (DoneFor(*cur[0], js.job, dep)) {
        ++progress.healthy;
        for (const AllocState* a : old) Stop(*a, "replaced by " + cur[0]->alloc.id);
      } else if (!old.empty()) {
        ++in_flight;
        old_left = true;
      }
    } else if (!old.empty()) {
      ++progress.desired;
      needs_update.push_back(id);
      old_left = true;
    } else if (m->admin.TakesWork()) {
      missing.push_back(id);
    }
  }
  // Allocations on machines in grace count as they are.
  for (const auto& [id, list] : by_machine) {
    if (live_.count(id) || list.empty()) continue;
    progress.desired += 1;
    progress.placed += 1;
  }

  scheduler::Explanation failure;
  std::map<std::string, int> unplaced_reasons;
  for (const std::string& id : missing) {
    scheduler::Explanation why;
    auto placed = Place(js, g, 1, id, &why);
    if (!placed.empty()) {
      NewAlloc(js, g, 0, placed[0]);
      ++progress.desired;
      ++progress.placed;
      continue;
    }
    bool meant = true;
    for (const auto& r : why.rejections) meant &= !NotMeantFor(r.filter) || r.machines == 0;
    if (why.rejections.empty()) meant = false;
    if (!meant) continue;  // constraints say the group does not belong here
    ++progress.desired;
    ++progress.unplaced;
    for (const auto& r : why.rejections) unplaced_reasons[r.reason] += r.machines;
  }
  const int max_parallel = js.job.update.max_parallel;
  int budget = max_parallel <= 0 ? INT_MAX : max_parallel - in_flight;
  if (dep.state != DeploymentState::kFailed) {
    for (const std::string& id : needs_update) {
      if (budget <= 0) break;
      scheduler::Explanation why;
      auto placed = Place(js, g, 1, id, &why);
      if (placed.empty()) {
        for (const AllocState* a : by_machine[id]) {
          Stop(*a, "replaced by a new version (no room for both)");
        }
        placed = Place(js, g, 1, id, &why);
      }
      if (placed.empty()) {
        ++progress.unplaced;
        for (const auto& r : why.rejections) unplaced_reasons[r.reason] += r.machines;
        continue;
      }
      NewAlloc(js, g, 0, placed[0]);
      ++progress.placed;
      --budget;
    }
  }
  if (progress.unplaced > 0) {
    std::string text =
        fmt::format("{} of {} machines could not take it:", progress.unplaced, progress.desired);
    bool first = true;
    for (const auto& [reason, n] : unplaced_reasons) {
      text += fmt::format("{} {} {}", first ? "" : ",", n, reason);
      first = false;
    }
    progress.explanation = text;
  }
}

void Pass::Job(const JobState& js, std::vector<const AllocState*> allocs) {
  const spec::Job& job = js.job;
  // The deployment of this version: the stored one, or a fresh one that inherits the stable
  // version and the health clocks of allocations that carry over.
  Deployment dep;
  const Deployment* stored = nullptr;
  if (auto it = s_.deployments.find(job.name); it != s_.deployments.end()) stored = &it->second;
  if (stored != nullptr && stored->version == job.version) {
    dep = *stored;
  } else {
    dep.job = job.name;
    dep.version = job.version;
    dep.state = DeploymentState::kRunning;
    dep.started_at_ms = now_;
    if (stored != nullptr) {
      dep.stable_version =
          stored->state == DeploymentState::kSuccessful ? stored->version : stored->stable_version;
      dep.healthy_since_ms = stored->healthy_since_ms;
    }
  }
  dep.groups.clear();

  std::map<std::string, Group> groups;
  for (const auto& g : job.groups) groups[g.name] = {&js, &g, {}};
  for (const AllocState* a : allocs) {
    auto it = groups.find(a->alloc.group);
    if (it == groups.end()) {
      Stop(*a, "its group is no longer in the job");
      continue;
    }
    it->second.allocs.push_back(a);
  }
  bool old_left = false;
  for (const auto& g : job.groups) {
    GroupProgress progress;
    if (job.type == spec::JobType::kSystem) {
      SystemGroup(groups[g.name], dep, progress, old_left);
    } else {
      CountedGroup(groups[g.name], dep, progress, old_left);
    }
    dep.groups[g.name] = progress;
  }

  // Forget health clocks of allocations that are gone or stopped.
  std::set<std::string> present;
  for (const AllocState* a : allocs) {
    if (!stopped_.count(a->alloc.id)) present.insert(a->alloc.id);
  }
  for (auto it = dep.healthy_since_ms.begin(); it != dep.healthy_since_ms.end();) {
    it = present.count(it->first) ? std::next(it) : dep.healthy_since_ms.erase(it);
  }

  if (dep.state == DeploymentState::kRunning) {
    // Failure: a new-version allocation failed, or is not healthy by its deadline.
    std::string failure;
    if (job.type != spec::JobType::kBatch) {
      for (const AllocState* a : allocs) {
        if (stopped_.count(a->alloc.id) || !groups.count(a->alloc.group)) continue;
        if (!Current(*a, js, *groups[a->alloc.group].spec)) continue;
        if (a->alloc.created_at_ms < dep.started_at_ms) continue;
        if (StateIs(*a, RunState::kFailed)) {
          failure = fmt::format("allocation {} failed", a->alloc.id);
          break;
        }
        if (!Healthy(*a) && now_ - a->alloc.created_at_ms > job.update.healthy_deadline.count()) {
          failure = fmt::format("allocation {} was not healthy within {}", a->alloc.id,
                                spec::FormatDuration(job.update.healthy_deadline));
          break;
        }
      }
    }
    bool all_done = !old_left;
    for (const auto& [name, p] : dep.groups) all_done &= p.healthy == p.desired && p.unplaced == 0;
    if (!failure.empty()) {
      dep.state = DeploymentState::kFailed;
      dep.message = failure;
      if (job.update.auto_revert && dep.stable_version > 0 && dep.stable_version != job.version) {
        dep.message += fmt::format("; reverting to version {}", dep.stable_version);
        plan_.reverts.push_back(
            {job.name, job.version, dep.stable_version, js.record.mod_revision});
      }
    } else if (all_done) {
      dep.state = DeploymentState::kSuccessful;
      dep.stable_version = job.version;
      dep.message.clear();
    } else {
      int unplaced = 0;
      for (const auto& [name, p] : dep.groups) unplaced += p.unplaced;
      dep.message = unplaced > 0 ? fmt::format("{} instance(s) cannot be placed", unplaced)
                                 : "waiting for allocations to be healthy";
    }
  }
  dep.updated_at_ms = now_;
  if (stored == nullptr || !stored->SameAs(dep)) plan_.deployments.push_back(std::move(dep));
}

Plan Pass::Run() {
  BuildMachines();

  std::map<std::string, const JobState*> jobs;
  for (const auto& js : s_.jobs) jobs[js.job.name] = &js;

  // Lost allocations first, then account what stays on the live machines.
  std::map<std::string, std::vector<const AllocState*>> by_job;
  for (const AllocState& a : s_.allocs) {
    if (!Live(a.alloc.machine)) {
      if (StateIs(a, RunState::kComplete)) continue;  // a finished batch run stays finished
      AllocStatus st = a.status ? *a.status : AllocStatus::Pending(a.alloc);
      st.state = RunState::kLost;
      st.message = fmt::format("machine {} is gone", a.alloc.machine);
      st.AddEvent({now_, "", "lost", st.message});
      st.updated_at_ms = now_;
      plan_.lost.push_back({a.key, a.mod_revision, std::move(st)});
      continue;
    }
    const spec::Group* g = a.alloc.FindGroup();
    if (g != nullptr && !StateIs(a, RunState::kFailed) && !StateIs(a, RunState::kComplete)) {
      Account(a, *g, /*add=*/true);
    }
    by_job[a.alloc.job].push_back(&a);
  }

  // Allocations of jobs that are stopped or gone.
  for (const auto& [name, list] : by_job) {
    if (s_.unreadable_jobs.count(name)) continue;
    auto it = jobs.find(name);
    bool running = it != jobs.end() && it->second->record.status == "running";
    if (running) continue;
    for (const AllocState* a : list) {
      Stop(*a, it == jobs.end() ? "job purged" : "job stopped");
    }
  }
  // Higher priority jobs place first.
  std::vector<const JobState*> order;
  for (const auto& js : s_.jobs) {
    if (js.record.status == "running") order.push_back(&js);
  }
  std::stable_sort(order.begin(), order.end(), [](const JobState* a, const JobState* b) {
    return a->job.priority > b->job.priority;
  });
  for (const JobState* js : order) Job(*js, by_job[js->job.name]);

  // A stopped job's rollout is over: say so instead of waiting for health forever.
  for (const auto& js : s_.jobs) {
    if (js.record.status == "running") continue;
    auto it = s_.deployments.find(js.job.name);
    if (it == s_.deployments.end() || it->second.state != DeploymentState::kRunning) continue;
    Deployment dep = it->second;
    dep.state = DeploymentState::kFailed;
    dep.message = "the job was stopped";
    dep.updated_at_ms = now_;
    plan_.deployments.push_back(std::move(dep));
  }
  // Deployment records of purged jobs.
  for (const auto& [name, dep] : s_.deployments) {
    if (!jobs.count(name) && !s_.unreadable_jobs.count(name)) {
      plan_.delete_deployments.push_back(name);
    }
  }
  // Statuses left by allocations of machines that are gone.
  for (const auto& st : s_.orphan_statuses) {
    if (Live(st.machine)) continue;  // that machine's agent cleans up its own
    if (now_ - st.updated_at_ms >= o_.status_gc_after.count()) {
      plan_.delete_statuses.push_back(st.key);
    }
  }
  return std::move(plan_);
}

}  // namespace

std::string Plan::Summary() const {
  return fmt::format(
      "place {}, stop {}, lost {}, deployments {}, reverts {}, deleted deployments {}, "
      "deleted statuses {}",
      place.size(), stop.size(), lost.size(), deployments.size(), reverts.size(),
      delete_deployments.size(), delete_statuses.size());
}

Plan Reconcile(const ClusterState& state, const ReconcileOptions& options, int64_t now_ms) {
  Pass pass(state, options, now_ms);
  return pass.Run();
}

}  // namespace berth::engine
