#include "api/api_service.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "api/acl_api.h"
#include "api/request_body.h"
#include "api/secret_api.h"
#include "engine/records.h"
#include "router/route_table.h"
#include "runtime/alloc.h"
#include "spec/job_json.h"
#include "spec/job_parser.h"

namespace berth::api {

using nlohmann::json;

namespace {

// Parses a stored JSON value; a value that is not JSON is shown as a string.
json ParseStored(const std::string& value) {
  json j = json::parse(value, nullptr, false);
  return j.is_discarded() ? json(value) : j;
}

std::string_view AfterPrefix(std::string_view key, std::string_view prefix) {
  return key.substr(std::min(prefix.size(), key.size()));
}

json JobSummary(const jobs::JobRecord& r) {
  json groups = json::array();
  int64_t total = 0;
  if (auto it = r.spec.find("groups"); it != r.spec.end() && it->is_array()) {
    for (const auto& g : *it) {
      int64_t count = g.value("count", int64_t{1});
      total += count;
      groups.push_back({{"name", g.value("name", "")}, {"count", count}});
    }
  }
  return {{"name", r.name},
          {"type", r.spec.value("type", "service")},
          {"version", r.version},
          {"status", r.status},
          {"groups", groups},
          {"instances", total},
          {"submitted_at", r.submitted_at_ms},
          {"modify_index", r.mod_revision}};
}

json JobDetail(const jobs::JobRecord& r) {
  json j = JobSummary(r);
  j["spec"] = r.spec;
  return j;
}

HttpResponse Health(const ApiContext& ctx) {
  auto probe = ctx.store->Get(ctx.keys.prefix() + "health-probe");
  json body = {{"status", "ok"}, {"store", probe.ok() ? "ok" : probe.status().ToString()}};
  return Json(body);
}

// The engine leader, or nullopt when no agent holds the engine lease.
Result<std::optional<engine::LeaderRecord>> ReadLeader(const ApiContext& ctx) {
  const std::string key = ctx.keys.EngineLeader();
  auto kv = ctx.store->Get(key);
  if (!kv.ok()) return kv.status().Annotate("get engine leader");
  if (!*kv) return std::optional<engine::LeaderRecord>();
  auto rec = engine::LeaderRecord::FromJson(json::parse((*kv)->value, nullptr, false));
  if (!rec.ok())
    return Internal(fmt::format("corrupt record at {}: {}", key, rec.status().message()));
  return std::optional<engine::LeaderRecord>(std::move(*rec));
}

// An admin record's settings; an unreadable one counts as the defaults (and says so in the log),
// so that a PUT can still overwrite it.
engine::MachineAdmin ParseAdmin(const store::KeyValue& kv) {
  auto a = engine::MachineAdmin::FromJson(json::parse(kv.value, nullptr, false));
  if (a.ok()) return *a;
  spdlog::warn("api: unreadable machine admin record {} ({}): taken as the defaults", kv.key,
               a.status().message());
  return engine::MachineAdmin{};
}

// What the API shows of one machine: its record (when registered), its admin settings, how many
// allocations it is asked to run, and whether it leads the engine.
struct MachineFacts {
  json record;  // null when the machine is not registered
  engine::MachineAdmin admin;
  bool has_admin = false;
  int64_t allocations = 0;
};

json MachineView(const std::string& id, const MachineFacts& f, const std::string& leader) {
  json m = f.record.is_object() ? f.record : json{{"id", id}};
  m["status"] = f.record.is_null() ? "down" : "ready";  // a record lives only with its lease
  m["eligible"] = f.admin.eligible;
  m["drain"] = f.admin.drain;
  m["admin_updated_at"] = f.has_admin ? f.admin.updated_at_ms : 0;
  m["allocations"] = f.allocations;
  m["leader"] = !leader.empty() && leader == id;
  return m;
}

// The machine part of allocs/<machine>/<id>; "" for a malformed key.
std::string AllocKeyMachine(std::string_view rel) {
  auto slash = rel.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == rel.size()) return "";
  return std::string(rel.substr(0, slash));
}

Result<std::string> LeaderMachine(const ApiContext& ctx) {
  auto leader = ReadLeader(ctx);
  if (!leader.ok()) {
    // The machine list is still worth showing without the leader mark.
    if (leader.status().code() != Code::kInternal) return leader.status();
    spdlog::warn("api: {}", leader.status().message());
    return std::string();
  }
  return *leader ? (*leader)->machine : std::string();
}

// Registered machines, and machines known only by their allocations or admin settings: those
// are down (their lease expired) or not yet registered, and an operator needs to see them.
HttpResponse ListMachines(const ApiContext& ctx) {
  auto records = ctx.store->Range(ctx.keys.Machines());
  if (!records.ok()) return ErrorResponse(records.status().Annotate("list machines"));
  auto admins = ctx.store->Range(ctx.keys.MachineAdmins());
  if (!admins.ok()) return ErrorResponse(admins.status().Annotate("list machine admin settings"));
  auto allocs = ctx.store->Range(ctx.keys.Allocs());
  if (!allocs.ok()) return ErrorResponse(allocs.status().Annotate("list allocations"));
  auto leader = LeaderMachine(ctx);
  if (!leader.ok()) return ErrorResponse(leader.status());

  std::map<std::string, MachineFacts> machines;
  for (const auto& kv : records->kvs) {
    std::string id(AfterPrefix(kv.key, ctx.keys.Machines()));
    machines[id].record = ParseStored(kv.value);
  }
  for (const auto& kv : admins->kvs) {
    MachineFacts& f = machines[std::string(AfterPrefix(kv.key, ctx.keys.MachineAdmins()))];
    f.admin = ParseAdmin(kv);
    f.has_admin = true;
  }
  for (const auto& kv : allocs->kvs) {
    std::string id = AllocKeyMachine(AfterPrefix(kv.key, ctx.keys.Allocs()));
    if (!id.empty()) ++machines[id].allocations;
  }
  json out = json::array();
  for (const auto& [id, f] : machines) out.push_back(MachineView(id, f, *leader));
  return Json(out);
}

// One machine's facts; NotFound when the store knows nothing of it.
Result<MachineFacts> ReadMachine(const ApiContext& ctx, const std::string& id) {
  MachineFacts f;
  auto kv = ctx.store->Get(ctx.keys.Machine(id));
  if (!kv.ok()) return kv.status().Annotate("get machine");
  if (*kv) f.record = ParseStored((*kv)->value);
  auto admin = ctx.store->Get(ctx.keys.MachineAdmin(id));
  if (!admin.ok()) return admin.status().Annotate("get machine admin settings");
  if (*admin) {
    f.admin = ParseAdmin(**admin);
    f.has_admin = true;
  }
  auto allocs = ctx.store->Range(ctx.keys.MachineAllocs(id));
  if (!allocs.ok()) return allocs.status().Annotate("list allocations");
  f.allocations = static_cast<int64_t>(allocs->kvs.size());
  if (!*kv && !*admin && f.allocations == 0) {
    return NotFound(fmt::format("machine {} not found", id));
  }
  return f;
}

HttpResponse GetMachine(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& id = req.params.at("id");
  auto f = ReadMachine(ctx, id);
  if (!f.ok()) return ErrorResponse(f.status());
  auto leader = LeaderMachine(ctx);
  if (!leader.ok()) return ErrorResponse(leader.status());
  return Json(MachineView(id, *f, *leader));
}

// Read-modify-write of machine-admin/<id> under a compare-and-swap on its mod revision, so
// two operators' changes never undo each other. The machine must be known: registered, or
// with admin settings already (a machine that is down can still be drained).
Result<engine::MachineAdmin> UpdateAdmin(const ApiContext& ctx, const std::string& id,
                                         const std::function<void(engine::MachineAdmin&)>& change) {
  constexpr int kMaxAttempts = 16;
  const std::string key = ctx.keys.MachineAdmin(id);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto kv = ctx.store->Get(key);
    if (!kv.ok()) return kv.status().Annotate("get machine admin settings");
    engine::MachineAdmin admin;
    int64_t mod_revision = 0;
    if (*kv) {
      admin = ParseAdmin(**kv);
      mod_revision = (*kv)->mod_revision;
    } else {
      auto machine = ctx.store->Get(ctx.keys.Machine(id));
      if (!machine.ok()) return machine.status().Annotate("get machine");
      if (!*machine) {
        return NotFound(fmt::format(
            "machine {} not found (it is not registered and has no admin settings)", id));
      }
    }
    change(admin);
    admin.updated_at_ms = (ctx.clock ? ctx.clock : SystemClock::Shared())->WallMillis();
    auto res = ctx.store->Txn({store::Compare::ModRevisionEquals(key, mod_revision)},
                              {store::TxnOp::Put(key, admin.ToJson().dump())});
    if (!res.ok()) return res.status().Annotate("write machine admin settings");
    if (res->succeeded) return admin;
  }
  return Unavailable(fmt::format("machine {}: admin settings changed too often; try again", id));
}

