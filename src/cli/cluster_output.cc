#include "cli/cluster_output.h"

#include <cstdio>
#include <sstream>
#include <string>

#include "cli/output.h"

namespace berth::cli {

using nlohmann::json;

namespace {

int64_t Int(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

bool Bool(const json& j, const char* key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// Prints `text` with every line indented by `indent`.
void Indented(const std::string& text, const std::string& indent, std::ostream& out) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out << indent << line << "\n";
}

std::string Bytes(int64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace

void PrintDeployment(const json& job, std::ostream& out) {
  if (!job.is_object()) return;
  if (auto err = job.find("deployment_error"); err != job.end()) {
    out << "Deployment: unreadable (" << Str(job, "deployment_error") << ")\n";
    return;
  }
  auto it = job.find("deployment");
  if (it == job.end() || !it->is_object()) {
    out << "Deployment: none (the cluster engine has not rolled this job out yet)\n";
    return;
  }
  const json& d = *it;
  std::string version = Str(d, "version");
  if (int64_t from = Int(d, "reverted_from"); from > 0) {
    version += " (reverts version " + std::to_string(from) + ")";
  }
  int64_t stable = Int(d, "stable_version");
  out << "Deployment:\n"
      << "  Version:  " << version << "\n"
      << "  State:    " << Str(d, "state") << "\n";
  if (std::string msg = Str(d, "message", ""); !msg.empty()) out << "  Message:  " << msg << "\n";
  out << "  Stable:   " << (stable > 0 ? "version " + std::to_string(stable) : "none yet") << "\n"
      << "  Updated:  " << FormatTime(d, "updated_at") << "\n";

  const json groups =
      d.contains("groups") && d["groups"].is_object() ? d["groups"] : json::object();
  if (groups.empty()) return;
  Table t({"GROUP", "DESIRED", "PLACED", "HEALTHY", "UNPLACED"});
  std::string failures;
  for (const auto& [name, g] : groups.items()) {
    t.Add({name, Str(g, "desired", "0"), Str(g, "placed", "0"), Str(g, "healthy", "0"),
           Str(g, "unplaced", "0")});
    if (std::string why = Str(g, "explanation", ""); !why.empty()) {
      failures += name + ": " + why + "\n";
    }
  }
  std::ostringstream table;
  t.Print(table);
  out << "\n";
  Indented(table.str(), "  ", out);
  if (!failures.empty()) {
    out << "\n  Placement failures:\n";
    Indented(failures, "    ", out);
  }
}

void PrintJobHistory(const json& versions, std::ostream& out) {
  Table t({"VERSION", "STATUS", "INSTANCES", "SUBMITTED", "DEPLOYMENT"});
  for (const auto& v : versions) {
    std::string deployment = Str(v, "deployment", "");
    if (Bool(v, "stable", false)) deployment += deployment.empty() ? "stable" : ", stable";
    t.Add({Str(v, "version"), Str(v, "status"), Str(v, "instances"), FormatTime(v, "submitted_at"),
           deployment.empty() ? "-" : deployment});
  }
  t.Print(out);
}

void PrintMachineTable(const json& machines, std::ostream& out) {
  Table t({"ID", "ADDRESS", "STATUS", "ELIGIBLE", "DRAIN", "ALLOCS", "CPUS", "MEMORY", "META"});
  bool any_leader = false;
  for (const auto& m : machines) {
    std::string meta;
    if (m.contains("meta") && m["meta"].is_object()) {
      for (const auto& [k, v] : m["meta"].items()) {
        if (!meta.empty()) meta += ",";
        meta += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      }
    }
    bool leader = Bool(m, "leader", false);
    any_leader = any_leader || leader;
    int64_t mem = Int(m, "memory_bytes");
    t.Add({Str(m, "id") + (leader ? "*" : ""), Str(m, "address"), Str(m, "status"),
           Bool(m, "eligible", true) ? "yes" : "no", Bool(m, "drain", false) ? "yes" : "no",
           Str(m, "allocations", "0"), Str(m, "cpus"), mem > 0 ? Bytes(mem) : "-",
           meta.empty() ? "-" : meta});
  }
  t.Print(out);
  if (any_leader) out << "* the engine leader\n";
}

}  // namespace berth::cli
