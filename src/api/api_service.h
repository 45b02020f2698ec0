// ApiService: berth's HTTP/JSON API under /v1/, served by every agent.
//
//   GET    /v1/health                 liveness and store reachability (no auth, ever)
//   GET    /v1/version                {"version": ...}
//   GET    /v1/agent/self             this agent: machine record, store, mode
//   GET    /v1/machines               every machine: registered ones, and those only known by
//                                     their allocations or admin settings (status "down"),
//                                     with their admin settings, allocation count, leadership
//   GET    /v1/machines/:id
//   PUT    /v1/machines/:id/drain     {"enable": bool}: drain (or stop draining) a machine
//   PUT    /v1/machines/:id/eligibility
//                                     {"eligible": bool[, "drain": bool]}
//   GET    /v1/engine                 the engine leader record (404 when none)
//   GET    /v1/jobs                   job summaries
//   POST   /v1/jobs                   submit a job (YAML, or JSON with Content-Type
//                                     application/json); X-Berth-Filename names the file
//   GET    /v1/jobs/:name             the current version, with its spec, allocations and
//                                     deployment
//   GET    /v1/jobs/:name/versions    every version, oldest first, the stable one marked
//   POST   /v1/jobs/:name/revert      {"version": N}: submit version N's spec as a new version
//   DELETE /v1/jobs/:name[?purge=1]   stop (a new version), or purge job and history
//   GET    /v1/allocs[?job=NAME]      every allocation: its status plus "desired" (run|stop)
//   GET    /v1/allocs/:id             one allocation (a unique id prefix will do), with the
//                                     API address of its machine's agent
//   GET    /v1/allocs/:id/logs[?task=T][&follow=1][&tail=N][&stdout=0][&stderr=0]
//                                     a task's output as a text stream; 307 to the agent of the
//                                     machine that runs it when that is not this one
//   GET    /v1/routes                 the route table: every routes/<host>/<id>, with its source
//                                     (an agent's allocation, leased) and what the router makes
//                                     of it
//   PUT    /v1/routes/:host/:id       {"backend": URL[, "path_prefix": P][, "balance": B]}: a
//                                     route to something berth does not run (no lease)
//   DELETE /v1/routes/:host/:id       remove a route (404 if absent)
//   GET    /v1/events[?index=N][&topic=job]
//                                     a stream of changes, one JSON object per line
//   ... and the ACL routes of api/acl_api.h (/v1/acl/...).
// Every route but /v1/health and /v1/acl/bootstrap needs a bearer token whose policy grants
// the route's permission (acl/policy.h; the table is in docs/acl.md): RegisterApiRoutes
// installs ctx.access as the server's authorizer. The event stream leaves out what the
// caller's policy may not read (secrets/ unless secrets or admin, acl/ unless admin, and never a
// token hash).
// Errors are JSON {"error": message, "code": name} with the matching HTTP status; docs/api.md
// has the details.
// Thread-safety: handlers run concurrently; every dependency used here is thread-safe.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "acl/access_control.h"
#include "api/http_server.h"
#include "common/clock.h"
#include "jobs/job_registry.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::api {

struct ApiContext {
  store::Store* store = nullptr;
  store::Keys keys;
  jobs::JobRegistry* jobs = nullptr;
  std::string version;
  // Timestamps of admin settings (updated_at); nullptr: the system clock.
  ClockPtr clock;
  std::function<nlohmann::json()> self_info;  // for /v1/agent/self
  // This agent's machine id: logs of allocations placed elsewhere are redirected.
  std::string machine_id;
  // The scheme of every agent's API ("https" when they serve TLS), for those redirects.
  std::string api_scheme = "http";
  // Checks every request's token (required: without it the server refuses to start). In dev
  // mode without --acl it is an AccessControl that does not enforce.
  acl::AccessControlPtr access;
  // Streams a task's output for /v1/allocs/:id/logs on this machine; nullptr when this agent
  // runs no allocations (503). `tail_lines` < 0 means all. Calls `sink` with each piece of
  // output; sink("") sends the response head without data (call it before waiting for output
  // in follow mode) and every call returns false once the client has gone: then return. An
  // error returned before the first output becomes the HTTP status (e.g. kNotFound: 404).
  // Runs on the stream's own thread; may block for as long as it follows.
  std::function<Status(const std::string& alloc_id, const std::string& task, bool follow,
                       int64_t tail_lines, bool want_stdout, bool want_stderr,
                       const std::function<bool(std::string_view)>& sink)>
      alloc_logs;
};

void RegisterApiRoutes(HttpServer& server, const ApiContext& ctx);

}  // namespace berth::api