HttpResponse AdminResponse(const std::string& id, const Result<engine::MachineAdmin>& admin) {
  if (!admin.ok()) return ErrorResponse(admin.status());
  json j = admin->ToJson();
  j["id"] = id;
  return Json(j);
}

HttpResponse DrainMachine(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& id = req.params.at("id");
  auto body = BodyObject(req, {"enable"});
  if (!body.ok()) return ErrorResponse(body.status());
  bool enable = true;
  if (Status st = BodyBool(*body, "enable", &enable); !st.ok()) return ErrorResponse(st);
  return AdminResponse(id,
                       UpdateAdmin(ctx, id, [&](engine::MachineAdmin& a) { a.drain = enable; }));
}

HttpResponse SetEligibility(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& id = req.params.at("id");
  auto body = BodyObject(req, {"eligible", "drain"});
  if (!body.ok()) return ErrorResponse(body.status());
  if (!body->contains("eligible")) {
    return ErrorResponse(InvalidArgument("request body: \"eligible\" (true or false) is required"));
  }
  bool eligible = true;
  if (Status st = BodyBool(*body, "eligible", &eligible); !st.ok()) return ErrorResponse(st);
  std::optional<bool> drain;
  if (body->contains("drain")) {
    bool d = false;
    if (Status st = BodyBool(*body, "drain", &d); !st.ok()) return ErrorResponse(st);
    drain = d;
  }
  return AdminResponse(id, UpdateAdmin(ctx, id, [&](engine::MachineAdmin& a) {
                         a.eligible = eligible;
                         if (drain) a.drain = *drain;
                       }));
}

