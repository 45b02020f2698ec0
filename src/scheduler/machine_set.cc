#include "scheduler/machine_set.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace berth::scheduler {

const std::string* MachineView::Attr(AttrId attr) const {
  auto it = std::lower_bound(attr_ids.begin(), attr_ids.end(), attr);
  if (it == attr_ids.end() || *it != attr) return nullptr;
  return &attr_values[static_cast<size_t>(it - attr_ids.begin())];
}

const std::string* MachineView::AttrByName(std::string_view name) const {
  for (const Attribute& a : attributes) {
    if (a.name == name) return &a.value;
  }
  return nullptr;
}

int MachineView::CountOf(KeyId key) const {
  for (const auto& [k, n] : key_counts) {
    if (k == key) return n;
  }
  return 0;
}

bool MachineView::PortUsed(int port) const {
  return std::binary_search(used_ports.begin(), used_ports.end(), port);
}

namespace {

Status FieldError(std::string_view field, std::string_view what) {
  return InvalidArgument("machine record: " + std::string(field) + ": " + std::string(what));
}

Result<int64_t> Int(const nlohmann::json& j, std::string_view field) {
  if (!j.is_number_integer()) return FieldError(field, "expected an integer");
  return j.get<int64_t>();
}

// The value of j[key] as an integer, 0 when absent.
Result<int64_t> OptionalInt(const nlohmann::json& obj, const char* key, std::string_view field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return int64_t{0};
  return Int(*it, field);
}

}  // namespace

Result<MachineView> MachineView::FromMachineRecord(const nlohmann::json& record) {
  if (!record.is_object()) return InvalidArgument("machine record: expected an object");
  MachineView m;
  auto id = record.find("id");
  if (id == record.end() || !id->is_string() || id->get<std::string>().empty()) {
    return FieldError("id", "expected a non-empty string");
  }
  m.id = id->get<std::string>();
  std::vector<Attribute> attrs;
  attrs.push_back({"machine.id", m.id});
  auto add_string = [&](const char* key, const char* name) -> Status {
    auto it = record.find(key);
    if (it == record.end() || it->is_null()) return Status::Ok();
    if (!it->is_string()) return FieldError(key, "expected a string");
    attrs.push_back({name, it->get<std::string>()});
    return Status::Ok();
  };
  BERTH_RETURN_IF_ERROR(add_string("hostname", "hostname"));
  BERTH_RETURN_IF_ERROR(add_string("address", "address"));
  BERTH_RETURN_IF_ERROR(add_string("version", "berth.version"));
  BERTH_RETURN_IF_ERROR(add_string("os", "os"));
  if (auto it = record.find("os"); it != record.end() && it->is_string()) {
    // "Linux 6.1.0-18-amd64" (uname's sysname and release).
    const std::string& os = it->get_ref<const std::string&>();
    size_t space = os.find(' ');
    attrs.push_back({"os.name", os.substr(0, space)});
    if (space != std::string::npos && space + 1 < os.size()) {
      attrs.push_back({"kernel.version", os.substr(space + 1)});
    }
  }
  BERTH_ASSIGN_OR_RETURN(int64_t cpus, OptionalInt(record, "cpus", "cpus"));
  BERTH_ASSIGN_OR_RETURN(int64_t memory, OptionalInt(record, "memory_bytes", "memory_bytes"));
  attrs.push_back({"cpus", std::to_string(cpus)});
  attrs.push_back({"memory", std::to_string(memory)});
  if (auto it = record.find("meta"); it != record.end() && !it->is_null()) {
    if (!it->is_object()) return FieldError("meta", "expected an object");
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) return FieldError("meta." + k, "expected a string");
      attrs.push_back({"meta." + k, v.get<std::string>()});
    }
  }
  if (auto it = record.find("eligible"); it != record.end() && !it->is_null()) {
    if (!it->is_boolean()) return FieldError("eligible", "expected a boolean");
    m.eligible = it->get<bool>();
  }
  for (const char* key : {"drain", "drained"}) {
    if (auto it = record.find(key); it != record.end() && !it->is_null()) {
      if (!it->is_boolean()) return FieldError(key, "expected a boolean");
      if (it->get<bool>()) m.eligible = false;
    }
  }
  m.cpu_total = cpus * 1000;
  m.memory_total = memory;
  if (auto res = record.find("resources"); res != record.end() && !res->is_null()) {
    if (!res->is_object()) return FieldError("resources", "expected an object");
    if (res->contains("cpu")) {
      BERTH_ASSIGN_OR_RETURN(m.cpu_total, Int((*res)["cpu"], "resources.cpu"));
    }
    if (res->contains("memory_bytes")) {
      BERTH_ASSIGN_OR_RETURN(m.memory_total, Int((*res)["memory_bytes"], "resources.memory_bytes"));
    }
    if (auto used = res->find("used"); used != res->end() && !used->is_null()) {
      if (!used->is_object()) return FieldError("resources.used", "expected an object");
      BERTH_ASSIGN_OR_RETURN(m.cpu_used, OptionalInt(*used, "cpu", "resources.used.cpu"));
      BERTH_ASSIGN_OR_RETURN(m.memory_used,
                             OptionalInt(*used, "memory_bytes", "resources.used.memory_bytes"));
      BERTH_ASSIGN_OR_RETURN(int64_t allocs, OptionalInt(*used, "allocs", "resources.used.allocs"));
      m.allocs = static_cast<int>(allocs);
      if (auto ports = used->find("ports"); ports != used->end() && !ports->is_null()) {
        if (!ports->is_array()) return FieldError("resources.used.ports", "expected an array");
        for (const auto& p : *ports) {
          BERTH_ASSIGN_OR_RETURN(int64_t port, Int(p, "resources.used.ports"));
          m.used_ports.push_back(static_cast<int>(port));
        }
      }
    }
  }
  if (m.cpu_total < 0 || m.memory_total < 0 || m.cpu_used < 0 || m.memory_used < 0) {
    return FieldError("resources", "negative amount");
  }
  std::sort(attrs.begin(), attrs.end(),
            [](const Attribute& a, const Attribute& b) { return a.name < b.name; });
  m.attributes = std::move(attrs);
  return m;
}

