// The built-in filters and strategies, the registry and the compile cache.
//
// GCC 12 with -fsanitize=address,undefined reports a false -Wmaybe-uninitialized inside
// libstdc++'s <regex> compiler (std::function in _State); it is not in our code, so it is
// silenced for this file, the only one that compiles regular expressions.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <string>
#include <utility>

#include "scheduler/plugin.h"

namespace berth::scheduler {

Result<const std::regex*> CompileCache::Regex(const std::string& pattern) {
  if (auto it = regexes_.find(pattern); it != regexes_.end()) return it->second.get();
  if (regexes_.size() >= kMaxEntries) regexes_.clear();
  try {
    auto re = std::make_unique<std::regex>(pattern, std::regex::ECMAScript | std::regex::optimize);
    const std::regex* p = re.get();
    regexes_.emplace(pattern, std::move(re));
    return p;
  } catch (const std::regex_error& e) {
    return InvalidArgument("regexp \"" + pattern + "\": " + e.what());
  }
}

Result<const VersionConstraint*> CompileCache::Version(const std::string& text) {
  if (auto it = versions_.find(text); it != versions_.end()) return it->second.get();
  if (versions_.size() >= kMaxEntries) versions_.clear();
  BERTH_ASSIGN_OR_RETURN(VersionConstraint vc, VersionConstraint::Parse(text));
  auto p = std::make_unique<VersionConstraint>(std::move(vc));
  const VersionConstraint* raw = p.get();
  versions_.emplace(text, std::move(p));
  return raw;
}

bool GlobMatch(std::string_view pattern, std::string_view name) {
  // Iterative wildcard match with one backtrack point (enough for '*' only).
  size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

double UtilizationAfter(const MachineView& m, const PlacementRequest& r) {
  auto ratio = [](int64_t used, int64_t total) {
    if (total <= 0) return used > 0 ? 1.0 : 0.0;
    return static_cast<double>(used) / static_cast<double>(total);
  };
  return (ratio(m.cpu_used + r.cpu, m.cpu_total) +
          ratio(m.memory_used + r.memory_bytes, m.memory_total)) /
         2;
}

namespace {

// ---- filters ----

class EligibilityFilter final : public Filter {
 public:
  std::vector<Reason> Reasons() const override { return {{"is ineligible", "are ineligible"}}; }
  uint32_t Check(const MachineView& m) override { return m.eligible ? 0 : 1; }
};

class PinFilter final : public Filter {
 public:
  PinFilter(std::string machine, std::optional<size_t> index) : machine_(std::move(machine)) {
    if (index) only_.push_back(static_cast<uint32_t>(*index));
  }
  std::vector<Reason> Reasons() const override {
    return {{"is not the pinned machine " + machine_, "are not the pinned machine " + machine_}};
  }
  uint32_t Check(const MachineView& m) override { return m.id == machine_ ? 0 : 1; }
  std::optional<CandidateList> Candidates() const override { return CandidateList{only_, 1}; }

 private:
  std::string machine_;
  std::vector<uint32_t> only_;
};

class AffinityFilter final : public Filter {
 public:
  std::vector<Reason> Reasons() const override {
    std::vector<Reason> out;
    for (const std::string& job : jobs_) {
      out.push_back({"does not run job " + job, "do not run job " + job});
    }
    return out;
  }
  uint32_t Check(const MachineView& m) override {
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i] == kNoId || m.CountOf(keys_[i]) == 0) return static_cast<uint32_t>(i + 1);
    }
    return 0;
  }
  std::optional<CandidateList> Candidates() const override {
    return CandidateList{candidates_, candidates_reason_};
  }

  std::vector<std::string> jobs_;
  std::vector<KeyId> keys_;
  std::vector<uint32_t> candidates_;  // the machines running the rarest of the jobs
  uint32_t candidates_reason_ = 1;    // that job's reason
};

class ResourcesFilter final : public Filter {
 public:
  ResourcesFilter(int64_t cpu, int64_t memory) : cpu_(cpu), memory_(memory) {}
  std::vector<Reason> Reasons() const override { return {{"lacked cpu"}, {"lacked memory"}}; }
  uint32_t Check(const MachineView& m) override {
    if (m.cpu_used + cpu_ > m.cpu_total) return 1;
    if (m.memory_used + memory_ > m.memory_total) return 2;
    return 0;
  }

