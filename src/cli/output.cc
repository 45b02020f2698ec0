#include "cli/output.h"

#include <algorithm>
#include <ctime>
#include <iostream>

namespace berth::cli {

int ReportFailure(const Status& st) {
  switch (st.code()) {
    case Code::kUnauthenticated:
      std::cerr << "berth: not authenticated: " << st.message() << "\n";
      return 5;
    case Code::kPermissionDenied:
      std::cerr << "berth: permission denied: " << st.message() << "\n";
      return 5;
    default:
      std::cerr << "berth: " << st.message() << "\n";
      return st.code() == Code::kUnavailable ? 3 : (st.code() == Code::kNotFound ? 4 : 1);
  }
}

using nlohmann::json;

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width;
  for (const auto& r : rows_) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows_) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();  // an empty last cell
    out << line << "\n";
  }
}

std::string Str(const json& j, const char* key, const std::string& fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

namespace {

int64_t Int(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// Empty strings shown as "-" so table columns never collapse.
std::string OrDash(std::string s) {
  return s.empty() ? "-" : s;
}

}  // namespace

std::string FormatTime(const json& j, const char* key) {
  int64_t ms = Int(j, key);
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return std::string(buf) + " UTC";
}

std::string FormatAge(int64_t now_ms, int64_t then_ms) {
  if (then_ms <= 0) return "-";
  int64_t s = std::max<int64_t>(0, (now_ms - then_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 120 * 60) return std::to_string(s / 60) + "m";
  if (s < 48 * 3600) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

int64_t TotalRestarts(const json& alloc) {
  int64_t total = 0;
  if (alloc.is_object() && alloc.contains("tasks") && alloc["tasks"].is_array()) {
    for (const auto& t : alloc["tasks"]) total += Int(t, "restarts");
  }
  return total;
}

void PrintAllocTable(const json& allocs, int64_t now_ms, bool with_job, std::ostream& out) {
  std::vector<std::string> header = {"ID"};
  if (with_job) header.push_back("JOB");
  for (const char* h : {"GROUP", "MACHINE", "STATE", "DESIRED", "HEALTH", "RESTARTS", "UPDATED"}) {
    header.push_back(h);
  }
  Table t(std::move(header));
  for (const auto& a : allocs) {
    std::vector<std::string> row = {Str(a, "id")};
    if (with_job) row.push_back(Str(a, "job"));
    std::string group = Str(a, "group");
    if (a.is_object() && a.contains("index")) group += "[" + Str(a, "index") + "]";
    row.insert(row.end(), {group, OrDash(Str(a, "machine")), Str(a, "state"), Str(a, "desired"),
                           OrDash(Str(a, "health")), std::to_string(TotalRestarts(a)),
                           FormatAge(now_ms, Int(a, "updated_at_ms"))});
    t.Add(std::move(row));
  }
  t.Print(out);
}

namespace {

// A docker container id is long; its first 12 characters are what docker shows too.
std::string TaskProcess(const json& t) {
  std::string handle = Str(t, "handle", "");
  if (Str(t, "driver", "") == "docker" && !handle.empty()) return handle.substr(0, 12);
  if (int64_t pid = Int(t, "pid"); pid > 0) return std::to_string(pid);
  return OrDash(handle);
}

std::string TaskPorts(const json& t) {
  std::string out;
  if (t.contains("ports") && t["ports"].is_object()) {
    for (const auto& [name, port] : t["ports"].items()) {
      if (!out.empty()) out += ",";
      out += name + "=" + (port.is_string() ? port.get<std::string>() : port.dump());
    }
  }
  return OrDash(out);
}

}  // namespace

void PrintAllocStatus(const json& a, int64_t now_ms, std::ostream& out) {
  auto age = [&](const char* key) {
    std::string when = FormatTime(a, key);
    return when == "-" ? when : when + " (" + FormatAge(now_ms, Int(a, key)) + " ago)";
  };
  std::string machine = OrDash(Str(a, "machine", ""));
  if (std::string api = Str(a, "machine_api", ""); !api.empty()) {
    machine += " (agent " + api + ")";
  } else if (a.is_object() && a.contains("machine_api")) {
    machine += " (not registered)";
  }
  out << "ID:        " << Str(a, "id") << "\n"
      << "Job:       " << Str(a, "job") << " (version " << Str(a, "job_version") << ")\n"
      << "Group:     " << Str(a, "group") << " [" << Str(a, "index") << "]\n"
      << "Machine:   " << machine << "\n"
      << "State:     " << Str(a, "state") << " (desired: " << Str(a, "desired") << ")\n"
      << "Health:    " << OrDash(Str(a, "health", "")) << "\n"
      << "Updated:   " << age("updated_at_ms") << "\n";
  if (std::string msg = Str(a, "message", ""); !msg.empty()) out << "Message:   " << msg << "\n";

  out << "\nTasks:\n";
  const json tasks = a.is_object() && a.contains("tasks") ? a["tasks"] : json::array();
  if (!tasks.is_array() || tasks.empty()) {
    out << "  none reported\n";
  } else {
    Table t({"NAME", "DRIVER", "STATE", "PID/CONTAINER", "PORTS", "HEALTH", "EXIT", "RESTARTS",
             "STARTED", "MESSAGE"});
    for (const auto& task : tasks) {
      std::string health = OrDash(Str(task, "health", ""));
      if (std::string why = Str(task, "health_message", ""); !why.empty() && health != "healthy") {
        health += " (" + why + ")";
      }
      int64_t started = Int(task, "started_at_ms");
      t.Add({Str(task, "name"), Str(task, "driver"), Str(task, "state"), TaskProcess(task),
             TaskPorts(task), health, Str(task, "exit_code"), Str(task, "restarts", "0"),
             started > 0 ? FormatAge(now_ms, started) + " ago" : "-",
             OrDash(Str(task, "message", ""))});
    }
    t.Print(out);
  }

  out << "\nRecent events:\n";
  const json events = a.is_object() && a.contains("events") ? a["events"] : json::array();
  if (!events.is_array() || events.empty()) {
    out << "  none\n";
    return;
  }
  Table t({"TIME", "TASK", "TYPE", "MESSAGE"});
  for (const auto& e : events) {
    t.Add({FormatTime(e, "time_ms"), OrDash(Str(e, "task", "")), OrDash(Str(e, "type", "")),
           Str(e, "message", "")});
  }
  t.Print(out);
}

void PrintSecretRefs(const json& tasks, std::ostream& out) {
  if (!tasks.is_array()) return;
  Table t({"TASK", "PATH", "TARGET"});
  bool any = false;
  for (const auto& task : tasks) {
    if (!task.is_object() || !task.contains("secrets") || !task["secrets"].is_array()) continue;
    bool docker = Str(task, "driver", "") == "docker";
    for (const auto& ref : task["secrets"]) {
      std::string target;
      if (std::string file = Str(ref, "file", ""); !file.empty()) {
        target = "file " + std::string(docker ? "/run/secrets/" : "$BERTH_SECRETS_DIR/") + file +
                 " (" + Str(ref, "mode", "0400");
        for (const char* owner : {"uid", "gid"}) {
          if (ref.contains(owner) && ref[owner].is_number_integer()) {
            target += std::string(", ") + owner + " " + std::to_string(ref[owner].get<int64_t>());
          }
        }
        target += ")";
      } else {
        target = "env " + Str(ref, "env");
      }
      t.Add({Str(task, "name"), Str(ref, "path"), target});
      any = true;
    }
  }
  if (!any) return;
  out << "\nSecrets:\n";
  t.Print(out);
}

}  // namespace berth::cli