HttpResponse GetEngine(const ApiContext& ctx) {
  auto leader = ReadLeader(ctx);
  if (!leader.ok()) return ErrorResponse(leader.status());
  if (!*leader) {
    return ErrorResponse(NotFound(
        "no engine leader: no agent holds the engine lease (none running, or an election is "
        "under way)"));
  }
  return Json((*leader)->ToJson());
}

// The job's deployment record, or nullopt when the engine has written none.
Result<std::optional<engine::Deployment>> ReadDeployment(const ApiContext& ctx,
                                                         const std::string& job) {
  const std::string key = ctx.keys.Deployment(job);
  auto kv = ctx.store->Get(key);
  if (!kv.ok()) return kv.status().Annotate("get deployment");
  if (!*kv) return std::optional<engine::Deployment>();
  auto d = engine::Deployment::FromJson(json::parse((*kv)->value, nullptr, false));
  if (!d.ok()) return Internal(fmt::format("corrupt record at {}: {}", key, d.status().message()));
  return std::optional<engine::Deployment>(std::move(*d));
}

HttpResponse SubmitJob(const ApiContext& ctx, const HttpRequest& req) {
  std::string filename = req.Header("x-berth-filename");
  if (filename.empty()) filename = req.Query("filename", "request body");
  if (req.body.empty()) return ErrorResponse(InvalidArgument(filename + ": empty job file"));
  std::string ctype = req.Header("content-type");
  bool is_json = ctype.find("json") != std::string::npos;
  auto job =
      is_json ? spec::ParseJobJson(req.body, filename) : spec::ParseJobYaml(req.body, filename);
  if (!job.ok()) return ErrorResponse(job.status());
  // The route's permission is JobsNamedInBody: the name is known only now.
  if (Status st = req.caller.MayChangeJob(job->name); !st.ok()) return ErrorResponse(st);
  for (const auto& g : job->groups) {
    for (const auto& t : g.tasks) {
      for (const auto& ref : t.secrets) {
        if (Status st = req.caller.MayGiveJobSecret(job->name, ref.path); !st.ok()) {
          return ErrorResponse(st);
        }
      }
    }
  }
  auto res = ctx.jobs->Submit(*job);
  if (!res.ok()) return ErrorResponse(res.status().Annotate("submit job " + job->name));
  return Json({{"name", res->name}, {"version", res->version}, {"changed", res->changed}},
              res->changed ? 201 : 200);
}

HttpResponse ListJobs(const ApiContext& ctx) {
  auto list = ctx.jobs->List();
  if (!list.ok()) return ErrorResponse(list.status().Annotate("list jobs"));
  json out = json::array();
  for (const auto& r : *list) out.push_back(JobSummary(r));
  return Json(out);
}

// One allocation as the API shows it: the AllocStatus JSON plus "desired".
struct AllocEntry {
  std::string id;
  std::string machine;             // where it runs
  std::vector<std::string> tasks;  // the group's task names
  json view;
};

// Every allocation: the union of the alloc records (what machines are asked to run) and the
// status records (what their agents observe), sorted by job, group, index, id. A record that
// does not parse is skipped with a warning naming its key; when the other record of the pair
// is readable the allocation is still listed from that one.
Result<std::vector<AllocEntry>> ListAllocEntries(const ApiContext& ctx) {
  auto alloc_kvs = ctx.store->Range(ctx.keys.Allocs());
  if (!alloc_kvs.ok()) return alloc_kvs.status().Annotate("list allocations");
  auto status_kvs = ctx.store->Range(ctx.keys.Status());
  if (!status_kvs.ok()) return status_kvs.status().Annotate("list allocation status");

  std::set<std::string> wanted;  // ids with an alloc record, readable or not
  std::map<std::string, runtime::Allocation> placed;
  const std::string alloc_prefix = ctx.keys.Allocs();
  for (const auto& kv : alloc_kvs->kvs) {
    std::string_view rel = AfterPrefix(kv.key, alloc_prefix);  // <machine>/<id>
    auto slash = rel.find('/');
    if (slash == std::string_view::npos || slash + 1 == rel.size()) {
      spdlog::warn("api: skipping allocation record {}: key is not allocs/<machine>/<id>", kv.key);
      continue;
    }
    std::string id(rel.substr(slash + 1));
    wanted.insert(id);
    auto a = runtime::Allocation::FromJson(json::parse(kv.value, nullptr, false), kv.key);
    if (!a.ok()) {
      spdlog::warn("api: skipping unreadable allocation record: {}", a.status().message());
      continue;
    }
    placed.emplace(std::move(id), std::move(*a));
  }

  std::map<std::string, runtime::AllocStatus> observed;
  std::map<std::string, std::string> unreadable;  // id -> why its status record is unreadable
  const std::string status_prefix = ctx.keys.Status();
  for (const auto& kv : status_kvs->kvs) {
    std::string id(AfterPrefix(kv.key, status_prefix));
    auto st = runtime::AllocStatus::FromJson(json::parse(kv.value, nullptr, false), kv.key);
    if (!st.ok()) {
      spdlog::warn("api: skipping unreadable allocation status record: {}", st.status().message());
      unreadable[id] = st.status().message();
      continue;
    }
    observed.emplace(std::move(id), std::move(*st));
  }

  std::vector<AllocEntry> out;
  for (auto& [id, st] : observed) {
    AllocEntry e;
    e.id = id;
    e.machine = st.machine;
    if (auto it = placed.find(id); it != placed.end() && e.machine.empty()) {
      e.machine = it->second.machine;
    }
    for (const auto& t : st.tasks) e.tasks.push_back(t.name);
    e.view = st.ToJson();
    e.view["desired"] = wanted.count(id) ? "run" : "stop";
    out.push_back(std::move(e));
  }
  for (auto& [id, a] : placed) {
    if (observed.count(id)) continue;
    // Placed, but its agent has reported nothing yet.
    runtime::AllocStatus st = runtime::AllocStatus::Pending(a);
    if (auto it = unreadable.find(id); it != unreadable.end()) {
      st.message = "status record unreadable: " + it->second;
    }
    AllocEntry e;
    e.id = id;
    e.machine = a.machine;
    for (const auto& t : st.tasks) e.tasks.push_back(t.name);
    e.view = st.ToJson();
    e.view["desired"] = "run";
    out.push_back(std::move(e));
  }
  auto sort_key = [](const AllocEntry& e) {
    return std::make_tuple(e.view.value("job", ""), e.view.value("group", ""),
                           e.view.value("index", 0), e.id);
  };
  std::sort(out.begin(), out.end(),
            [&](const AllocEntry& a, const AllocEntry& b) { return sort_key(a) < sort_key(b); });
  return out;
}