 private:
  int64_t cpu_;
  int64_t memory_;
};

class PortsFilter final : public Filter {
 public:
  explicit PortsFilter(std::vector<int> ports) : ports_(std::move(ports)) {}
  std::vector<Reason> Reasons() const override {
    std::vector<Reason> out;
    for (int p : ports_) out.push_back({"had port " + std::to_string(p) + " in use"});
    return out;
  }
  uint32_t Check(const MachineView& m) override {
    if (m.used_ports.empty()) return 0;
    for (size_t i = 0; i < ports_.size(); ++i) {
      if (m.PortUsed(ports_[i])) return static_cast<uint32_t>(i + 1);
    }
    return 0;
  }

 private:
  std::vector<int> ports_;
};

class DistinctHostsFilter final : public Filter {
 public:
  DistinctHostsFilter(KeyId group, std::string label) : group_(group), label_(std::move(label)) {}
  std::vector<Reason> Reasons() const override {
    return {{"already runs an instance of " + label_, "already run an instance of " + label_}};
  }
  uint32_t Check(const MachineView& m) override { return m.CountOf(group_) > 0 ? 1 : 0; }

 private:
  KeyId group_;
  std::string label_;
};

class AntiAffinityFilter final : public Filter {
 public:
  std::vector<Reason> Reasons() const override {
    std::vector<Reason> out;
    for (const std::string& p : patterns_) {
      out.push_back({"runs conflicting job " + p, "run conflicting job " + p});
    }
    return out;
  }
  uint32_t Check(const MachineView& m) override {
    // Machines run few jobs: look each of them up among the conflicting keys.
    for (const auto& [key, n] : m.key_counts) {
      auto it = std::lower_bound(keys_.begin(), keys_.end(), std::make_pair(key, uint32_t{0}));
      if (it != keys_.end() && it->first == key && n > 0) return it->second;
    }
    return 0;
  }

  std::vector<std::string> patterns_;
  std::vector<std::pair<KeyId, uint32_t>> keys_;  // sorted: job key -> reason (pattern index + 1)
};

class ConstraintsFilter final : public Filter {
 public:
  struct Compiled {
    spec::Constraint source;
    const uint32_t* column = nullptr;  // the attribute's column; nullptr: no machine has it
    uint32_t want = kNoId;             // ==, !=: the value's id (kNoId: no machine has it)
    const std::regex* regex = nullptr;
    const VersionConstraint* version = nullptr;
    std::vector<std::string> items;  // set_contains
    // Verdicts for the expensive operators by value id (-1: not computed yet): most clusters
    // have few distinct values per attribute, so each is evaluated once per request.
    std::vector<int8_t> memo;
    const std::vector<std::string>* strings = nullptr;  // value id -> value
  };

  std::vector<Reason> Reasons() const override {
    std::vector<Reason> out;
    for (const Compiled& c : constraints_) {
      std::string text =
          c.source.attribute + " " + std::string(spec::ConstraintOperatorName(c.source.op));
      if (!c.source.value.empty()) text += " " + c.source.value;
      out.push_back({"did not match " + text});
    }
    return out;
  }

  uint32_t Check(const MachineView& m) override {
    for (size_t i = 0; i < constraints_.size(); ++i) {
      if (!Holds(constraints_[i], m.index)) return static_cast<uint32_t>(i + 1);
    }
    return 0;
  }

  // An == constraint names its machines through the set's value index: a rack constraint
  // visits that rack's machines only, not the cluster.
  std::optional<CandidateList> Candidates() const override {
    if (!narrowed_) return std::nullopt;
    return CandidateList{candidates_, candidates_reason_};
  }

  static bool SetContains(std::string_view list, const std::vector<std::string>& items) {
    for (const std::string& item : items) {
      bool found = false;
      std::string_view rest = list;
      while (!found) {
        size_t comma = rest.find(',');
        std::string_view part = rest.substr(0, comma);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
        found = part == item;
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
      }
      if (!found) return false;
    }
    return true;
  }

