#include "runtime/alloc.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <utility>

#include "spec/job_json.h"

namespace berth::runtime {

using nlohmann::json;

namespace {

constexpr std::string_view kRunStateNames[] = {"pending",  "running", "restarting", "failed",
                                               "complete", "stopped", "lost"};

// Reads typed fields out of one JSON object, remembering the first error (which names the
// record and the field).
class Reader {
 public:
  Reader(const json& j, std::string_view source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {
    if (!j_.is_object()) Fail("", "expected an object");
  }

  std::string Str(const char* field, bool required = true) {
    if (!Has(field, required)) return {};
    const json& v = j_.at(field);
    if (!v.is_string()) return Fail(field, "expected a string"), std::string();
    return v.get<std::string>();
  }
  int64_t Int(const char* field, bool required = false) {
    if (!Has(field, required)) return 0;
    const json& v = j_.at(field);
    if (!v.is_number_integer()) return Fail(field, "expected an integer"), 0;
    return v.get<int64_t>();
  }
  bool Has(const char* field, bool required) {
    if (!status_.ok() || !j_.is_object()) return false;
    if (j_.contains(field) && !j_.at(field).is_null()) return true;
    if (required) Fail(field, "missing");
    return false;
  }
  void Fail(std::string_view field, std::string_view what) {
    if (!status_.ok()) return;
    std::string path = prefix_ + std::string(field);
    status_ = InvalidArgument(std::string(source_) + ": " + (path.empty() ? "" : path + ": ") +
                              std::string(what));
  }
  const Status& status() const { return status_; }
  void Merge(const Status& s) {
    if (status_.ok() && !s.ok()) status_ = s;
  }

 private:
  const json& j_;
  std::string_view source_;
  std::string prefix_;
  Status status_ = Status::Ok();
};

RunState ReadState(Reader& r, const char* field) {
  std::string name = r.Str(field);
  if (!r.status().ok()) return RunState::kPending;
  auto s = RunStateFromName(name);
  if (!s) {
    r.Fail(field, "unknown state \"" + name + "\"");
    return RunState::kPending;
  }
  return *s;
}

}  // namespace

std::string_view RunStateName(RunState s) {
  return kRunStateNames[static_cast<int>(s)];
}

std::optional<RunState> RunStateFromName(std::string_view s) {
  for (size_t i = 0; i < std::size(kRunStateNames); ++i) {
    if (kRunStateNames[i] == s) return static_cast<RunState>(i);
  }
  return std::nullopt;
}

const spec::Group* Allocation::FindGroup() const {
  for (const auto& g : spec.groups) {
    if (g.name == group) return &g;
  }
  return nullptr;
}

json Allocation::ToJson() const {
  return json{{"id", id},
              {"job", job},
              {"group", group},
              {"index", index},
              {"machine", machine},
              {"job_version", job_version},
              {"created_at_ms", created_at_ms},
              {"spec", spec::JobToJson(spec)}};
}

Result<Allocation> Allocation::FromJson(const json& j, std::string_view source) {
  Reader r(j, source);
  Allocation a;
  a.id = r.Str("id");
  a.job = r.Str("job");
  a.group = r.Str("group");
  a.index = static_cast<int>(r.Int("index"));
  a.machine = r.Str("machine");
  a.job_version = r.Int("job_version");
  a.created_at_ms = r.Int("created_at_ms");
  if (r.Has("spec", true)) {
    auto job = spec::JobFromJson(j.at("spec"), std::string(source) + ": spec");
    if (!job.ok()) return job.status();
    a.spec = std::move(*job);
  }
  BERTH_RETURN_IF_ERROR(r.status());
  if (a.id.empty()) return InvalidArgument(std::string(source) + ": id: empty");
  if (a.FindGroup() == nullptr) {
    return InvalidArgument(std::string(source) + ": group: \"" + a.group +
                           "\" is not a group of job " + a.spec.name);
  }
  return a;
}

std::string NewAllocId(std::string_view job, std::string_view group, int index) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[9];
  snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(rng() & 0xffffffffu));
  std::string suffix = "-" + std::to_string(index) + "-" + hex;
  std::string head = std::string(job) + "-" + std::string(group);
  if (head.size() + suffix.size() > 63) head.resize(63 - suffix.size());
  while (!head.empty() && head.back() == '-') head.pop_back();
  return head + suffix;
}