// Finds an allocation by id or by a unique prefix of one (an exact id wins).
Result<AllocEntry> FindAlloc(const ApiContext& ctx, const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(auto entries, ListAllocEntries(ctx));
  std::vector<AllocEntry*> matches;
  for (auto& e : entries) {
    if (e.id == id) return std::move(e);
    if (e.id.compare(0, id.size(), id) == 0) matches.push_back(&e);
  }
  if (matches.empty()) return NotFound(fmt::format("allocation {} not found", id));
  if (matches.size() > 1) {
    constexpr size_t kShown = 10;
    std::vector<std::string> ids;
    for (size_t i = 0; i < std::min(kShown, matches.size()); ++i) ids.push_back(matches[i]->id);
    std::string more =
        matches.size() > kShown ? fmt::format(" and {} more", matches.size() - kShown) : "";
    return InvalidArgument(fmt::format("allocation id prefix \"{}\" is ambiguous: {}{}", id,
                                       fmt::join(ids, ", "), more));
  }
  return std::move(*matches[0]);
}

// The API address of a machine's agent, from its machines/<id> record; "" when the machine is
// not registered (its lease expired) or its record names no address.
Result<std::string> MachineApi(const ApiContext& ctx, const std::string& machine) {
  if (machine.empty()) return std::string();
  auto kv = ctx.store->Get(ctx.keys.Machine(machine));
  if (!kv.ok()) return kv.status().Annotate("get machine " + machine);
  if (!*kv) return std::string();
  json m = json::parse((*kv)->value, nullptr, false);
  if (!m.is_object()) return std::string();
  // MachineInfo stores it as "address"; "api_address" is accepted too.
  for (const char* field : {"api_address", "address"}) {
    if (auto it = m.find(field);
        it != m.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      return it->get<std::string>();
    }
  }
  return std::string();
}

HttpResponse ListAllocs(const ApiContext& ctx, const HttpRequest& req) {
  auto entries = ListAllocEntries(ctx);
  if (!entries.ok()) return ErrorResponse(entries.status());
  std::string job = req.Query("job");
  json out = json::array();
  for (auto& e : *entries) {
    if (job.empty() || e.view.value("job", "") == job) out.push_back(std::move(e.view));
  }
  return Json(out);
}

HttpResponse GetAlloc(const ApiContext& ctx, const HttpRequest& req) {
  auto entry = FindAlloc(ctx, req.params.at("id"));
  if (!entry.ok()) return ErrorResponse(entry.status());
  auto api = MachineApi(ctx, entry->machine);
  if (!api.ok()) return ErrorResponse(api.status());
  entry->view["machine_api"] = *api;
  return Json(entry->view);
}

std::string QueryEncode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

bool QueryFlag(const HttpRequest& req, const std::string& name, bool fallback) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return fallback;
  const std::string& v = it->second;
  return !(v == "0" || v == "false" || v == "no");
}

