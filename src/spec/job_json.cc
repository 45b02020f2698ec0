#include "spec/job_json.h"

#include <cstdio>

#include "spec/document.h"
#include "spec/job_parser.h"

namespace berth::spec {
namespace {

using nlohmann::json;

// "0400": a string, since JSON has no octal numbers.
std::string FormatFileMode(int mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0%o", static_cast<unsigned>(mode));
  return buf;
}

json ConstraintsToJson(const std::vector<Constraint>& constraints) {
  json out = json::array();
  for (const Constraint& c : constraints) {
    json j = {{"operator", ConstraintOperatorName(c.op)}};
    if (!c.attribute.empty()) j["attribute"] = c.attribute;
    if (!c.value.empty()) j["value"] = c.value;
    out.push_back(std::move(j));
  }
  return out;
}

json PlacementToJson(const Placement& p) {
  json j = {{"strategy", p.strategy}, {"machine_of", p.machine_of}, {"conflicts", p.conflicts}};
  if (!p.spread_attribute.empty()) j["spread"] = p.spread_attribute;
  return j;
}

json TaskToJson(const Task& t) {
  json j = {
      {"name", t.name},
      {"driver", DriverKindName(t.driver)},
      {"args", t.args},
      {"env", t.env},
      {"resources", {{"cpu", t.resources.cpu}, {"memory", FormatSize(t.resources.memory_bytes)}}},
      {"constraints", ConstraintsToJson(t.constraints)},
      {"kill_timeout", FormatDuration(t.kill_timeout)},
      {"labels", t.labels},
  };
  if (!t.image.empty()) j["image"] = t.image;
  if (!t.command.empty()) j["command"] = t.command;
  if (!t.workdir.empty()) j["workdir"] = t.workdir;
  json ports = json::array();
  for (const Port& p : t.ports) {
    json pj = {{"name", p.name}};
    if (p.to != 0) pj["to"] = p.to;
    if (p.static_port != 0) pj["static"] = p.static_port;
    ports.push_back(std::move(pj));
  }
  j["ports"] = std::move(ports);
  if (t.health) {
    const HealthCheck& h = *t.health;
    json hj = {
        {"type", HealthCheckTypeName(h.type)},          {"interval", FormatDuration(h.interval)},
        {"timeout", FormatDuration(h.timeout)},         {"healthy_threshold", h.healthy_threshold},
        {"unhealthy_threshold", h.unhealthy_threshold},
    };
    if (!h.port.empty()) hj["port"] = h.port;
    if (!h.path.empty()) hj["path"] = h.path;
    if (!h.command.empty()) hj["command"] = h.command;
    j["health"] = std::move(hj);
  }
  if (t.route) {
    j["route"] = {
        {"hosts", t.route->hosts},
        {"port", t.route->port},
        {"path_prefix", t.route->path_prefix},
    };
  }
  json volumes = json::array();
  for (const Volume& v : t.volumes) {
    volumes.push_back({{"source", v.source}, {"target", v.target}, {"read_only", v.read_only}});
  }
  j["volumes"] = std::move(volumes);
  json secrets = json::array();
  for (const SecretRef& s : t.secrets) {
    json sj = {{"path", s.path}};
    if (!s.file.empty()) {
      sj["file"] = s.file;
      sj["mode"] = FormatFileMode(s.mode);
      if (s.uid >= 0) sj["uid"] = s.uid;
      if (s.gid >= 0) sj["gid"] = s.gid;
    }
    if (!s.env.empty()) sj["env"] = s.env;
    secrets.push_back(std::move(sj));
  }
  j["secrets"] = std::move(secrets);
  return j;
}

}  // namespace

json JobToJson(const Job& job) {
  json groups = json::array();
  for (const Group& g : job.groups) {
    json tasks = json::array();
    for (const Task& t : g.tasks) tasks.push_back(TaskToJson(t));
    groups.push_back({
        {"name", g.name},
        {"count", g.count},
        {"restart",
         {
             {"attempts", g.restart.attempts},
             {"interval", FormatDuration(g.restart.interval)},
             {"delay", FormatDuration(g.restart.delay)},
             {"max_delay", FormatDuration(g.restart.max_delay)},
             {"mode", RestartModeName(g.restart.mode)},
         }},
        {"constraints", ConstraintsToJson(g.constraints)},
        {"placement", PlacementToJson(g.placement)},
        {"tasks", std::move(tasks)},
    });
  }
  return {
      {"name", job.name},
      {"type", JobTypeName(job.type)},
      {"priority", job.priority},
      {"datacenters", job.datacenters},
      {"constraints", ConstraintsToJson(job.constraints)},
      {"update",
       {
           {"max_parallel", job.update.max_parallel},
           {"min_healthy_time", FormatDuration(job.update.min_healthy_time)},
           {"healthy_deadline", FormatDuration(job.update.healthy_deadline)},
           {"auto_revert", job.update.auto_revert},
       }},
      {"groups", std::move(groups)},
      {"version", job.version},
  };
}

Result<Job> JobFromJson(const json& value, std::string_view source) {
  BERTH_ASSIGN_OR_RETURN(DocNode root, DocumentFromJson(value, source));
  return DecodeJob(root, source);
}

Status ValidateJob(const Job& job, std::string_view source) {
  BERTH_ASSIGN_OR_RETURN(Job decoded, JobFromJson(JobToJson(job), source));
  if (!(decoded == job)) {
    return InvalidArgument(std::string(source) +
                           ": not in canonical form (a field is set that its context ignores, "
                           "or a default the parser would fill in is missing)");
  }
  return Status::Ok();
}

}  // namespace berth::spec