AllocStatus AllocStatus::Pending(const Allocation& alloc) {
  AllocStatus s;
  s.id = alloc.id;
  s.job = alloc.job;
  s.group = alloc.group;
  s.index = alloc.index;
  s.machine = alloc.machine;
  s.job_version = alloc.job_version;
  s.state = RunState::kPending;
  s.updated_at_ms = alloc.created_at_ms;
  if (const spec::Group* g = alloc.FindGroup()) {
    for (const auto& task : g->tasks) {
      TaskReport r;
      r.name = task.name;
      r.driver = std::string(spec::DriverKindName(task.driver));
      r.health = task.health ? "unknown" : "";
      r.secrets = task.secrets;
      s.tasks.push_back(std::move(r));
    }
  }
  return s;
}

void AllocStatus::AddEvent(TaskEvent event) {
  events.push_back(std::move(event));
  if (events.size() > kMaxEvents) events.erase(events.begin(), events.end() - kMaxEvents);
}

void AllocStatus::Summarize() {
  auto all = [&](auto pred) {
    return !tasks.empty() && std::all_of(tasks.begin(), tasks.end(), pred);
  };
  auto any = [&](RunState s) {
    return std::any_of(tasks.begin(), tasks.end(), [s](const auto& t) { return t.state == s; });
  };
  if (state == RunState::kLost) {
    // Set by the engine; the agent does not overrule it.
  } else if (any(RunState::kFailed)) {
    state = RunState::kFailed;
  } else if (all([](const auto& t) { return t.state == RunState::kRunning; })) {
    state = RunState::kRunning;
  } else if (any(RunState::kRestarting)) {
    state = RunState::kRestarting;
  } else if (all([](const auto& t) { return t.state == RunState::kComplete; })) {
    state = RunState::kComplete;
  } else if (all([](const auto& t) {
               return t.state == RunState::kStopped || t.state == RunState::kComplete;
             })) {
    state = RunState::kStopped;
  } else {
    state = RunState::kPending;
  }
  bool checked = false;
  bool unhealthy = false;
  bool unknown = false;
  for (const auto& t : tasks) {
    if (t.health.empty()) continue;
    checked = true;
    unhealthy |= t.health == "unhealthy";
    unknown |= t.health == "unknown";
  }
  health = !checked ? "" : unhealthy ? "unhealthy" : unknown ? "unknown" : "healthy";
}

json AllocStatus::ToJson() const {
  json jt = json::array();
  for (const auto& t : tasks) {
    json ports = json::object();
    for (const auto& [name, port] : t.ports) ports[name] = port;
    json o{{"name", t.name},
           {"driver", t.driver},
           {"state", RunStateName(t.state)},
           {"handle", t.handle},
           {"pid", t.pid},
           {"ports", ports},
           {"health", t.health},
           {"health_message", t.health_message},
           {"exit_code", t.exit_code ? json(*t.exit_code) : json(nullptr)},
           {"restarts", t.restarts},
           {"started_at_ms", t.started_at_ms},
           {"finished_at_ms", t.finished_at_ms},
           {"message", t.message}};
    if (!t.secrets.empty()) {
      json refs = json::array();
      for (const auto& ref : t.secrets) {
        json rj = {{"path", ref.path}};
        if (!ref.file.empty()) {
          char mode[8];
          std::snprintf(mode, sizeof mode, "0%o", static_cast<unsigned>(ref.mode));
          rj["file"] = ref.file;
          rj["mode"] = mode;
          if (ref.uid >= 0) rj["uid"] = ref.uid;
          if (ref.gid >= 0) rj["gid"] = ref.gid;
        } else {
          rj["env"] = ref.env;
        }
        refs.push_back(std::move(rj));
      }
      o["secrets"] = std::move(refs);
    }
    jt.push_back(std::move(o));
  }
  json je = json::array();
  for (const auto& e : events) {
    je.push_back(
        {{"time_ms", e.time_ms}, {"task", e.task}, {"type", e.type}, {"message", e.message}});
  }
  return json{{"id", id},
              {"job", job},
              {"group", group},
              {"index", index},
              {"machine", machine},
              {"job_version", job_version},
              {"state", RunStateName(state)},
              {"health", health},
              {"message", message},
              {"tasks", jt},
              {"events", je},
              {"updated_at_ms", updated_at_ms}};
}

