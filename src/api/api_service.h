// ApiService: berth's HTTP/JSON API under /v1/, served by every agent.
//
//   GET    /v1/health                 liveness and store reachability (no auth, ever)
//   GET    /v1/version                {"version": ...}
//   GET    /v1/agent/self             this agent: machine record, store, mode
//   GET    /v1/machines               machines registered in the store
//   GET    /v1/machines/:id
//   GET    /v1/jobs                   job summaries
//   POST   /v1/jobs                   submit a job (YAML, or JSON with Content-Type
//                                     application/json); X-Berth-Filename names the file
//   GET    /v1/jobs/:name             the current version, with its spec
//   GET    /v1/jobs/:name/versions    every version, oldest first
//   DELETE /v1/jobs/:name[?purge=1]   stop (a new version), or purge job and history
//   GET    /v1/events[?index=N][&topic=job]
//                                     a stream of changes, one JSON object per line
// Errors are JSON {"error": message, "code": name} with the matching HTTP status; docs/api.md
// has the details.
// Thread-safety: handlers run concurrently; every dependency used here is thread-safe.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "api/http_server.h"
#include "jobs/job_registry.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::api {

struct ApiContext {
  store::Store* store = nullptr;
  store::Keys keys;
  jobs::JobRegistry* jobs = nullptr;
  std::string version;
  std::function<nlohmann::json()> self_info;  // for /v1/agent/self
};

void RegisterApiRoutes(HttpServer& server, const ApiContext& ctx);

}  // namespace berth::api
