// MachineView and MachineSet: what the scheduler knows about the machines it places on.
//
// A MachineView is one machine as the scheduler sees it: its id, a flat map of attributes
// ("machine.id", "hostname", "os.name", "kernel.version", "cpus", "memory", "meta.<key>", ...),
// whether it takes new work, its total and used cpu/memory, the host ports in use and how many
// allocations of each job (and of each job's group) it runs. FromMachineRecord() builds one from
// the machine record an agent writes under machines/<id> (see agent/machine_registry.h).
//
// A MachineSet owns the views of one scheduling pass. It interns attribute names, attribute
// values and job/group names into small integers and keeps each attribute as a column of value
// ids by machine, so filters compare integers, not strings, on the hot path; it indexes which
// machines run each job (affinity, spread) and, on demand, which machines have each value of an
// attribute (== constraints). Usage changes go through the set (AddAllocation /
// RemoveAllocation) so the indexes stay right; the set never talks to the store: the engine
// fills it from the store and writes placements back. Machines are added, never removed: build
// a fresh set for each pass (10,000 machines from JSON records take about 60 ms).
// Thread-safety: none, not even for concurrent readers (MachinesWith fills a cache); one set
// belongs to one thread. The scheduler takes no lock.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace berth::scheduler {

using AttrId = uint32_t;  // an interned attribute name
using KeyId = uint32_t;   // an interned job name, or job + group
inline constexpr uint32_t kNoId = std::numeric_limits<uint32_t>::max();

struct Attribute {
  std::string name;
  std::string value;
  bool operator==(const Attribute&) const = default;
};

struct MachineView {
  // The fields every visit reads come first, so they share a cache line.
  bool eligible = true;   // false: drained or marked ineligible; takes no new work
  int allocs = 0;         // allocations on the machine, all jobs
  uint32_t index = 0;     // position in its MachineSet (set by Add)
  int64_t cpu_total = 0;  // 1000 per core
  int64_t memory_total = 0;
  int64_t cpu_used = 0;
  int64_t memory_used = 0;
  std::vector<int> used_ports;                    // host ports taken (kept sorted by the set)
  std::vector<std::pair<KeyId, int>> key_counts;  // job or job+group -> allocations here
                                                  // (filled by MachineSet)
  std::string id;
  // Name -> value, as given (FromMachineRecord sorts by name). Set before MachineSet::Add; the
  // set does not look at later changes.
  std::vector<Attribute> attributes;

  // Filled by MachineSet (read-only for everyone else). Filters on the hot path read the set's
  // attribute columns instead (MachineSet::Column), which avoid these two indirections.
  std::vector<AttrId> attr_ids;  // sorted; attr_values[i] is the value of attr_ids[i]
  std::vector<std::string> attr_values;

  int64_t cpu_free() const { return cpu_total - cpu_used; }
  int64_t memory_free() const { return memory_total - memory_used; }
  // The value of an interned attribute, or nullptr when the machine does not have it.
  const std::string* Attr(AttrId attr) const;
  // The value of an attribute by name (slow path: for tests and explanations).
  const std::string* AttrByName(std::string_view name) const;
  // Allocations of a job (or job+group) key on this machine.
  int CountOf(KeyId key) const;
  bool PortUsed(int port) const;

  // Builds a view from a machine record (the JSON of MachineRegistry::Record()): attributes
  // machine.id, hostname, address, os (the whole string), os.name ("Linux"), kernel.version
  // ("6.1.0-18-amd64"), cpus, memory (bytes), berth.version and meta.<key>; eligible unless
  // "eligible" is false or "drain"/"drained" is true; resources.cpu, resources.memory_bytes and
  // resources.used.{cpu,memory_bytes,allocs,ports}. Errors name the field.
  static Result<MachineView> FromMachineRecord(const nlohmann::json& record);
};