  std::vector<Compiled> constraints_;
  bool narrowed_ = false;
  std::span<const uint32_t> candidates_;
  uint32_t candidates_reason_ = 1;

 private:
  static bool Evaluate(const Compiled& c, const std::string& v) {
    switch (c.source.op) {
      case spec::ConstraintOperator::kRegexp:
        return std::regex_search(v, *c.regex);
      case spec::ConstraintOperator::kVersion:
        return c.version->Matches(v);
      case spec::ConstraintOperator::kSetContains:
        return SetContains(v, c.items);
      default:
        return false;
    }
  }

  static bool Holds(Compiled& c, uint32_t machine) {
    uint32_t v = c.column == nullptr ? kNoId : c.column[machine];
    switch (c.source.op) {
      case spec::ConstraintOperator::kEqual:
        return v != kNoId && v == c.want;
      case spec::ConstraintOperator::kNotEqual:
        return v == kNoId || v != c.want;
      case spec::ConstraintOperator::kIsSet:
        return v != kNoId;
      case spec::ConstraintOperator::kIsNotSet:
        return v == kNoId;
      case spec::ConstraintOperator::kDistinctHosts:
        return true;  // handled by the distinct_hosts filter
      case spec::ConstraintOperator::kRegexp:
      case spec::ConstraintOperator::kVersion:
      case spec::ConstraintOperator::kSetContains:
        break;
    }
    if (v == kNoId) return false;
    int8_t& verdict = c.memo[v];
    if (verdict < 0) verdict = Evaluate(c, (*c.strings)[v]) ? 1 : 0;
    return verdict == 1;
  }
};

// ---- strategies ----

class BinpackStrategy final : public Strategy {
 public:
  explicit BinpackStrategy(const PlacementRequest& r) : request_(r) {}
  double Score(const MachineView& m) override { return UtilizationAfter(m, request_); }

 private:
  const PlacementRequest& request_;
};

// Prefers the attribute value holding the fewest instances of the job; among machines with
// equally loaded values, the emptier machine. Counts are kept per value id (the last slot for
// machines without the attribute).
class SpreadStrategy final : public Strategy {
 public:
  SpreadStrategy(const PlacementContext& ctx, AttrId attr)
      : request_(ctx.request),
        column_(ctx.machines.Column(attr)),
        counts_(ctx.machines.ValueCount(attr) + 1, 0) {
    for (uint32_t i : ctx.machines.MachinesRunning(ctx.job)) {
      counts_[Slot(i)] += ctx.machines.at(i).CountOf(ctx.job);
    }
  }
  double Score(const MachineView& m) override {
    return -static_cast<double>(counts_[Slot(m.index)]) - 0.5 * UtilizationAfter(m, request_);
  }
  void Placed(const MachineView& m) override { counts_[Slot(m.index)]++; }

 private:
  size_t Slot(uint32_t machine) const {
    uint32_t v = machine < column_.size() ? column_[machine] : kNoId;
    return v == kNoId ? counts_.size() - 1 : v;
  }
  const PlacementRequest& request_;
  std::span<const uint32_t> column_;
  std::vector<int> counts_;
};

// Spread over machines: the machine itself knows how many instances of the job it runs.
class SpreadMachinesStrategy final : public Strategy {
 public:
  SpreadMachinesStrategy(const PlacementRequest& r, KeyId job) : request_(r), job_(job) {}
  double Score(const MachineView& m) override {
    return -static_cast<double>(m.CountOf(job_)) - 0.5 * UtilizationAfter(m, request_);
  }

 private:
  const PlacementRequest& request_;
  KeyId job_;
};

class RandomStrategy final : public Strategy {
 public:
  explicit RandomStrategy(Rng& rng) : rng_(rng) {}
  double Score(const MachineView&) override { return rng_.NextDouble(); }

 private:
  Rng& rng_;
};

}  // namespace

Result<FilterPtr> MakeEligibilityFilter(const PlacementContext&) {
  return FilterPtr(std::make_unique<EligibilityFilter>());
}

