// Reconcile: the cluster engine's decision, as a pure function. Given what the store holds (live
// machines and their admin settings, jobs, allocations with their statuses, deployments) and the
// time, it returns the Plan that moves the cluster toward the jobs: allocations to place, stop
// or mark lost, deployment records to write, and jobs to revert. It reads nothing else and
// writes nothing: the Engine loads the state, calls it, and applies the plan under its leader
// fence. Tests drive it with hand-made states (tests/engine/reconciler_test.cc).
//
// The rules (docs/engine.md has the long form):
// - An allocation on a machine that is not live (no machine record) is lost: its record is
//   deleted, its status says "lost", and its instance is placed again elsewhere at once. A
//   machine in `grace_machines` (absent, but the engine started too recently to tell death
//   from a restart) keeps its allocations untouched.
// - Service and batch groups keep `count` instances, indexed 0..count-1; system groups keep one
//   instance on every live machine that takes work and passes the group's constraints.
// - An instance whose group spec changed is replaced by an update: at most `max_parallel`
//   instances at a time get a new allocation next to the old one (surge), and the old one is
//   stopped once the new one has been running and healthy for `min_healthy_time`. When there is
//   no room for both, the old one is stopped first. Batch groups replace at once.
// - A draining machine's allocations are migrated the same way (replacement first, then stop),
//   with the job's max_parallel; system allocations on it are stopped.
// - A failed allocation (restart policy gave up) is placed again on another machine after
//   `reschedule_delay`, and then stopped; with no other machine that can take it, it stays
//   failed (on its own machine it would fail the same way again).
// - Deployments: each job version gets one; it succeeds when every instance runs the version
//   healthy for min_healthy_time, fails when a new allocation fails or is not healthy within
//   `healthy_deadline`, and with `auto_revert` a failed one reverts the job to its last stable
//   version (a new version with that spec). A failed deployment stops rolling further.
// - Every instance the scheduler cannot place is counted and explained in the deployment.
// Thread-safety: pure; call from any thread.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/records.h"
#include "jobs/job_registry.h"
#include "runtime/alloc.h"
#include "spec/job.h"

namespace berth::engine {

struct MachineState {
  std::string id;
  nlohmann::json record;  // machines/<id>, as the agent wrote it
  MachineAdmin admin;
};

struct AllocState {
  runtime::Allocation alloc;
  std::string key;
  int64_t mod_revision = 0;
  std::optional<runtime::AllocStatus> status;
};

struct JobState {
  jobs::JobRecord record;
  spec::Job job;  // record.spec parsed, version set
};

// A status record whose allocation no longer exists.
struct StatusOnly {
  std::string key;
  std::string id;
  std::string machine;
  std::string state;
  int64_t updated_at_ms = 0;
};

struct ClusterState {
  std::vector<MachineState> machines;  // live: their machine record exists
  std::set<std::string> grace_machines;
  std::vector<JobState> jobs;
  std::set<std::string> unreadable_jobs;  // corrupt job records: their allocations are left alone
  std::vector<AllocState> allocs;
  std::map<std::string, Deployment> deployments;  // by job
  std::vector<StatusOnly> orphan_statuses;
};

struct ReconcileOptions {
  std::chrono::milliseconds reschedule_delay{5'000};
  // A status without an allocation, on a machine that is not live, is deleted this long after
  // its last update (lost allocations stay visible that long).
  std::chrono::milliseconds status_gc_after{3'600'000};
};

struct StopAction {
  std::string key;
  std::string id;
  std::string machine;
  int64_t mod_revision = 0;
  std::string reason;
};

struct LostAction {
  std::string key;
  int64_t mod_revision = 0;
  runtime::AllocStatus status;  // to write at status/<id>
};

struct RevertAction {
  std::string job;
  int64_t from_version = 0;
  int64_t to_version = 0;
  int64_t job_mod_revision = 0;  // of jobs/<job> when the plan was made
};

struct Plan {
  std::vector<runtime::Allocation> place;
  std::vector<StopAction> stop;
  std::vector<LostAction> lost;
  std::vector<Deployment> deployments;  // changed records to write
  std::vector<std::string> delete_deployments;
  std::vector<RevertAction> reverts;
  std::vector<std::string> delete_statuses;  // keys

  bool empty() const {
    return place.empty() && stop.empty() && lost.empty() && deployments.empty() &&
           delete_deployments.empty() && reverts.empty() && delete_statuses.empty();
  }
  // "place 2, stop 1, lost 1, ..." for logs.
  std::string Summary() const;
};

Plan Reconcile(const ClusterState& state, const ReconcileOptions& options, int64_t now_ms);

}  // namespace berth::engine
