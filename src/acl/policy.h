// Policies, route permissions and callers: what a token may do, what a route needs, and who a
// request comes from once its token has been checked.
//
// A token carries one policy:
//   read     every GET except secret values (and never token hashes)
//   jobs     read, plus submit, stop and revert jobs; with a job prefix, only jobs whose name
//            starts with it
//   secrets  read, plus everything under /v1/secrets and /v1/secret-keys
//   admin    everything: machines (drain, eligibility), routes, ACL tokens
// Every API route declares one Permission when it is registered (HttpServer::Route takes it),
// so a route without one does not compile. docs/acl.md has the table.
// Thread-safety: plain values and pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::acl {

enum class Policy { kRead, kJobs, kSecrets, kAdmin };

std::string_view PolicyName(Policy p);
// "read" | "jobs" | "secrets" | "admin"; InvalidArgument naming the choices otherwise.
Result<Policy> ParsePolicy(std::string_view name);

// What a route needs of its caller.
enum class Need {
  kNone,     // nothing: no token is read at all (the health probe, ACL bootstrap)
  kToken,    // any valid token, whatever its policy (GET /v1/acl/token/self)
  kRead,     // read, jobs, secrets or admin
  kJobs,     // jobs or admin
  kSecrets,  // secrets or admin
  kAdmin,
};
std::string_view NeedName(Need n);

struct Permission {
  Need need = Need::kAdmin;
  // For Need::kJobs: the route parameter (":name") holding the job the request changes; a token
  // with a job prefix may only change jobs whose name starts with it. Empty when the job's name
  // is only known from the body: the handler then checks Caller::MayChangeJob itself.
  std::string job_param;

  static Permission Public() { return {Need::kNone, {}}; }
  static Permission AnyToken() { return {Need::kToken, {}}; }
  static Permission Read() { return {Need::kRead, {}}; }
  // Changes the job named by route parameter `param` ("/v1/jobs/:name" -> "name").
  static Permission Jobs(std::string param) { return {Need::kJobs, std::move(param)}; }
  // Changes a job named in the body: the handler must call Caller::MayChangeJob.
  static Permission JobsNamedInBody() { return {Need::kJobs, {}}; }
  static Permission Secrets() { return {Need::kSecrets, {}}; }
  static Permission Admin() { return {Need::kAdmin, {}}; }

  bool operator==(const Permission&) const = default;
  // "read", "jobs (job from :name)", ... for logs, errors and the route table in docs.
  std::string Describe() const;
};

// Whether a policy grants a need (kNone and kToken: always).
bool Grants(Policy policy, Need need);

// Who a request comes from: the token's record without its hash. In dev mode without --acl
// every request is the anonymous caller, with the admin policy.
struct Caller {
  std::string accessor;  // "" for the anonymous dev-mode caller
  std::string name;
  Policy policy = Policy::kRead;
  std::string job_prefix;  // only for kJobs: "" = every job
  bool anonymous = false;

  bool Has(Need need) const { return Grants(policy, need); }
  // May this caller submit, stop or revert the job `name`? OkStatus, or PermissionDenied
  // naming the token and what it lacks.
  Status MayChangeJob(std::string_view job) const;
  // May this caller submit job `job` whose tasks receive the secret at `path`? Its tasks would
  // get the value, so it is the power to read it: admin may hand a job any secret, a jobs token
  // only those under the job's own name ("web/..." for job web), the job's namespace.
  Status MayGiveJobSecret(std::string_view job, std::string_view path) const;
  // "token \"ci\" (accessor 0123456789abcdef, policy jobs)" for errors and logs.
  std::string Describe() const;
};

}  // namespace berth::acl
