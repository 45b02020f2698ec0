#include "acl/policy.h"

#include <fmt/format.h>

namespace berth::acl {

std::string_view PolicyName(Policy p) {
  switch (p) {
    case Policy::kRead:
      return "read";
    case Policy::kJobs:
      return "jobs";
    case Policy::kSecrets:
      return "secrets";
    case Policy::kAdmin:
      return "admin";
  }
  return "unknown";
}

Result<Policy> ParsePolicy(std::string_view name) {
  for (Policy p : {Policy::kRead, Policy::kJobs, Policy::kSecrets, Policy::kAdmin}) {
    if (name == PolicyName(p)) return p;
  }
  return InvalidArgument(
      fmt::format("policy \"{}\": expected read, jobs, secrets or admin", std::string(name)));
}

std::string_view NeedName(Need n) {
  switch (n) {
    case Need::kNone:
      return "none";
    case Need::kToken:
      return "token";
    case Need::kRead:
      return "read";
    case Need::kJobs:
      return "jobs";
    case Need::kSecrets:
      return "secrets";
    case Need::kAdmin:
      return "admin";
  }
  return "unknown";
}

std::string Permission::Describe() const {
  if (need == Need::kJobs) {
    return job_param.empty() ? "jobs (job named in the body)"
                             : fmt::format("jobs (job from :{})", job_param);
  }
  return std::string(NeedName(need));
}

bool Grants(Policy policy, Need need) {
  switch (need) {
    case Need::kNone:
    case Need::kToken:
    case Need::kRead:
      return true;
    case Need::kJobs:
      return policy == Policy::kJobs || policy == Policy::kAdmin;
    case Need::kSecrets:
      return policy == Policy::kSecrets || policy == Policy::kAdmin;
    case Need::kAdmin:
      return policy == Policy::kAdmin;
  }
  return false;
}

Status Caller::MayChangeJob(std::string_view job) const {
  if (!Has(Need::kJobs)) {
    return PermissionDenied(
        fmt::format("{} may not change jobs (that needs the jobs or admin policy)", Describe()));
  }
  if (!job_prefix.empty() && job.substr(0, job_prefix.size()) != job_prefix) {
    return PermissionDenied(
        fmt::format("{} may only change jobs whose name starts with \"{}\", "
                    "not \"{}\"",
                    Describe(), job_prefix, std::string(job)));
  }
  return Status::Ok();
}

Status Caller::MayGiveJobSecret(std::string_view job, std::string_view path) const {
  if (policy == Policy::kAdmin) return Status::Ok();
  if (path.size() > job.size() && path.substr(0, job.size()) == job && path[job.size()] == '/') {
    return Status::Ok();
  }
  return PermissionDenied(
      fmt::format("{} may not give job {} the secret {}: a job's tasks receive its values, so "
                  "outside the job's own secrets ({}/...) that needs the admin policy",
                  Describe(), std::string(job), std::string(path), std::string(job)));
}

std::string Caller::Describe() const {
  if (anonymous) return "the anonymous caller (dev mode without --acl)";
  return fmt::format("token \"{}\" (accessor {}, policy {})", name, accessor, PolicyName(policy));
}

}  // namespace berth::acl
