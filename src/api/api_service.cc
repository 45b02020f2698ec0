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

#include "runtime/alloc.h"
#include "spec/job_json.h"
#include "spec/job_parser.h"

namespace berth::api {

using nlohmann::json;

namespace {

HttpResponse Json(const json& body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

// Parses a stored JSON value; a value that is not JSON is shown as a string.
json ParseStored(const std::string& value) {
  json j = json::parse(value, nullptr, false);
  return j.is_discarded() ? json(value) : j;
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

HttpResponse ListMachines(const ApiContext& ctx) {
  auto range = ctx.store->Range(ctx.keys.Machines());
  if (!range.ok()) return ErrorResponse(range.status().Annotate("list machines"));
  json out = json::array();
  for (const auto& kv : range->kvs) {
    json m = ParseStored(kv.value);
    if (m.is_object()) m["status"] = "ready";  // a record exists only while its lease lives
    out.push_back(std::move(m));
  }
  return Json(out);
}

HttpResponse GetMachine(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& id = req.params.at("id");
  auto kv = ctx.store->Get(ctx.keys.Machine(id));
  if (!kv.ok()) return ErrorResponse(kv.status().Annotate("get machine"));
  if (!*kv) return ErrorResponse(NotFound(fmt::format("machine {} not found", id)));
  json m = ParseStored((*kv)->value);
  if (m.is_object()) m["status"] = "ready";
  return Json(m);
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

std::string_view AfterPrefix(std::string_view key, std::string_view prefix) {
  return key.substr(std::min(prefix.size(), key.size()));
}

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
    std::string location = "http://" + *api + "/v1/allocs/" + QueryEncode(id) + "/logs";
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
  return Json(j);
}

HttpResponse JobVersions(const ApiContext& ctx, const HttpRequest& req) {
  auto hist = ctx.jobs->History(req.params.at("name"));
  if (!hist.ok()) return ErrorResponse(hist.status());
  json out = json::array();
  for (const auto& r : *hist) out.push_back(JobDetail(r));
  return Json(out);
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
  auto watch =
      ctx.store->Watch(watch_prefix, start, [shared, prefix](const store::WatchResponse& r) {
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
          json line = {{"index", ev.kv.mod_revision},
                       {"topic", rel.substr(0, slash)},
                       {"type", ev.type == store::Event::Type::kPut ? "put" : "delete"},
                       {"key", slash == std::string::npos ? rel : rel.substr(slash + 1)}};
          if (ev.type == store::Event::Type::kPut) line["value"] = ParseStored(ev.kv.value);
          shared->lines.push_back(line.dump() + "\n");
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
  std::unique_lock lock(shared->mu);
  int idle_seconds = 0;
  while (!sink.Closed()) {
    shared->cv.wait_for(lock, std::chrono::seconds(1),
                        [&] { return !shared->lines.empty() || shared->ended; });
    std::string out;
    while (!shared->lines.empty()) {
      out += shared->lines.front();
      shared->lines.pop_front();
    }
    bool ended = shared->ended;
    lock.unlock();
    if (out.empty() && ++idle_seconds >= 10)
      out = R"({"type":"heartbeat"})"
            "\n";
    if (!out.empty()) {
      idle_seconds = 0;
      if (!sink.Write(out)) break;
    }
    if (ended) break;
    lock.lock();
  }
  (*watch)->Cancel();
}

}  // namespace

void RegisterApiRoutes(HttpServer& server, const ApiContext& ctx) {
  // ctx is copied into each handler so the caller need not keep it alive.
  server.Route("GET", "/v1/health", [ctx](const HttpRequest&) { return Health(ctx); });
  server.Route("GET", "/v1/version", [ctx](const HttpRequest&) {
    return Json({{"version", ctx.version}});
  });
  server.Route("GET", "/v1/agent/self", [ctx](const HttpRequest&) {
    return Json(ctx.self_info ? ctx.self_info() : json::object());
  });
  server.Route("GET", "/v1/machines", [ctx](const HttpRequest&) { return ListMachines(ctx); });
  server.Route("GET", "/v1/machines/:id",
               [ctx](const HttpRequest& r) { return GetMachine(ctx, r); });
  server.Route("GET", "/v1/jobs", [ctx](const HttpRequest&) { return ListJobs(ctx); });
  server.Route("POST", "/v1/jobs", [ctx](const HttpRequest& r) { return SubmitJob(ctx, r); });
  server.Route("PUT", "/v1/jobs", [ctx](const HttpRequest& r) { return SubmitJob(ctx, r); });
  server.Route("GET", "/v1/jobs/:name", [ctx](const HttpRequest& r) { return GetJob(ctx, r); });
  server.Route("GET", "/v1/jobs/:name/versions",
               [ctx](const HttpRequest& r) { return JobVersions(ctx, r); });
  server.Route("DELETE", "/v1/jobs/:name", [ctx](const HttpRequest& r) { return StopJob(ctx, r); });
  server.Route("GET", "/v1/allocs", [ctx](const HttpRequest& r) { return ListAllocs(ctx, r); });
  server.Route("GET", "/v1/allocs/:id", [ctx](const HttpRequest& r) { return GetAlloc(ctx, r); });
  server.RouteStream(
      "GET", "/v1/allocs/:id/logs", "text/plain; charset=utf-8",
      [ctx](const HttpRequest& r, ChunkSink& sink) { StreamAllocLogs(ctx, r, sink); });
  server.RouteStream("GET", "/v1/events", "application/x-ndjson",
                     [ctx](const HttpRequest& r, ChunkSink& sink) { StreamEvents(ctx, r, sink); });
}

}  // namespace berth::api