Result<AllocStatus> AllocStatus::FromJson(const json& j, std::string_view source) {
  Reader r(j, source);
  AllocStatus s;
  s.id = r.Str("id");
  s.job = r.Str("job");
  s.group = r.Str("group");
  s.index = static_cast<int>(r.Int("index"));
  s.machine = r.Str("machine");
  s.job_version = r.Int("job_version");
  s.state = ReadState(r, "state");
  s.health = r.Str("health", false);
  s.message = r.Str("message", false);
  s.updated_at_ms = r.Int("updated_at_ms");
  if (r.Has("tasks", false)) {
    const json& tasks = j.at("tasks");
    if (!tasks.is_array()) r.Fail("tasks", "expected a list");
    for (size_t i = 0; r.status().ok() && i < tasks.size(); ++i) {
      Reader tr(tasks[i], source, "tasks[" + std::to_string(i) + "].");
      TaskReport t;
      t.name = tr.Str("name");
      t.driver = tr.Str("driver", false);
      t.state = ReadState(tr, "state");
      t.handle = tr.Str("handle", false);
      t.pid = static_cast<int>(tr.Int("pid"));
      if (tr.Has("ports", false)) {
        const json& ports = tasks[i].at("ports");
        if (!ports.is_object()) tr.Fail("ports", "expected an object");
        for (auto it = ports.begin(); tr.status().ok() && it != ports.end(); ++it) {
          if (!it.value().is_number_integer()) {
            tr.Fail("ports." + it.key(), "expected an integer");
          } else {
            t.ports[it.key()] = it.value().get<int>();
          }
        }
      }
      t.health = tr.Str("health", false);
      t.health_message = tr.Str("health_message", false);
      if (tr.Has("exit_code", false)) t.exit_code = static_cast<int>(tr.Int("exit_code"));
      t.restarts = static_cast<int>(tr.Int("restarts"));
      t.started_at_ms = tr.Int("started_at_ms");
      t.finished_at_ms = tr.Int("finished_at_ms");
      t.message = tr.Str("message", false);
      if (tr.Has("secrets", false)) {
        const json& refs = tasks[i].at("secrets");
        if (!refs.is_array()) tr.Fail("secrets", "expected a list");
        for (size_t k = 0; tr.status().ok() && k < refs.size(); ++k) {
          Reader sr(refs[k], source,
                    "tasks[" + std::to_string(i) + "].secrets[" + std::to_string(k) + "].");
          spec::SecretRef ref;
          ref.path = sr.Str("path");
          ref.file = sr.Str("file", false);
          ref.env = sr.Str("env", false);
          std::string mode = sr.Str("mode", false);
          if (!mode.empty()) {
            char* end = nullptr;
            long bits = std::strtol(mode.c_str(), &end, 8);
            if (*end != '\0' || bits < 0 || bits > 07777) {
              sr.Fail("mode", "expected an octal mode");
            } else {
              ref.mode = static_cast<int>(bits);
            }
          }
          for (auto [field, id] : {std::pair{"uid", &ref.uid}, std::pair{"gid", &ref.gid}}) {
            if (!sr.Has(field, false)) continue;
            int64_t v = sr.Int(field);
            if (v < 0 || v > spec::kMaxOwnerId) {
              sr.Fail(field,
                      "expected a uid or gid from 0 to " + std::to_string(spec::kMaxOwnerId));
            } else {
              *id = static_cast<int>(v);
            }
          }
          tr.Merge(sr.status());
          t.secrets.push_back(std::move(ref));
        }
      }
      r.Merge(tr.status());
      s.tasks.push_back(std::move(t));
    }
  }
  if (r.Has("events", false)) {
    const json& events = j.at("events");
    if (!events.is_array()) r.Fail("events", "expected a list");
    for (size_t i = 0; r.status().ok() && i < events.size(); ++i) {
      Reader er(events[i], source, "events[" + std::to_string(i) + "].");
      TaskEvent e;
      e.time_ms = er.Int("time_ms");
      e.task = er.Str("task", false);
      e.type = er.Str("type", false);
      e.message = er.Str("message", false);
      r.Merge(er.status());
      s.events.push_back(std::move(e));
    }
  }
  BERTH_RETURN_IF_ERROR(r.status());
  return s;
}

}  // namespace berth::runtime
