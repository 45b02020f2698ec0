// The scheduler's extension points: Filter (may this instance go on that machine?) and Strategy
// (how good a home is that machine?), and the Registry that names them.
//
// For each PlacementRequest the scheduler asks every registered filter factory, in registry
// order, for a Filter compiled for that request (or nullptr when the request does not need it:
// no ports, no constraints, ...), and the strategy factory named by request.strategy for a
// Strategy. Then, per instance, it walks the machines, runs the filters in order on each (the
// first that says no is charged with the rejection), scores the feasible machines with the
// strategy, and places the instance on the best one. Factories do the expensive work (regular
// expressions, name lookups) once; Check and Score run per machine and should neither allocate
// nor lock. docs/scheduler.md shows how to add one.
// Thread-safety: a Registry is immutable once built and may be shared; filters and strategies
// belong to one Place call on one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "scheduler/machine_set.h"
#include "scheduler/request.h"
#include "scheduler/version_constraint.h"

namespace berth::scheduler {

// SplitMix64: a tiny, fast, seedable generator (std::mt19937 costs more to seed than a
// placement takes).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  uint64_t state_;
};

// Compiled regular expressions and version constraints, kept across the Place calls of one
// Scheduler (compiling a std::regex costs tens of microseconds).
class CompileCache {
 public:
  Result<const std::regex*> Regex(const std::string& pattern);
  Result<const VersionConstraint*> Version(const std::string& text);

 private:
  static constexpr size_t kMaxEntries = 512;  // then start over
  std::unordered_map<std::string, std::unique_ptr<std::regex>> regexes_;
  std::unordered_map<std::string, std::unique_ptr<VersionConstraint>> versions_;
};

// What a factory sees when it compiles a filter or strategy for one request.
struct PlacementContext {
  const PlacementRequest& request;
  const MachineSet& machines;
  KeyId job;    // the request's job, interned
  KeyId group;  // the request's job + group, interned
  Rng& rng;
  CompileCache& cache;
};

// Why a filter turned machines down, for explanations: "lacked memory" ("2 lacked memory"),
// or with a plural form "is ineligible" / "are ineligible".
struct Reason {
  Reason(std::string singular_form, std::string plural_form = {})  // NOLINT: implicit on purpose
      : singular(std::move(singular_form)), plural(std::move(plural_form)) {}
  std::string singular;
  std::string plural;  // empty: same as singular
};

class Filter {
 public:
  virtual ~Filter() = default;
  // The reasons Check can give; Check returns 0 for "feasible", or i + 1 for reasons()[i].
  // Called only to explain a failure, so it may allocate freely.
  virtual std::vector<Reason> Reasons() const = 0;
  virtual uint32_t Check(const MachineView& machine) = 0;
  // A filter that knows the only machines that can pass (pin: one machine; affinity: the
  // machines running a job) returns them, and the scheduler visits only those; the rest
  // count as rejected by this filter with `reason`. nullopt: any machine may pass.
  struct CandidateList {
    std::span<const uint32_t> machines;  // indices into the MachineSet
    uint32_t reason = 1;                 // as Check returns it
  };
  virtual std::optional<CandidateList> Candidates() const { return std::nullopt; }
};
using FilterPtr = std::unique_ptr<Filter>;

class Strategy {
 public:
  virtual ~Strategy() = default;
  // Higher is better; called only for machines that passed every filter, before the
  // instance's usage is added.
  virtual double Score(const MachineView& machine) = 0;
  // An instance was placed on `machine` (its usage already includes it).
  virtual void Placed(const MachineView& machine) { (void)machine; }
  // Feasible machines to score per instance: 0 leaves it to the request or the default.
  virtual int CandidateLimit() const { return 0; }
};
using StrategyPtr = std::unique_ptr<Strategy>;

// A factory returns nullptr when its filter has nothing to check for this request, or an
// error when the request is malformed (a bad regular expression, say).
using FilterFactory = std::function<Result<FilterPtr>(const PlacementContext&)>;
using StrategyFactory = std::function<Result<StrategyPtr>(const PlacementContext&)>;

class Registry {
 public:
  // The built-in filters, in order: eligibility, pin, affinity, resources, ports,
  // distinct_hosts, anti_affinity, constraints; strategies binpack, spread, random.
  static Registry Builtin();

  // Adds a filter after the others, or replaces the factory of a filter of that name in place.
  void AddFilter(std::string name, FilterFactory factory);
  bool RemoveFilter(std::string_view name);
  // Adds or replaces a strategy.
  void AddStrategy(std::string name, StrategyFactory factory);

  struct NamedFilter {
    std::string name;
    FilterFactory factory;
  };
  const std::vector<NamedFilter>& filters() const { return filters_; }
  const StrategyFactory* FindStrategy(std::string_view name) const;
  std::vector<std::string> StrategyNames() const;

 private:
  std::vector<NamedFilter> filters_;
  std::vector<std::pair<std::string, StrategyFactory>> strategies_;
};

// The built-ins, for registries assembled by hand.
Result<FilterPtr> MakeEligibilityFilter(const PlacementContext& ctx);
Result<FilterPtr> MakePinFilter(const PlacementContext& ctx);
Result<FilterPtr> MakeAffinityFilter(const PlacementContext& ctx);
Result<FilterPtr> MakeResourcesFilter(const PlacementContext& ctx);
Result<FilterPtr> MakePortsFilter(const PlacementContext& ctx);
Result<FilterPtr> MakeDistinctHostsFilter(const PlacementContext& ctx);
Result<FilterPtr> MakeAntiAffinityFilter(const PlacementContext& ctx);
Result<FilterPtr> MakeConstraintsFilter(const PlacementContext& ctx);
Result<StrategyPtr> MakeBinpackStrategy(const PlacementContext& ctx);
Result<StrategyPtr> MakeSpreadStrategy(const PlacementContext& ctx);
Result<StrategyPtr> MakeRandomStrategy(const PlacementContext& ctx);

// Binpack's measure of a machine with one more instance of the request on it: the mean of
// its cpu and memory utilisation, in [0, 1] while it fits.
double UtilizationAfter(const MachineView& machine, const PlacementRequest& request);

// Whether `name` matches a pattern in which '*' stands for any run of characters.
bool GlobMatch(std::string_view pattern, std::string_view name);

}  // namespace berth::scheduler
