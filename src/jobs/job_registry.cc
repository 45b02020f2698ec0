#include "jobs/job_registry.h"

#include <fmt/format.h>

#include "spec/job_json.h"

namespace berth::jobs {

namespace {
constexpr int kMaxAttempts = 16;  // compare-and-swap retries under contention

Result<JobRecord> Decode(const store::KeyValue& kv) {
  nlohmann::json j = nlohmann::json::parse(kv.value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Internal(fmt::format("corrupt job record at {}: not JSON", kv.key));
  auto rec = JobRecord::FromJson(j);
  if (!rec.ok()) return rec.status().Annotate(fmt::format("corrupt job record at {}", kv.key));
  rec->mod_revision = kv.mod_revision;
  return rec;
}
}  // namespace

Status ValidateJobName(std::string_view name) {
  auto ok_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  };
  if (name.empty() || name.size() > 63 || name[0] == '-' ||
      !std::all_of(name.begin(), name.end(), ok_char)) {
    return InvalidArgument(fmt::format(
        "invalid job name \"{}\": use 1-63 of a-z, 0-9 and '-', not starting with '-'", name));
  }
  return Status::Ok();
}

nlohmann::json JobRecord::ToJson() const {
  return {{"name", name},
          {"version", version},
          {"status", status},
          {"submitted_at", submitted_at_ms},
          {"spec", spec}};
}

Result<JobRecord> JobRecord::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgument("job record is not an object");
  JobRecord r;
  auto need = [&](const char* field, nlohmann::json::value_t t) -> Status {
    auto it = j.find(field);
    if (it == j.end() || it->type() != t) {
      return InvalidArgument(fmt::format("field \"{}\" missing or of the wrong type", field));
    }
    return Status::Ok();
  };
  BERTH_RETURN_IF_ERROR(need("name", nlohmann::json::value_t::string));
  BERTH_RETURN_IF_ERROR(need("status", nlohmann::json::value_t::string));
  BERTH_RETURN_IF_ERROR(need("spec", nlohmann::json::value_t::object));
  if (!j.contains("version") || !j["version"].is_number_integer()) {
    return InvalidArgument("field \"version\" missing or not an integer");
  }
  r.name = j["name"].get<std::string>();
  r.version = j["version"].get<int64_t>();
  r.status = j["status"].get<std::string>();
  r.submitted_at_ms = j.value("submitted_at", int64_t{0});
  r.spec = j["spec"];
  return r;
}

JobRegistry::JobRegistry(store::Store& store, store::Keys keys, ClockPtr clock)
    : store_(store), keys_(std::move(keys)), clock_(std::move(clock)) {}

Result<std::optional<JobRecord>> JobRegistry::Current(std::string_view name) {
  BERTH_ASSIGN_OR_RETURN(auto kv, store_.Get(keys_.Job(name)));
  if (!kv) return std::optional<JobRecord>();
  BERTH_ASSIGN_OR_RETURN(auto rec, Decode(*kv));
  return std::optional<JobRecord>(std::move(rec));
}

Result<bool> JobRegistry::WriteVersion(const JobRecord& next, int64_t expected_mod_revision) {
  std::string value = next.ToJson().dump();
  std::vector<store::Compare> cmp = {
      store::Compare::ModRevisionEquals(keys_.Job(next.name), expected_mod_revision)};
  std::vector<store::TxnOp> ops = {
      store::TxnOp::Put(keys_.Job(next.name), value),
      store::TxnOp::Put(keys_.JobVersion(next.name, next.version), value)};
  BERTH_ASSIGN_OR_RETURN(auto res, store_.Txn(cmp, ops));
  return res.succeeded;
}

Result<SubmitResult> JobRegistry::Submit(const spec::Job& job) {
  BERTH_RETURN_IF_ERROR(ValidateJobName(job.name));
  nlohmann::json spec_json = spec::JobToJson(job);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    BERTH_ASSIGN_OR_RETURN(auto cur, Current(job.name));
    if (cur && cur->status == "running" && cur->spec == spec_json) {
      return SubmitResult{job.name, cur->version, false};
    }
    JobRecord next;
    next.name = job.name;
    next.version = cur ? cur->version + 1 : 1;
    next.status = "running";
    next.submitted_at_ms = clock_->WallMillis();
    next.spec = spec_json;
    BERTH_ASSIGN_OR_RETURN(bool written, WriteVersion(next, cur ? cur->mod_revision : 0));
    if (written) return SubmitResult{job.name, next.version, true};
  }
  return Unavailable(fmt::format("job {}: too much contention, gave up after {} attempts", job.name,
                                 kMaxAttempts));
}