class MachineSet {
 public:
  MachineSet() = default;
  MachineSet(const MachineSet&) = delete;
  MachineSet& operator=(const MachineSet&) = delete;
  MachineSet(MachineSet&&) = default;
  MachineSet& operator=(MachineSet&&) = default;

  // Adds a machine (interning its attributes) and returns its index; an id already present is
  // an error.
  Result<size_t> Add(MachineView machine);
  size_t size() const { return machines_.size(); }
  const MachineView& at(size_t i) const { return machines_[i]; }
  const std::vector<MachineView>& machines() const { return machines_; }
  // The index of a machine, or nullopt.
  std::optional<size_t> Find(std::string_view id) const;
  void SetEligible(size_t machine, bool eligible) { machines_[machine].eligible = eligible; }

  // Records an allocation of job/group on a machine: its resources, host ports and counts.
  void AddAllocation(size_t machine, std::string_view job, std::string_view group, int64_t cpu,
                     int64_t memory_bytes, std::span<const int> ports = {});
  void AddAllocation(size_t machine, KeyId job, KeyId group, int64_t cpu, int64_t memory_bytes,
                     std::span<const int> ports);
  // Undoes AddAllocation (e.g. an allocation stopped); counts never go below zero.
  void RemoveAllocation(size_t machine, std::string_view job, std::string_view group, int64_t cpu,
                        int64_t memory_bytes, std::span<const int> ports = {});

  // Interning. The lookups return kNoId for a name no machine (or allocation) has used.
  AttrId AttributeId(std::string_view name) const;
  KeyId JobKey(std::string_view job) const;
  KeyId GroupKey(std::string_view job, std::string_view group) const;
  KeyId InternJob(std::string_view job);
  KeyId InternGroup(std::string_view job, std::string_view group);
  // Every job name the set has seen (for glob patterns in conflicts).
  const std::vector<std::string>& job_names() const { return job_names_; }
  // Indices of the machines running at least one allocation of a job (or group) key.
  std::span<const uint32_t> MachinesRunning(KeyId key) const;
  // Attribute columns: each attribute's values are interned per attribute, and Column(attr)
  // holds, per machine index, the id of that machine's value (kNoId: not set). A filter
  // compares value ids and remembers verdicts per value id, with no string work per machine.
  std::span<const uint32_t> Column(AttrId attr) const;
  uint32_t ValueId(AttrId attr, std::string_view value) const;  // kNoId: no machine has it
  const std::string& ValueString(AttrId attr, uint32_t value) const;
  const std::vector<std::string>& ValueStrings(AttrId attr) const;  // by value id
  size_t ValueCount(AttrId attr) const;  // distinct values of an attribute
  // Indices of the machines whose attribute `attr` equals `value`, ascending. The index of an
  // attribute is built on first use (one pass over the machines) and dropped by Add.
  std::span<const uint32_t> MachinesWith(AttrId attr, std::string_view value) const;

  // A shuffled visiting order over all machines (fixed per set size), so that scans starting
  // at different offsets see unrelated machines, as Nomad shuffles its node list.
  std::span<const uint32_t> order();

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Interner = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;
  static std::string GroupString(std::string_view job, std::string_view group);
  void Bump(size_t machine, KeyId key, int delta);

  std::vector<MachineView> machines_;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> by_id_;
  Interner attr_names_;
  Interner keys_;
  std::vector<std::string> job_names_;
  std::vector<std::vector<uint32_t>> running_;  // KeyId -> machine indices
  std::vector<uint32_t> order_;
  struct AttributeValues {
    Interner ids;
    std::vector<std::string> strings;
    std::vector<uint32_t> column;  // machine index -> value id
  };
  std::vector<AttributeValues> attr_values_;  // by AttrId
  using ValueIndex =
      std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>>;
  mutable std::unordered_map<AttrId, ValueIndex> value_index_;  // a cache (see MachinesWith)
};

}  // namespace berth::scheduler