Result<size_t> MachineSet::Add(MachineView m) {
  if (by_id_.contains(m.id)) return AlreadyExists("machine " + m.id + " added twice");
  // Intern the attribute names; "machine.id" is always there.
  std::vector<std::pair<AttrId, std::string>> pairs;
  pairs.reserve(m.attributes.size() + 1);
  bool has_id = false;
  for (const Attribute& a : m.attributes) {
    auto [it, inserted] = attr_names_.try_emplace(a.name, static_cast<AttrId>(attr_names_.size()));
    pairs.emplace_back(it->second, a.value);
    has_id = has_id || a.name == "machine.id";
  }
  if (!has_id) {
    auto [it, inserted] =
        attr_names_.try_emplace("machine.id", static_cast<AttrId>(attr_names_.size()));
    pairs.emplace_back(it->second, m.id);
    m.attributes.push_back({"machine.id", m.id});
  }
  std::sort(pairs.begin(), pairs.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  m.attr_ids.clear();
  m.attr_values.clear();
  for (auto& [id, value] : pairs) {
    if (!m.attr_ids.empty() && m.attr_ids.back() == id) continue;  // duplicate name: first wins
    m.attr_ids.push_back(id);
    m.attr_values.push_back(std::move(value));
  }
  m.key_counts.clear();
  std::sort(m.used_ports.begin(), m.used_ports.end());
  size_t index = machines_.size();
  m.index = static_cast<uint32_t>(index);
  attr_values_.resize(attr_names_.size());
  for (AttributeValues& col : attr_values_) col.column.resize(index + 1, kNoId);
  for (size_t i = 0; i < m.attr_ids.size(); ++i) {
    AttributeValues& col = attr_values_[m.attr_ids[i]];
    auto [it, inserted] =
        col.ids.try_emplace(m.attr_values[i], static_cast<uint32_t>(col.strings.size()));
    if (inserted) col.strings.push_back(m.attr_values[i]);
    col.column.back() = it->second;
  }
  by_id_.emplace(m.id, index);
  value_index_.clear();
  machines_.push_back(std::move(m));
  return index;
}

std::span<const uint32_t> MachineSet::Column(AttrId attr) const {
  if (attr >= attr_values_.size()) return {};
  return attr_values_[attr].column;
}

uint32_t MachineSet::ValueId(AttrId attr, std::string_view value) const {
  if (attr >= attr_values_.size()) return kNoId;
  auto it = attr_values_[attr].ids.find(value);
  return it == attr_values_[attr].ids.end() ? kNoId : it->second;
}

const std::string& MachineSet::ValueString(AttrId attr, uint32_t value) const {
  return attr_values_[attr].strings[value];
}

const std::vector<std::string>& MachineSet::ValueStrings(AttrId attr) const {
  return attr_values_[attr].strings;
}

size_t MachineSet::ValueCount(AttrId attr) const {
  return attr >= attr_values_.size() ? 0 : attr_values_[attr].strings.size();
}

std::span<const uint32_t> MachineSet::MachinesWith(AttrId attr, std::string_view value) const {
  auto it = value_index_.find(attr);
  if (it == value_index_.end()) {
    ValueIndex index;
    for (size_t i = 0; i < machines_.size(); ++i) {
      if (const std::string* v = machines_[i].Attr(attr)) {
        index[*v].push_back(static_cast<uint32_t>(i));
      }
    }
    it = value_index_.emplace(attr, std::move(index)).first;
  }
  auto found = it->second.find(value);
  if (found == it->second.end()) return {};
  return found->second;
}

std::optional<size_t> MachineSet::Find(std::string_view id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

AttrId MachineSet::AttributeId(std::string_view name) const {
  auto it = attr_names_.find(name);
  return it == attr_names_.end() ? kNoId : it->second;
}

std::string MachineSet::GroupString(std::string_view job, std::string_view group) {
  std::string s;
  s.reserve(job.size() + group.size() + 1);
  s.append(job).push_back('\x1f');  // never in a job or group name
  s.append(group);
  return s;
}

KeyId MachineSet::JobKey(std::string_view job) const {
  auto it = keys_.find(job);
  return it == keys_.end() ? kNoId : it->second;
}

KeyId MachineSet::GroupKey(std::string_view job, std::string_view group) const {
  auto it = keys_.find(GroupString(job, group));
  return it == keys_.end() ? kNoId : it->second;
}

KeyId MachineSet::InternJob(std::string_view job) {
  auto it = keys_.find(job);
  if (it != keys_.end()) return it->second;
  auto id = static_cast<KeyId>(keys_.size());
  keys_.emplace(std::string(job), id);
  job_names_.emplace_back(job);
  running_.emplace_back();
  return id;
}

KeyId MachineSet::InternGroup(std::string_view job, std::string_view group) {
  auto [it, inserted] =
      keys_.try_emplace(GroupString(job, group), static_cast<KeyId>(keys_.size()));
  if (inserted) running_.emplace_back();
  return it->second;
}

std::span<const uint32_t> MachineSet::MachinesRunning(KeyId key) const {
  if (key >= running_.size()) return {};
  return running_[key];
}

void MachineSet::Bump(size_t machine, KeyId key, int delta) {
  auto& counts = machines_[machine].key_counts;
  for (auto it = counts.begin(); it != counts.end(); ++it) {
    if (it->first != key) continue;
    it->second += delta;
    if (it->second <= 0) {
      counts.erase(it);
      auto& running = running_[key];
      auto pos = std::find(running.begin(), running.end(), static_cast<uint32_t>(machine));
      if (pos != running.end()) {
        *pos = running.back();
        running.pop_back();
      }
    }
    return;
  }
  if (delta <= 0) return;
  counts.emplace_back(key, delta);
  running_[key].push_back(static_cast<uint32_t>(machine));
}

void MachineSet::AddAllocation(size_t machine, KeyId job, KeyId group, int64_t cpu,
                               int64_t memory_bytes, std::span<const int> ports) {
  MachineView& m = machines_[machine];
  m.cpu_used += cpu;
  m.memory_used += memory_bytes;
  m.allocs++;
  for (int p : ports)
    m.used_ports.insert(std::upper_bound(m.used_ports.begin(), m.used_ports.end(), p), p);
  Bump(machine, job, 1);
  Bump(machine, group, 1);
}

void MachineSet::AddAllocation(size_t machine, std::string_view job, std::string_view group,
                               int64_t cpu, int64_t memory_bytes, std::span<const int> ports) {
  KeyId j = InternJob(job);
  KeyId g = InternGroup(job, group);
  AddAllocation(machine, j, g, cpu, memory_bytes, ports);
}

void MachineSet::RemoveAllocation(size_t machine, std::string_view job, std::string_view group,
                                  int64_t cpu, int64_t memory_bytes, std::span<const int> ports) {
  MachineView& m = machines_[machine];
  m.cpu_used = std::max<int64_t>(0, m.cpu_used - cpu);
  m.memory_used = std::max<int64_t>(0, m.memory_used - memory_bytes);
  m.allocs = std::max(0, m.allocs - 1);
  for (int p : ports) {
    auto it = std::lower_bound(m.used_ports.begin(), m.used_ports.end(), p);
    if (it != m.used_ports.end() && *it == p) m.used_ports.erase(it);
  }
  if (KeyId j = JobKey(job); j != kNoId) Bump(machine, j, -1);
  if (KeyId g = GroupKey(job, group); g != kNoId) Bump(machine, g, -1);
}

std::span<const uint32_t> MachineSet::order() {
  if (order_.size() != machines_.size()) {
    order_.resize(machines_.size());
    std::iota(order_.begin(), order_.end(), 0U);
    std::mt19937 rng(0x5eed);  // fixed: placements are reproducible for one set
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  return order_;
}

}  // namespace berth::scheduler
