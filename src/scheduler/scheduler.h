// Scheduler: places the instances of a PlacementRequest on the machines of a MachineSet —
// feasibility filters, then a scoring strategy, as in Nomad and Swarm — and explains every
// instance it cannot place ("0 of 3 machines: 2 lacked memory, 1 is ineligible").
//
// Place() is pure apart from the set it is given: it reads nothing else, writes nothing else,
// and records each placed instance in the set (AddAllocation) before placing the next, so later
// instances see the earlier ones (their cpu, memory, ports, distinct_hosts, spread). The
// engine turns the result into allocations in the store.
//
// Speed: per instance the scheduler visits machines in a shuffled order, continuing where the
// previous instance stopped, and scores only the first `limit` feasible ones (Nomad's limit
// iterator): DefaultCandidateLimit(n) is every machine up to 100, then max(16, log2 n + 1). The
// best of a sample is not always the cluster's best (binpack may pick a machine a little less
// full than the fullest); a request sets candidate_limit < 0 to score every feasible machine.
// Pinning, affinity and == constraints narrow the walk to the machines they allow (through the
// set's indexes). An instance that finds no machine has been tried against every candidate, so
// its explanation counts every machine. See docs/scheduler.md for figures.
// Thread-safety: a Scheduler belongs to one thread (it keeps a compile cache); several
// Schedulers on several threads need separate MachineSets. No locks are taken.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "scheduler/machine_set.h"
#include "scheduler/plugin.h"
#include "scheduler/request.h"

namespace berth::scheduler {

// How many machines one filter turned down, for one reason.
struct Rejection {
  std::string filter;  // "resources"
  std::string reason;  // "lacked memory" (the form that agrees with `machines`)
  int machines = 0;
  bool operator==(const Rejection&) const = default;
};

struct Explanation {
  int machines = 0;                   // machines in the set
  int feasible = 0;                   // machines that passed every filter
  std::vector<Rejection> rejections;  // non-zero ones, most machines first
  // "0 of 3 machines: 2 lacked memory, 1 is ineligible"; "0 of 0 machines" for an empty set.
  std::string ToString() const;
};

struct InstancePlacement {
  std::string machine;  // the machine's id
  size_t machine_index = 0;
  double score = 0;
};

struct PlacementResult {
  std::vector<InstancePlacement> placed;  // one per placed instance, in order
  int unplaced = 0;                       // instances no machine could take
  Explanation failure;                    // why, when unplaced > 0
  int64_t machines_visited = 0;           // over all instances (for metrics)
  bool ok() const { return unplaced == 0; }
};

// Feasible machines scored per instance by default, for a set of n machines.
int DefaultCandidateLimit(size_t n);

class Scheduler {
 public:
  explicit Scheduler(Registry registry = Registry::Builtin());

  // Places request.count instances. Errors only for a malformed request (unknown strategy, a
  // bad regexp or version constraint, count < 0); an instance that fits nowhere is a result.
  Result<PlacementResult> Place(const PlacementRequest& request, MachineSet& machines);

  const Registry& registry() const { return registry_; }

 private:
  Registry registry_;
  CompileCache cache_;
  uint64_t calls_ = 0;
};

// One-shot convenience: a fresh Scheduler with the built-ins.
Result<PlacementResult> Place(const PlacementRequest& request, MachineSet& machines);

}  // namespace berth::scheduler
