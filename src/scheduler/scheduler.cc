#include "scheduler/scheduler.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <string_view>

namespace berth::scheduler {

std::string Explanation::ToString() const {
  std::string s = std::to_string(feasible) + " of " + std::to_string(machines) + " machines";
  for (size_t i = 0; i < rejections.size(); ++i) {
    s += i == 0 ? ": " : ", ";
    s += std::to_string(rejections[i].machines) + " " + rejections[i].reason;
  }
  return s;
}

int DefaultCandidateLimit(size_t n) {
  if (n <= 100) return static_cast<int>(n);
  return std::max(16, static_cast<int>(std::bit_width(n)));  // bit_width(n) ~ log2(n) + 1
}

Scheduler::Scheduler(Registry registry) : registry_(std::move(registry)) {}

namespace {

struct ActiveFilter {
  const std::string* name;
  FilterPtr filter;
  std::vector<int> rejected;  // per reason (Check's value - 1), for the current instance

  void Reject(uint32_t why, int machines = 1) {
    if (why > rejected.size()) rejected.resize(why, 0);
    rejected[why - 1] += machines;
  }
};

}  // namespace

Result<PlacementResult> Scheduler::Place(const PlacementRequest& request, MachineSet& machines) {
  if (request.count < 0) return InvalidArgument("placement request: negative count");
  const StrategyFactory* make_strategy = registry_.FindStrategy(request.strategy);
  if (make_strategy == nullptr) {
    return InvalidArgument("placement request: unknown strategy \"" + request.strategy + "\"");
  }
  ++calls_;
  uint64_t seed = request.seed;
  if (seed == 0) {
    seed = std::hash<std::string_view>{}(request.job) ^
           (std::hash<std::string_view>{}(request.group) << 1) ^ (calls_ * 0x9e3779b97f4a7c15ULL);
  }
  Rng rng(seed);
  KeyId job = machines.InternJob(request.job);
  KeyId group = machines.InternGroup(request.job, request.group);
  PlacementContext ctx{request, machines, job, group, rng, cache_};

  std::vector<ActiveFilter> filters;
  filters.reserve(registry_.filters().size());
  for (const Registry::NamedFilter& nf : registry_.filters()) {
    BERTH_ASSIGN_OR_RETURN(FilterPtr f, nf.factory(ctx));
    if (f == nullptr) continue;
    filters.push_back({&nf.name, std::move(f), {}});
  }
  BERTH_ASSIGN_OR_RETURN(StrategyPtr strategy, (*make_strategy)(ctx));

  // The machines to visit: all of them in shuffled order, or the smallest candidate list a
  // filter offers (its complement is charged to that filter).
  std::span<const uint32_t> source = machines.order();
  ActiveFilter* narrowing = nullptr;
  uint32_t narrowing_reason = 1;
  for (ActiveFilter& f : filters) {
    std::optional<Filter::CandidateList> c = f.filter->Candidates();
    if (c && (narrowing == nullptr || c->machines.size() < source.size())) {
      source = c->machines;
      narrowing = &f;
      narrowing_reason = std::max<uint32_t>(c->reason, 1);
    }
  }
  int limit = request.candidate_limit;
  if (limit == 0) limit = strategy->CandidateLimit();
  if (limit == 0) limit = DefaultCandidateLimit(machines.size());
  const size_t n = source.size();
  size_t pos = n == 0 ? 0 : static_cast<size_t>(rng.Next() % n);

  PlacementResult result;
  // (A count is untrusted: reserve no more than the set could plausibly take at once.)
  result.placed.reserve(std::min<size_t>(static_cast<size_t>(request.count), n + 1));
  for (int instance = 0; instance < request.count; ++instance) {
    for (ActiveFilter& f : filters) std::fill(f.rejected.begin(), f.rejected.end(), 0);
    int64_t best = -1;
    double best_score = 0;
    int feasible = 0;
    size_t visited = 0;
    while (visited < n && (limit < 0 || feasible < limit)) {
      uint32_t index = source[pos];
      pos = pos + 1 == n ? 0 : pos + 1;
      // The machines are visited in shuffled order, so each visit starts with a cache miss:
      // fetch the next one while this one is checked.
      __builtin_prefetch(&machines.at(source[pos]));
      ++visited;
      const MachineView& m = machines.at(index);
      bool ok = true;
      for (ActiveFilter& f : filters) {
        if (uint32_t why = f.filter->Check(m); why != 0) {
          f.Reject(why);
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      ++feasible;
      double score = strategy->Score(m);
      if (best < 0 || score > best_score) {
        best = index;
        best_score = score;
      }
    }
    result.machines_visited += static_cast<int64_t>(visited);
    if (best < 0) {
      // Every candidate was visited and none fits; nothing changes for the instances left.
      Explanation& e = result.failure;
      e.machines = static_cast<int>(machines.size());
      e.feasible = 0;
      if (narrowing != nullptr && machines.size() > n) {
        narrowing->Reject(narrowing_reason, static_cast<int>(machines.size() - n));
      }
      for (const ActiveFilter& f : filters) {
        if (f.rejected.empty()) continue;
        // Reasons are spelled out only now: a placement that succeeds never builds them.
        std::vector<Reason> reasons = f.filter->Reasons();
        for (size_t r = 0; r < f.rejected.size(); ++r) {
          int count = f.rejected[r];
          if (count == 0) continue;
          std::string text = "rejected by " + *f.name;
          if (r < reasons.size()) {
            text =
                count != 1 && !reasons[r].plural.empty() ? reasons[r].plural : reasons[r].singular;
          }
          e.rejections.push_back({*f.name, std::move(text), count});
        }
      }
      std::stable_sort(
          e.rejections.begin(), e.rejections.end(),
          [](const Rejection& a, const Rejection& b) { return a.machines > b.machines; });
      result.unplaced = request.count - instance;
      break;
    }
    auto chosen = static_cast<size_t>(best);
    machines.AddAllocation(chosen, job, group, request.cpu, request.memory_bytes, request.ports);
    const MachineView& m = machines.at(chosen);
    strategy->Placed(m);
    result.placed.push_back({m.id, chosen, best_score});
  }
  return result;
}

Result<PlacementResult> Place(const PlacementRequest& request, MachineSet& machines) {
  Scheduler scheduler;
  return scheduler.Place(request, machines);
}

}  // namespace berth::scheduler