Result<std::vector<JobRecord>> JobRegistry::List() {
  BERTH_ASSIGN_OR_RETURN(auto range, store_.Range(keys_.Jobs()));
  std::vector<JobRecord> out;
  out.reserve(range.kvs.size());
  for (const auto& kv : range.kvs) {
    BERTH_ASSIGN_OR_RETURN(auto rec, Decode(kv));
    out.push_back(std::move(rec));
  }
  return out;
}

Result<JobRecord> JobRegistry::Get(std::string_view name) {
  BERTH_RETURN_IF_ERROR(ValidateJobName(name));
  BERTH_ASSIGN_OR_RETURN(auto cur, Current(name));
  if (!cur) return NotFound(fmt::format("job {} not found", name));
  return std::move(*cur);
}

Result<std::vector<JobRecord>> JobRegistry::History(std::string_view name) {
  BERTH_RETURN_IF_ERROR(ValidateJobName(name));
  BERTH_ASSIGN_OR_RETURN(auto range, store_.Range(keys_.JobVersions(name)));
  if (range.kvs.empty()) return NotFound(fmt::format("job {} not found", name));
  std::vector<JobRecord> out;
  for (const auto& kv : range.kvs) {
    BERTH_ASSIGN_OR_RETURN(auto rec, Decode(kv));
    out.push_back(std::move(rec));
  }
  return out;
}

Result<JobRecord> JobRegistry::Stop(std::string_view name) {
  BERTH_RETURN_IF_ERROR(ValidateJobName(name));
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    BERTH_ASSIGN_OR_RETURN(auto cur, Current(name));
    if (!cur) return NotFound(fmt::format("job {} not found", name));
    if (cur->status == "stopped") return std::move(*cur);
    JobRecord next = *cur;
    next.version = cur->version + 1;
    next.status = "stopped";
    next.submitted_at_ms = clock_->WallMillis();
    BERTH_ASSIGN_OR_RETURN(bool written, WriteVersion(next, cur->mod_revision));
    if (written) return next;
  }
  return Unavailable(fmt::format("job {}: too much contention, gave up", name));
}

Result<SubmitResult> JobRegistry::Revert(std::string_view name, int64_t version) {
  BERTH_RETURN_IF_ERROR(ValidateJobName(name));
  if (version < 1) {
    return InvalidArgument(
        fmt::format("job {}: version must be at least 1, got {}", name, version));
  }
  const std::string key = keys_.JobVersion(name, version);
  BERTH_ASSIGN_OR_RETURN(auto kv, store_.Get(key));
  if (!kv) {
    BERTH_ASSIGN_OR_RETURN(auto cur, Current(name));
    if (!cur) return NotFound(fmt::format("job {} not found", name));
    return NotFound(fmt::format("job {} has no version {} (its versions are 1 to {})", name,
                                version, cur->version));
  }
  BERTH_ASSIGN_OR_RETURN(auto rec, Decode(*kv));
  // Decoding re-validates the old spec and brings it to today's canonical form.
  auto job = spec::JobFromJson(rec.spec, key);
  if (!job.ok()) return Internal(fmt::format("cannot revert: {}", job.status().message()));
  if (job->name != name) {
    return Internal(fmt::format("cannot revert: {} holds a spec of job \"{}\"", key, job->name));
  }
  return Submit(*job);
}

Status JobRegistry::Purge(std::string_view name) {
  BERTH_RETURN_IF_ERROR(ValidateJobName(name));
  BERTH_ASSIGN_OR_RETURN(auto cur, Current(name));
  if (!cur) return NotFound(fmt::format("job {} not found", name));
  BERTH_ASSIGN_OR_RETURN(
      auto res, store_.Txn({store::Compare::ModRevisionEquals(keys_.Job(name), cur->mod_revision)},
                           {store::TxnOp::Delete(keys_.Job(name)),
                            store::TxnOp::DeletePrefix(keys_.JobVersions(name))}));
  if (!res.succeeded)
    return FailedPrecondition(fmt::format("job {} changed while purging; retry", name));
  return Status::Ok();
}

}  // namespace berth::jobs