// Streams a task's output. Every refusal is a plain JSON error response; the stream (text)
// starts only once the logs are being read.
void StreamAllocLogs(const ApiContext& ctx, const HttpRequest& req, ChunkSink& sink) {
  auto fail = [&](const Status& st) { sink.Respond(ErrorResponse(st)); };
  auto entry = FindAlloc(ctx, req.params.at("id"));
  if (!entry.ok()) return fail(entry.status());
  const std::string& id = entry->id;

  int64_t tail = -1;
  if (std::string t = req.Query("tail"); !t.empty() && t != "all") {
    char* end = nullptr;
    errno = 0;
    tail = std::strtoll(t.c_str(), &end, 10);
    if (end == t.c_str() || *end != '\0' || tail < 0 || errno == ERANGE) {
      return fail(
          InvalidArgument("tail must be a non-negative integer or \"all\", got \"" + t + "\""));
    }
  }
  bool follow = QueryFlag(req, "follow", false);
  bool want_stdout = QueryFlag(req, "stdout", true);
  bool want_stderr = QueryFlag(req, "stderr", true);
  if (!want_stdout && !want_stderr) {
    return fail(InvalidArgument("stdout=0 and stderr=0 leave nothing to show"));
  }

  std::string task = req.Query("task");
  std::string names = fmt::format("{}", fmt::join(entry->tasks, ", "));
  if (task.empty()) {
    if (entry->tasks.size() != 1) {
      return fail(InvalidArgument(fmt::format(
          "allocation {} has {} tasks ({}): name one with task=NAME (berth logs --task)", id,
          entry->tasks.size(), names.empty() ? "none reported yet" : names)));
    }
    task = entry->tasks[0];
  } else if (std::find(entry->tasks.begin(), entry->tasks.end(), task) == entry->tasks.end()) {
    return fail(NotFound(fmt::format("allocation {} has no task {} (tasks: {})", id, task,
                                     names.empty() ? "none reported yet" : names)));
  }

  if (ctx.machine_id.empty() || entry->machine != ctx.machine_id) {
    // Another machine's agent has the logs: send the client there.
    auto api = MachineApi(ctx, entry->machine);
    if (!api.ok()) return fail(api.status());
    if (api->empty()) {
      return fail(Unavailable(fmt::format(
          "allocation {} runs on machine {}, which is not registered (down?): its logs are "
          "out of reach",
          id, entry->machine.empty() ? "(none)" : entry->machine)));
    }
    if (*api == req.Header("host")) {
      // That machine's agent is this one, yet it does not know itself by that machine id:
      // redirecting would loop.
      return fail(Unavailable(fmt::format(
          "allocation {} runs on machine {}, whose agent is this one, but this agent serves "
          "logs for machine \"{}\" only",
          id, entry->machine, ctx.machine_id)));
    }
    std::string location =
        ctx.api_scheme + "://" + *api + "/v1/allocs/" + QueryEncode(id) + "/logs";
    char sep = '?';
    for (const auto& [k, v] : req.query) {
      location += sep + QueryEncode(k) + "=" + QueryEncode(v);
      sep = '&';
    }
    HttpResponse r;
    r.status = 307;
    r.headers.emplace_back("Location", location);
    r.body = json{{"error", fmt::format("allocation {} runs on machine {}: its logs are served "
                                        "by that machine's agent at {}",
                                        id, entry->machine, *api)},
                  {"code", "redirect"},
                  {"location", location}}
                 .dump();
    sink.Respond(std::move(r));
    return;
  }
  if (!ctx.alloc_logs) {
    return fail(Unavailable("this agent runs no allocations, so it has no logs to show"));
  }
  bool started = false;
  Status st =
      ctx.alloc_logs(id, task, follow, tail, want_stdout, want_stderr, [&](std::string_view data) {
        started = true;
        return sink.Write(data);
      });
  if (st.ok()) return;
  if (!started) return fail(st.Annotate("logs of " + id + "/" + task));
  // The head is out: all that is left is to say so in the text itself.
  spdlog::warn("api: logs of {}/{} ended early: {}", id, task, st.ToString());
  sink.Write("\nberth: logs of " + id + "/" + task + " ended early: " + st.ToString() + "\n");
}

HttpResponse GetJob(const ApiContext& ctx, const HttpRequest& req) {
  auto rec = ctx.jobs->Get(req.params.at("name"));
  if (!rec.ok()) return ErrorResponse(rec.status());
  json j = JobDetail(*rec);
  // What the cluster reports for this job's allocations, as GET /v1/allocs?job= shows them.
  auto entries = ListAllocEntries(ctx);
  if (!entries.ok()) return ErrorResponse(entries.status());
  json allocs = json::array();
  for (auto& e : *entries) {
    if (e.view.value("job", "") == rec->name) allocs.push_back(std::move(e.view));
  }
  j["allocations"] = std::move(allocs);
  auto deployment = ReadDeployment(ctx, rec->name);
  if (!deployment.ok()) {
    if (deployment.status().code() != Code::kInternal) return ErrorResponse(deployment.status());
    // The job itself is still worth showing.
    spdlog::warn("api: {}", deployment.status().message());
    j["deployment_error"] = deployment.status().message();
  } else if (*deployment) {
    j["deployment"] = (*deployment)->ToJson();
  }
  return Json(j);
}

HttpResponse JobVersions(const ApiContext& ctx, const HttpRequest& req) {
  auto hist = ctx.jobs->History(req.params.at("name"));
  if (!hist.ok()) return ErrorResponse(hist.status());
  auto deployment = ReadDeployment(ctx, req.params.at("name"));
  if (!deployment.ok() && deployment.status().code() != Code::kInternal) {
    return ErrorResponse(deployment.status());
  }
  json out = json::array();
  for (const auto& r : *hist) {
    json v = JobDetail(r);
    // The newest version whose rollout succeeded, and the state of the one being rolled out.
    v["stable"] = deployment.ok() && *deployment && (*deployment)->stable_version == r.version;
    if (deployment.ok() && *deployment && (*deployment)->version == r.version) {
      v["deployment"] = engine::DeploymentStateName((*deployment)->state);
    }
    out.push_back(std::move(v));
  }
  return Json(out);
}