Result<FilterPtr> MakePinFilter(const PlacementContext& ctx) {
  if (ctx.request.pin_machine.empty()) return FilterPtr();
  return FilterPtr(std::make_unique<PinFilter>(ctx.request.pin_machine,
                                               ctx.machines.Find(ctx.request.pin_machine)));
}

Result<FilterPtr> MakeAffinityFilter(const PlacementContext& ctx) {
  if (ctx.request.affinity_jobs.empty()) return FilterPtr();
  auto f = std::make_unique<AffinityFilter>();
  bool have_candidates = false;
  for (const std::string& job : ctx.request.affinity_jobs) {
    KeyId key = ctx.machines.JobKey(job);
    f->jobs_.push_back(job);
    f->keys_.push_back(key);
    std::span<const uint32_t> running = ctx.machines.MachinesRunning(key);
    if (key == kNoId) running = {};
    if (!have_candidates || running.size() < f->candidates_.size()) {
      f->candidates_.assign(running.begin(), running.end());
      f->candidates_reason_ = static_cast<uint32_t>(f->jobs_.size());
      have_candidates = true;
    }
  }
  return FilterPtr(std::move(f));
}

Result<FilterPtr> MakeResourcesFilter(const PlacementContext& ctx) {
  return FilterPtr(std::make_unique<ResourcesFilter>(ctx.request.cpu, ctx.request.memory_bytes));
}

Result<FilterPtr> MakePortsFilter(const PlacementContext& ctx) {
  if (ctx.request.ports.empty()) return FilterPtr();
  return FilterPtr(std::make_unique<PortsFilter>(ctx.request.ports));
}

Result<FilterPtr> MakeDistinctHostsFilter(const PlacementContext& ctx) {
  bool wanted = ctx.request.distinct_hosts;
  for (const spec::Constraint& c : ctx.request.constraints) {
    wanted = wanted || c.op == spec::ConstraintOperator::kDistinctHosts;
  }
  if (!wanted) return FilterPtr();
  return FilterPtr(
      std::make_unique<DistinctHostsFilter>(ctx.group, ctx.request.job + "/" + ctx.request.group));
}

