#include "api/api_service.h"

#include <fmt/format.h>

#include <condition_variable>
#include <deque>
#include <mutex>

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

HttpResponse GetJob(const ApiContext& ctx, const HttpRequest& req) {
  auto rec = ctx.jobs->Get(req.params.at("name"));
  if (!rec.ok()) return ErrorResponse(rec.status());
  json j = JobDetail(*rec);
  // What the cluster reports for this job's allocations (written by agents and the engine).
  json allocs = json::array();
  auto status = ctx.store->Range(ctx.keys.Status());
  if (status.ok()) {
    for (const auto& kv : status->kvs) {
      json a = ParseStored(kv.value);
      if (a.is_object() && a.value("job", "") == rec->name) allocs.push_back(std::move(a));
    }
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
  server.RouteStream("GET", "/v1/events", "application/x-ndjson",
                     [ctx](const HttpRequest& r, ChunkSink& sink) { StreamEvents(ctx, r, sink); });
}

}  // namespace berth::api