HttpResponse RevertJob(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& name = req.params.at("name");
  auto body = BodyObject(req, {"version"});
  if (!body.ok()) return ErrorResponse(body.status());
  auto it = body->find("version");
  if (it == body->end() || !it->is_number_integer()) {
    return ErrorResponse(InvalidArgument(
        "request body: \"version\" (the version to go back to, an integer) is required"));
  }
  auto res = ctx.jobs->Revert(name, it->get<int64_t>());
  if (!res.ok()) return ErrorResponse(res.status());
  return Json({{"name", res->name}, {"version", res->version}, {"changed", res->changed}},
              res->changed ? 201 : 200);
}

HttpResponse StopJob(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& name = req.params.at("name");
  std::string purge = req.Query("purge");
  if (purge == "1" || purge == "true") {
    Status st = ctx.jobs->Purge(name);
    if (!st.ok()) return ErrorResponse(st);
    return Json({{"name", name}, {"purged", true}});
  }
  auto rec = ctx.jobs->Stop(name);
  if (!rec.ok()) return ErrorResponse(rec.status());
  return Json({{"name", name}, {"version", rec->version}, {"status", rec->status}});
}

// A route as the API shows it: where it lives (host, id), what the router makes of it (backend,
// path_prefix, balance; "error" instead when the router skips it), who published it (alloc,
// job, task, machine: an agent's route) and whether it lives under a lease (an agent's: it
// goes away with the task or the machine).
json RouteView(const ApiContext& ctx, const store::KeyValue& kv) {
  std::string_view rest = AfterPrefix(kv.key, ctx.keys.Routes());
  size_t slash = rest.find('/');
  json j = {{"host", std::string(rest.substr(0, slash))},
            {"id", slash == std::string_view::npos ? "" : std::string(rest.substr(slash + 1))}};
  json stored = ParseStored(kv.value);
  auto spec = router::ParseRoute(rest, kv.value);
  if (spec.ok()) {
    j["backend"] = spec->backend;
    j["path_prefix"] = spec->path_prefix;
    if (spec->balance_set) {
      j["balance"] =
          spec->balance == router::Balance::kLeastConnections ? "least_conn" : "round_robin";
    }
  } else {
    for (const char* f : {"backend", "path_prefix"}) {
      if (stored.is_object() && stored.contains(f)) j[f] = stored[f];
    }
    j["error"] = spec.status().message();
  }
  for (const char* f : {"alloc", "job", "task", "machine"}) {
    if (stored.is_object() && stored.contains(f) && stored[f].is_string()) j[f] = stored[f];
  }
  j["leased"] = kv.lease != 0;
  j["modify_index"] = kv.mod_revision;
  return j;
}

// Route keys and values come from anyone who can write the store: bad UTF-8 is shown replaced
// rather than failing the whole answer.
HttpResponse RouteJson(const json& body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse ListRoutes(const ApiContext& ctx) {
  auto routes = ctx.store->Range(ctx.keys.Routes());
  if (!routes.ok()) return ErrorResponse(routes.status().Annotate("list routes"));
  json out = json::array();
  for (const auto& kv : routes->kvs) out.push_back(RouteView(ctx, kv));
  return RouteJson(out);
}

// Route ids written through the API: the characters agents and `berth route` use, so that keys
// stay readable and safe in a URL path.
Status CheckRouteId(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 200;
  for (char c : id) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
                c == ':' || c == '@' || c == '~' || c == '+');
  }
  if (ok) return Status::Ok();
  return InvalidArgument(
      fmt::format("route id \"{}\": use 1 to 200 letters, digits and - _ . : @ ~ +", id));
}

// Puts a route that no agent manages (no lease: it stays until removed). Validated as the router
// reads it; the key's host is the normalized one. An agent's route (leased) is not overwritten:
// the agent would not know, and the route would outlive its task.
HttpResponse PutRoute(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& host = req.params.at("host");
  const std::string& id = req.params.at("id");
  auto body = BodyObject(req, {"backend", "path_prefix", "balance"});
  if (!body.ok()) return ErrorResponse(body.status());
  if (!body->contains("backend")) {
    return ErrorResponse(InvalidArgument("request body: \"backend\" (http://IP:PORT) is required"));
  }
  if (Status st = CheckRouteId(id); !st.ok()) return ErrorResponse(st);
  auto spec = router::ParseRoute(host + "/" + id, body->dump());
  if (!spec.ok()) {
    return ErrorResponse(
        InvalidArgument(fmt::format("route {}/{}: {}", host, id, spec.status().message())));
  }
  json value = {{"backend", spec->backend}, {"path_prefix", spec->path_prefix}};
  if (spec->balance_set) value["balance"] = (*body)["balance"];
  const std::string key = ctx.keys.Routes() + spec->host + "/" + id;
  constexpr int kMaxAttempts = 16;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto kv = ctx.store->Get(key);
    if (!kv.ok()) return ErrorResponse(kv.status().Annotate("get route"));
    int64_t mod_revision = 0;
    if (*kv) {
      if ((*kv)->lease != 0) {
        json old = ParseStored((*kv)->value);
        std::string alloc = old.is_object() ? old.value("alloc", "") : "";
        return ErrorResponse(FailedPrecondition(fmt::format(
            "route {}/{} is published by an agent{}{} (under its machine lease); add yours "
            "under another id",
            spec->host, id, alloc.empty() ? "" : " for allocation ", alloc)));
      }
      mod_revision = (*kv)->mod_revision;
    }
    auto res = ctx.store->Txn({store::Compare::ModRevisionEquals(key, mod_revision)},
                              {store::TxnOp::Put(key, value.dump())});
    if (!res.ok()) return ErrorResponse(res.status().Annotate("write route"));
    if (!res->succeeded) continue;
    store::KeyValue written;
    written.key = key;
    written.value = value.dump();
    written.mod_revision = res->revision;
    return Json(RouteView(ctx, written), *kv ? 200 : 201);
  }
  return ErrorResponse(
      Unavailable(fmt::format("route {}/{} changed too often; try again", spec->host, id)));
}

