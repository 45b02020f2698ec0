// PlacementRequest: what the scheduler is asked to place — `count` new instances of one task
// group — and RequestFromJob(), which builds one from a job spec.
//
// Everything a filter or strategy needs is here, already flattened: the per-instance resources
// (the sum of the group's tasks), the static host ports, every constraint that applies (job,
// group and task level), and the fleet-style rules (pin to a machine, run beside a job, never
// beside a job). The request is plain data; Scheduler::Place compiles it (regular expressions,
// version constraints, interned names) once per call, not per machine.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "spec/job.h"

namespace berth::scheduler {

struct PlacementRequest {
  std::string job;
  std::string group;
  int count = 1;  // new instances to place
  // Per instance.
  int64_t cpu = 0;  // 1000 per core
  int64_t memory_bytes = 0;
  std::vector<int> ports;  // static host ports (dynamic ones are the agent's business)
  // Constraints on machine attributes; any distinct_hosts among them acts like the flag below.
  std::vector<spec::Constraint> constraints;
  bool distinct_hosts = false;  // at most one instance of this group per machine
  std::string pin_machine;      // fleet's MachineID: only this machine id
  // fleet's MachineOf: only on machines running an allocation of every one of these jobs.
  std::vector<std::string> affinity_jobs;
  // fleet's Conflicts: never on a machine running an allocation of any of these jobs. A
  // pattern may use '*' (any run of characters): "db-*".
  std::vector<std::string> conflict_jobs;
  std::string strategy = "binpack";  // "binpack", "spread", "random" or a registered one
  std::string spread_attribute;      // spread: the attribute to even out; empty: machine.id
  uint64_t seed = 0;                 // random and the scan's start; 0: derived from the job
  // How many feasible machines to score per instance: 0 picks the default (see
  // DefaultCandidateLimit), a negative number scores every feasible machine.
  int candidate_limit = 0;
};

// What the caller adds to, or overrides in, the job spec's placement: the seed and candidate
// limit (not in the spec), and overrides of the group's `placement` block for tools and tests
// (a field that is set replaces the spec's).
struct PlacementOptions {
  std::optional<std::string> strategy;
  std::optional<std::string> spread_attribute;
  std::optional<std::vector<std::string>> affinity_jobs;
  std::optional<std::vector<std::string>> conflict_jobs;
  uint64_t seed = 0;
  int candidate_limit = 0;
};

// The request for `count` new instances of job's group `group` (count < 0: the group's count).
// Resources and static ports are summed over the group's tasks; constraints are the job's, the
// group's and every task's. A distinct_hosts constraint sets the flag, and a `machine.id ==`
// constraint becomes the pin (fleet's MachineID); neither stays in `constraints`. The strategy,
// spread attribute, affinity (machine_of) and conflicts come from the group's placement block
// unless `options` overrides them.
Result<PlacementRequest> RequestFromJob(const spec::Job& job, std::string_view group,
                                        int count = -1, const PlacementOptions& options = {});

}  // namespace berth::scheduler
