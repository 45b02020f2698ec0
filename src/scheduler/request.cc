#include "scheduler/request.h"

namespace berth::scheduler {

Result<PlacementRequest> RequestFromJob(const spec::Job& job, std::string_view group, int count,
                                        const PlacementOptions& options) {
  const spec::Group* g = nullptr;
  for (const spec::Group& candidate : job.groups) {
    if (candidate.name == group) g = &candidate;
  }
  if (g == nullptr) {
    return NotFound("job " + job.name + " has no group " + std::string(group));
  }
  PlacementRequest r;
  r.job = job.name;
  r.group = g->name;
  r.count = count < 0 ? g->count : count;
  const spec::Placement& placement = g->placement;
  r.strategy = options.strategy.value_or(placement.strategy);
  r.spread_attribute = options.spread_attribute.value_or(placement.spread_attribute);
  r.affinity_jobs = options.affinity_jobs.value_or(placement.machine_of);
  r.conflict_jobs = options.conflict_jobs.value_or(placement.conflicts);
  r.seed = options.seed;
  r.candidate_limit = options.candidate_limit;
  auto take = [&](const std::vector<spec::Constraint>& cs) -> Status {
    for (const spec::Constraint& c : cs) {
      if (c.op == spec::ConstraintOperator::kDistinctHosts) {
        r.distinct_hosts = true;
      } else if (c.op == spec::ConstraintOperator::kEqual && c.attribute == "machine.id") {
        if (!r.pin_machine.empty() && r.pin_machine != c.value) {
          return InvalidArgument("job " + job.name + " group " + g->name +
                                 ": pinned to two machines (" + r.pin_machine + ", " + c.value +
                                 ")");
        }
        r.pin_machine = c.value;
      } else {
        r.constraints.push_back(c);
      }
    }
    return Status::Ok();
  };
  BERTH_RETURN_IF_ERROR(take(job.constraints));
  BERTH_RETURN_IF_ERROR(take(g->constraints));
  for (const spec::Task& t : g->tasks) {
    r.cpu += t.resources.cpu;
    r.memory_bytes += t.resources.memory_bytes;
    for (const spec::Port& p : t.ports) {
      if (p.static_port != 0) r.ports.push_back(p.static_port);
    }
    BERTH_RETURN_IF_ERROR(take(t.constraints));
  }
  return r;
}

}  // namespace berth::scheduler