// Deletes a route, whoever wrote it; answers what was removed. An agent's route comes back
// while its task stays healthy (the agent puts it again at its next status or lease change).
HttpResponse DeleteRoute(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& host = req.params.at("host");
  const std::string& id = req.params.at("id");
  std::vector<std::string> keys = {ctx.keys.Routes() + host + "/" + id};
  // The host as the router normalizes it ("Example.COM" was stored as "example.com").
  if (auto spec = router::ParseRoute(host + "/" + id, R"({"backend":"http://127.0.0.1:1"})");
      spec.ok() && spec->host != host) {
    keys.push_back(ctx.keys.Routes() + spec->host + "/" + id);
  }
  for (const auto& key : keys) {
    auto kv = ctx.store->Get(key);
    if (!kv.ok()) return ErrorResponse(kv.status().Annotate("get route"));
    if (!*kv) continue;
    auto res = ctx.store->Txn({store::Compare::ModRevisionEquals(key, (*kv)->mod_revision)},
                              {store::TxnOp::Delete(key)});
    if (!res.ok()) return ErrorResponse(res.status().Annotate("delete route"));
    // Changed meanwhile: it is still there; delete what is there now.
    if (!res->succeeded) {
      auto del = ctx.store->Delete(key);
      if (!del.ok()) return ErrorResponse(del.status().Annotate("delete route"));
    }
    json view = RouteView(ctx, **kv);
    view["deleted"] = true;
    return RouteJson(view);
  }
  return ErrorResponse(NotFound(fmt::format("route {}/{} not found", host, id)));
}

// Streams every change under the cluster prefix as one JSON object per line:
// {"index": revision, "topic": "jobs", "type": "put"|"delete", "key": "web", "value": {...}}.
// Sends {"type":"heartbeat"} when idle so dead clients are noticed.
void StreamEvents(const ApiContext& ctx, const HttpRequest& req, ChunkSink& sink) {
  int64_t start = 0;
  std::string index = req.Query("index");
  if (!index.empty()) {
    char* end = nullptr;
    start = std::strtoll(index.c_str(), &end, 10);
    if (end == index.c_str() || *end != '\0' || start < 0) {
      sink.Write(
          json{{"error", "index must be a non-negative integer, got \"" + index + "\""}}.dump() +
          "\n");
      return;
    }
  }
  std::string topic = req.Query("topic");
  std::string watch_prefix = ctx.keys.prefix();
  if (!topic.empty()) watch_prefix += topic + "/";

  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> lines;
    bool ended = false;
  };
  auto shared = std::make_shared<Shared>();
  const std::string prefix = ctx.keys.prefix();
  const bool see_secrets = req.caller.Has(acl::Need::kSecrets);
  const bool see_acl = req.caller.Has(acl::Need::kAdmin);
  auto watch = ctx.store->Watch(
      watch_prefix, start, [shared, prefix, see_secrets, see_acl](const store::WatchResponse& r) {
        std::lock_guard lock(shared->mu);
        if (!r.status.ok()) {
          json err = {{"error", r.status.ToString()}};
          if (r.compact_revision) err["compact_revision"] = r.compact_revision;
          shared->lines.push_back(err.dump() + "\n");
          shared->ended = true;
        }
        for (const auto& ev : r.events) {
          std::string rel = ev.kv.key.substr(std::min(prefix.size(), ev.kv.key.size()));
          auto slash = rel.find('/');
          std::string ev_topic = rel.substr(0, slash);
          // What the caller's policy may not read is not in its stream at all.
          if (ev_topic == "secrets" && !see_secrets) continue;
          if (ev_topic == "acl" && !see_acl) continue;
          json line = {{"index", ev.kv.mod_revision},
                       {"topic", ev_topic},
                       {"type", ev.type == store::Event::Type::kPut ? "put" : "delete"},
                       {"key", slash == std::string::npos ? rel : rel.substr(slash + 1)}};
          if (ev.type == store::Event::Type::kPut) {
            line["value"] = ParseStored(ev.kv.value);
            if (ev_topic == "acl" && line["value"].is_object()) line["value"].erase("hash");
          }
          shared->lines.push_back(line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
        }
        shared->cv.notify_one();
      });
  if (!watch.ok()) {
    sink.Write(json{{"error", watch.status().ToString()}}.dump() + "\n");
    return;
  }
  // Tells the client the watch is in place: every change from here on will be delivered.
  if (!sink.Write(R"({"type":"ready"})"
                  "\n")) {
    (*watch)->Cancel();
    return;
  }
  // Cancel() waits for a callback in flight, and the callback takes shared->mu: the lock is
  // only held while the queue is drained, never when the loop ends and the watch is cancelled.
  int idle_seconds = 0;
  while (!sink.Closed()) {
    std::string out;
    bool ended = false;
    {
      std::unique_lock lock(shared->mu);
      shared->cv.wait_for(lock, std::chrono::seconds(1),
                          [&] { return !shared->lines.empty() || shared->ended; });
      while (!shared->lines.empty()) {
        out += shared->lines.front();
        shared->lines.pop_front();
      }
      ended = shared->ended;
    }
    if (out.empty() && ++idle_seconds >= 10)
      out = R"({"type":"heartbeat"})"
            "\n";
    if (!out.empty()) {
      idle_seconds = 0;
      if (!sink.Write(out)) break;
    }
    if (ended) break;
  }
  (*watch)->Cancel();
}

}  // namespace