Result<FilterPtr> MakeAntiAffinityFilter(const PlacementContext& ctx) {
  if (ctx.request.conflict_jobs.empty()) return FilterPtr();
  auto f = std::make_unique<AntiAffinityFilter>();
  for (const std::string& pattern : ctx.request.conflict_jobs) {
    f->patterns_.push_back(pattern);
    auto reason = static_cast<uint32_t>(f->patterns_.size());
    if (pattern.find('*') == std::string::npos) {
      if (KeyId key = ctx.machines.JobKey(pattern); key != kNoId)
        f->keys_.emplace_back(key, reason);
      continue;
    }
    for (const std::string& job : ctx.machines.job_names()) {
      if (GlobMatch(pattern, job)) f->keys_.emplace_back(ctx.machines.JobKey(job), reason);
    }
  }
  // One reason per key: the first pattern that names it.
  std::stable_sort(f->keys_.begin(), f->keys_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  f->keys_.erase(std::unique(f->keys_.begin(), f->keys_.end(),
                             [](const auto& a, const auto& b) { return a.first == b.first; }),
                 f->keys_.end());
  return FilterPtr(std::move(f));
}

Result<FilterPtr> MakeConstraintsFilter(const PlacementContext& ctx) {
  auto f = std::make_unique<ConstraintsFilter>();
  for (const spec::Constraint& c : ctx.request.constraints) {
    if (c.op == spec::ConstraintOperator::kDistinctHosts) continue;
    ConstraintsFilter::Compiled compiled;
    compiled.source = c;
    AttrId attr = ctx.machines.AttributeId(c.attribute);
    std::span<const uint32_t> column = ctx.machines.Column(attr);
    if (!column.empty()) {
      compiled.column = column.data();
      compiled.want = ctx.machines.ValueId(attr, c.value);
      compiled.memo.assign(ctx.machines.ValueCount(attr), -1);
      compiled.strings = &ctx.machines.ValueStrings(attr);
    }
    switch (c.op) {
      case spec::ConstraintOperator::kRegexp: {
        BERTH_ASSIGN_OR_RETURN(compiled.regex, ctx.cache.Regex(c.value));
        break;
      }
      case spec::ConstraintOperator::kVersion: {
        BERTH_ASSIGN_OR_RETURN(compiled.version, ctx.cache.Version(c.value));
        break;
      }
      case spec::ConstraintOperator::kSetContains: {
        std::string_view rest = c.value;
        while (true) {
          size_t comma = rest.find(',');
          std::string_view part = rest.substr(0, comma);
          while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
          while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
          if (!part.empty()) compiled.items.emplace_back(part);
          if (comma == std::string_view::npos) break;
          rest = rest.substr(comma + 1);
        }
        break;
      }
      default:
        break;
    }
    if (c.op == spec::ConstraintOperator::kEqual) {
      std::span<const uint32_t> with =
          attr == kNoId ? std::span<const uint32_t>() : ctx.machines.MachinesWith(attr, c.value);
      if (!f->narrowed_ || with.size() < f->candidates_.size()) {
        f->narrowed_ = true;
        f->candidates_ = with;
        f->candidates_reason_ = static_cast<uint32_t>(f->constraints_.size() + 1);
      }
    }
    f->constraints_.push_back(std::move(compiled));
  }
  if (f->constraints_.empty()) return FilterPtr();
  return FilterPtr(std::move(f));
}

Result<StrategyPtr> MakeBinpackStrategy(const PlacementContext& ctx) {
  return StrategyPtr(std::make_unique<BinpackStrategy>(ctx.request));
}

Result<StrategyPtr> MakeSpreadStrategy(const PlacementContext& ctx) {
  const std::string& attribute = ctx.request.spread_attribute;
  if (attribute.empty() || attribute == "machine.id") {
    return StrategyPtr(std::make_unique<SpreadMachinesStrategy>(ctx.request, ctx.job));
  }
  return StrategyPtr(std::make_unique<SpreadStrategy>(ctx, ctx.machines.AttributeId(attribute)));
}

Result<StrategyPtr> MakeRandomStrategy(const PlacementContext& ctx) {
  return StrategyPtr(std::make_unique<RandomStrategy>(ctx.rng));
}

Registry Registry::Builtin() {
  Registry r;
  r.AddFilter("eligibility", &MakeEligibilityFilter);
  r.AddFilter("pin", &MakePinFilter);
  r.AddFilter("affinity", &MakeAffinityFilter);
  r.AddFilter("resources", &MakeResourcesFilter);
  r.AddFilter("ports", &MakePortsFilter);
  r.AddFilter("distinct_hosts", &MakeDistinctHostsFilter);
  r.AddFilter("anti_affinity", &MakeAntiAffinityFilter);
  r.AddFilter("constraints", &MakeConstraintsFilter);
  r.AddStrategy("binpack", &MakeBinpackStrategy);
  r.AddStrategy("spread", &MakeSpreadStrategy);
  r.AddStrategy("random", &MakeRandomStrategy);
  return r;
}

void Registry::AddFilter(std::string name, FilterFactory factory) {
  for (NamedFilter& f : filters_) {
    if (f.name == name) {
      f.factory = std::move(factory);
      return;
    }
  }
  filters_.push_back({std::move(name), std::move(factory)});
}

bool Registry::RemoveFilter(std::string_view name) {
  auto it = std::find_if(filters_.begin(), filters_.end(),
                         [&](const NamedFilter& f) { return f.name == name; });
  if (it == filters_.end()) return false;
  filters_.erase(it);
  return true;
}

void Registry::AddStrategy(std::string name, StrategyFactory factory) {
  for (auto& [n, f] : strategies_) {
    if (n == name) {
      f = std::move(factory);
      return;
    }
  }
  strategies_.emplace_back(std::move(name), std::move(factory));
}

const StrategyFactory* Registry::FindStrategy(std::string_view name) const {
  for (const auto& [n, f] : strategies_) {
    if (n == name) return &f;
  }
  return nullptr;
}

std::vector<std::string> Registry::StrategyNames() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : strategies_) out.push_back(n);
  return out;
}

}  // namespace berth::scheduler
