// Engine: the cluster engine. Every agent runs one; the one that wins the leader election
// (leader.h) runs passes: load the cluster state from the store, Reconcile() it (reconciler.h),
// apply the plan. A pass runs when anything under the key prefix changes (one watch, debounced)
// and at least every `tick` (time-based steps: min_healthy_time, deadlines, reschedule delays).
//
// Every write of a pass is fenced to the leader's term (the create revision of engine/leader)
// and to the revisions it read (an allocation is created only if absent, deleted only if
// unchanged), in transactions of at most kMaxOpsPerTxn operations; a deposed leader's writes
// fail, so nothing is ever placed twice. A transaction that fails on a stale revision is retried
// one change at a time, then the next pass starts over from fresh state.
//
// Machines that are absent when the engine has just started (the whole cluster restarting) get
// a grace (startup_grace) before their allocations count as lost; a machine seen to register
// by this engine and then gone is lost at once (a record it only found, left from before, does
// not count: that machine may be restarting too).
// Thread-safety: Start/Stop from one thread; the rest from any.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/clock.h"
#include "engine/leader.h"
#include "engine/reconciler.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::engine {

class Engine {
 public:
  struct Options {
    std::string machine_id;
    std::string address;  // this agent's API address, published in the leader record
    std::chrono::seconds leader_ttl{3};
    std::chrono::milliseconds tick{1000};
    std::chrono::milliseconds min_pass_interval{50};
    // How long after start absent machines keep their allocations (see above); the agent uses
    // machine_ttl + 2 s.
    std::chrono::milliseconds startup_grace{5'000};
    ReconcileOptions reconcile;
  };
  static constexpr size_t kMaxOpsPerTxn = 48;  // etcd allows 128 by default

  Engine(store::Store& store, store::Keys keys, ClockPtr clock, Options options);
  ~Engine();

  void Start();
  // resign=false stops as a crash would: the leader key stays until its lease expires.
  void Stop(bool resign = true);
  bool leading() const { return election_.leading(); }
  uint64_t passes() const { return passes_.load(); }

  // Loads the state, reconciles and applies under `term` (the current term if 0). For the
  // loop and for tests; FailedPrecondition when not leading.
  Result<Plan> RunOnce(int64_t term = 0);
  Result<ClusterState> Load();

 private:
  struct Unit {
    std::vector<store::Compare> compares;
    std::vector<store::TxnOp> ops;
  };
  Status Apply(const Plan& plan, int64_t term);
  Status ApplyUnits(const std::vector<Unit>& units, int64_t term);
  Status Revert(const RevertAction& r, int64_t term);
  void Loop();
  void OnElected(int64_t term);
  void OnLost();
  void MarkDirty();
  // Whether a watch response touches what a pass reads.
  bool Relevant(const store::WatchResponse& r) const;

  store::Store& store_;
  const store::Keys keys_;
  const ClockPtr clock_;
  const Options options_;
  LeaderElection election_;
  const TimePoint started_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool dirty_ = false;
  store::WatchPtr watch_;  // the loop thread's (then Stop's, after the join)
  std::atomic<bool> watch_failed_{false};
  std::set<std::string> seen_live_;  // machines this engine has seen register
  // The store revision of this engine's first machine listing; a machine record created at or
  // before it was left by an earlier run of that machine. Read and written under mu_.
  int64_t start_revision_ = 0;
  std::atomic<uint64_t> passes_{0};
  std::thread thread_;
};

}  // namespace berth::engine