void RegisterApiRoutes(HttpServer& server, const ApiContext& ctx) {
  using acl::Permission;
  // Without an authorizer the server refuses to start (HttpServer::Start): there is no way to
  // serve these routes unchecked by forgetting ctx.access.
  if (ctx.access) {
    server.SetAuthorizer(MakeAuthorizer(ctx.access));
    RegisterAclRoutes(server, ctx.access);
  }
  RegisterSecretRoutes(server, ctx);
  // ctx is copied into each handler so the caller need not keep it alive.
  server.Route("GET", "/v1/health", Permission::Public(),
               [ctx](const HttpRequest&) { return Health(ctx); });
  server.Route("GET", "/v1/version", Permission::Read(), [ctx](const HttpRequest&) {
    return Json({{"version", ctx.version}});
  });
  server.Route("GET", "/v1/agent/self", Permission::Read(), [ctx](const HttpRequest&) {
    return Json(ctx.self_info ? ctx.self_info() : json::object());
  });
  server.Route("GET", "/v1/machines", Permission::Read(),
               [ctx](const HttpRequest&) { return ListMachines(ctx); });
  server.Route("GET", "/v1/machines/:id", Permission::Read(),
               [ctx](const HttpRequest& r) { return GetMachine(ctx, r); });
  server.Route("PUT", "/v1/machines/:id/drain", Permission::Admin(),
               [ctx](const HttpRequest& r) { return DrainMachine(ctx, r); });
  server.Route("PUT", "/v1/machines/:id/eligibility", Permission::Admin(),
               [ctx](const HttpRequest& r) { return SetEligibility(ctx, r); });
  server.Route("GET", "/v1/engine", Permission::Read(),
               [ctx](const HttpRequest&) { return GetEngine(ctx); });
  server.Route("GET", "/v1/jobs", Permission::Read(),
               [ctx](const HttpRequest&) { return ListJobs(ctx); });
  server.Route("POST", "/v1/jobs", Permission::JobsNamedInBody(),
               [ctx](const HttpRequest& r) { return SubmitJob(ctx, r); });
  server.Route("PUT", "/v1/jobs", Permission::JobsNamedInBody(),
               [ctx](const HttpRequest& r) { return SubmitJob(ctx, r); });
  server.Route("GET", "/v1/jobs/:name", Permission::Read(),
               [ctx](const HttpRequest& r) { return GetJob(ctx, r); });
  server.Route("GET", "/v1/jobs/:name/versions", Permission::Read(),
               [ctx](const HttpRequest& r) { return JobVersions(ctx, r); });
  server.Route("POST", "/v1/jobs/:name/revert", Permission::Jobs("name"),
               [ctx](const HttpRequest& r) { return RevertJob(ctx, r); });
  server.Route("DELETE", "/v1/jobs/:name", Permission::Jobs("name"),
               [ctx](const HttpRequest& r) { return StopJob(ctx, r); });
  server.Route("GET", "/v1/routes", Permission::Read(),
               [ctx](const HttpRequest&) { return ListRoutes(ctx); });
  server.Route("PUT", "/v1/routes/:host/:id", Permission::Admin(),
               [ctx](const HttpRequest& r) { return PutRoute(ctx, r); });
  server.Route("DELETE", "/v1/routes/:host/:id", Permission::Admin(),
               [ctx](const HttpRequest& r) { return DeleteRoute(ctx, r); });
  server.Route("GET", "/v1/allocs", Permission::Read(),
               [ctx](const HttpRequest& r) { return ListAllocs(ctx, r); });
  server.Route("GET", "/v1/allocs/:id", Permission::Read(),
               [ctx](const HttpRequest& r) { return GetAlloc(ctx, r); });
  server.RouteStream(
      "GET", "/v1/allocs/:id/logs", "text/plain; charset=utf-8", Permission::Read(),
      [ctx](const HttpRequest& r, ChunkSink& sink) { StreamAllocLogs(ctx, r, sink); });
  server.RouteStream("GET", "/v1/events", "application/x-ndjson", Permission::Read(),
                     [ctx](const HttpRequest& r, ChunkSink& sink) { StreamEvents(ctx, r, sink); });
}

}  // namespace berth::api
