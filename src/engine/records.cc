#include "engine/records.h"

#include <fmt/format.h>

namespace berth::engine {

namespace {

// Typed field readers: a missing optional field keeps `out`; a present field of the wrong type
// is an error naming it.
Status ReadString(const nlohmann::json& j, std::string_view what, const char* field,
                  std::string& out, bool required = false) {
  auto it = j.find(field);
  if (it == j.end()) {
    if (required) return InvalidArgument(fmt::format("{}: missing field \"{}\"", what, field));
    return Status::Ok();
  }
  if (!it->is_string()) {
    return InvalidArgument(fmt::format("{}: field \"{}\" must be a string", what, field));
  }
  out = it->get<std::string>();
  return Status::Ok();
}

template <typename Int>
Status ReadInt(const nlohmann::json& j, std::string_view what, const char* field, Int& out) {
  auto it = j.find(field);
  if (it == j.end()) return Status::Ok();
  if (!it->is_number_integer()) {
    return InvalidArgument(fmt::format("{}: field \"{}\" must be an integer", what, field));
  }
  out = it->get<Int>();
  return Status::Ok();
}

Status ReadBool(const nlohmann::json& j, std::string_view what, const char* field, bool& out) {
  auto it = j.find(field);
  if (it == j.end()) return Status::Ok();
  if (!it->is_boolean()) {
    return InvalidArgument(fmt::format("{}: field \"{}\" must be true or false", what, field));
  }
  out = it->get<bool>();
  return Status::Ok();
}

Status RequireObject(const nlohmann::json& j, std::string_view what) {
  if (!j.is_object()) return InvalidArgument(fmt::format("{}: not a JSON object", what));
  return Status::Ok();
}

}  // namespace

nlohmann::json LeaderRecord::ToJson() const {
  return {{"machine", machine}, {"address", address}, {"since", since_ms}};
}

Result<LeaderRecord> LeaderRecord::FromJson(const nlohmann::json& j) {
  constexpr std::string_view kWhat = "engine leader record";
  BERTH_RETURN_IF_ERROR(RequireObject(j, kWhat));
  LeaderRecord r;
  BERTH_RETURN_IF_ERROR(ReadString(j, kWhat, "machine", r.machine, /*required=*/true));
  BERTH_RETURN_IF_ERROR(ReadString(j, kWhat, "address", r.address));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "since", r.since_ms));
  return r;
}

nlohmann::json MachineAdmin::ToJson() const {
  return {{"eligible", eligible}, {"drain", drain}, {"updated_at", updated_at_ms}};
}

Result<MachineAdmin> MachineAdmin::FromJson(const nlohmann::json& j) {
  constexpr std::string_view kWhat = "machine admin record";
  BERTH_RETURN_IF_ERROR(RequireObject(j, kWhat));
  MachineAdmin a;
  BERTH_RETURN_IF_ERROR(ReadBool(j, kWhat, "eligible", a.eligible));
  BERTH_RETURN_IF_ERROR(ReadBool(j, kWhat, "drain", a.drain));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "updated_at", a.updated_at_ms));
  return a;
}

std::string_view DeploymentStateName(DeploymentState s) {
  switch (s) {
    case DeploymentState::kRunning:
      return "running";
    case DeploymentState::kSuccessful:
      return "successful";
    case DeploymentState::kFailed:
      return "failed";
  }
  return "running";
}

nlohmann::json Deployment::ToJson() const {
  nlohmann::json g = nlohmann::json::object();
  for (const auto& [name, p] : groups) {
    g[name] = {{"desired", p.desired},
               {"placed", p.placed},
               {"healthy", p.healthy},
               {"unplaced", p.unplaced},
               {"explanation", p.explanation}};
  }
  nlohmann::json h = nlohmann::json::object();
  for (const auto& [id, t] : healthy_since_ms) h[id] = t;
  return {{"job", job},
          {"version", version},
          {"state", DeploymentStateName(state)},
          {"message", message},
          {"stable_version", stable_version},
          {"reverted_from", reverted_from},
          {"started_at", started_at_ms},
          {"updated_at", updated_at_ms},
          {"groups", std::move(g)},
          {"healthy_since", std::move(h)}};
}

Result<Deployment> Deployment::FromJson(const nlohmann::json& j) {
  constexpr std::string_view kWhat = "deployment record";
  BERTH_RETURN_IF_ERROR(RequireObject(j, kWhat));
  Deployment d;
  BERTH_RETURN_IF_ERROR(ReadString(j, kWhat, "job", d.job, /*required=*/true));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "version", d.version));
  std::string state = "running";
  BERTH_RETURN_IF_ERROR(ReadString(j, kWhat, "state", state));
  if (state == "running") {
    d.state = DeploymentState::kRunning;
  } else if (state == "successful") {
    d.state = DeploymentState::kSuccessful;
  } else if (state == "failed") {
    d.state = DeploymentState::kFailed;
  } else {
    return InvalidArgument(fmt::format("{}: unknown state \"{}\"", kWhat, state));
  }
  BERTH_RETURN_IF_ERROR(ReadString(j, kWhat, "message", d.message));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "stable_version", d.stable_version));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "reverted_from", d.reverted_from));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "started_at", d.started_at_ms));
  BERTH_RETURN_IF_ERROR(ReadInt(j, kWhat, "updated_at", d.updated_at_ms));
  if (auto it = j.find("groups"); it != j.end()) {
    if (!it->is_object())
      return InvalidArgument(fmt::format("{}: \"groups\" must be an object", kWhat));
    for (const auto& [name, gj] : it->items()) {
      std::string what = fmt::format("{}: group \"{}\"", kWhat, name);
      BERTH_RETURN_IF_ERROR(RequireObject(gj, what));
      GroupProgress p;
      BERTH_RETURN_IF_ERROR(ReadInt(gj, what, "desired", p.desired));
      BERTH_RETURN_IF_ERROR(ReadInt(gj, what, "placed", p.placed));
      BERTH_RETURN_IF_ERROR(ReadInt(gj, what, "healthy", p.healthy));
      BERTH_RETURN_IF_ERROR(ReadInt(gj, what, "unplaced", p.unplaced));
      BERTH_RETURN_IF_ERROR(ReadString(gj, what, "explanation", p.explanation));
      d.groups[name] = std::move(p);
    }
  }
  if (auto it = j.find("healthy_since"); it != j.end()) {
    if (!it->is_object()) {
      return InvalidArgument(fmt::format("{}: \"healthy_since\" must be an object", kWhat));
    }
    for (const auto& [id, t] : it->items()) {
      if (!t.is_number_integer()) {
        return InvalidArgument(
            fmt::format("{}: healthy_since \"{}\" must be an integer", kWhat, id));
      }
      d.healthy_since_ms[id] = t.get<int64_t>();
    }
  }
  return d;
}

bool Deployment::SameAs(const Deployment& other) const {
  Deployment a = *this;
  a.updated_at_ms = other.updated_at_ms;
  return a == other;
}

}  // namespace berth::engine
