// JobRegistry: the desired state of jobs in the store, one versioned record per job.
//
// Every submission that changes a job writes a new version: the current record at
// jobs/<name> and a copy at job-versions/<name>/<version>, in one compare-and-swap
// transaction against the current record's mod revision, so concurrent writers never
// interleave, nothing is half-written, and a lost race is retried on fresh state. Submitting
// a spec identical to the running version writes nothing. Stopping writes a new version with
// status "stopped"; purging deletes the job and its history in one transaction. Reverting
// submits the spec of an earlier version again, as a new version: history only grows.
// Records read back from the store are validated: a corrupt record is an error that names
// its key, never a crash.
// Thread-safety: thread-safe (all state is in the store).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "spec/job.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::jobs {

struct JobRecord {
  std::string name;
  int64_t version = 0;
  std::string status;  // "running" or "stopped"
  int64_t submitted_at_ms = 0;
  nlohmann::json spec;       // spec::JobToJson form
  int64_t mod_revision = 0;  // of the record in the store

  nlohmann::json ToJson() const;
  static Result<JobRecord> FromJson(const nlohmann::json& j);
};

struct SubmitResult {
  std::string name;
  int64_t version = 0;
  bool changed = false;  // false: identical to the current version, nothing written
};

class JobRegistry {
 public:
  JobRegistry(store::Store& store, store::Keys keys, ClockPtr clock);

  Result<SubmitResult> Submit(const spec::Job& job);
  Result<std::vector<JobRecord>> List();
  Result<JobRecord> Get(std::string_view name);
  // Every stored version, oldest first.
  Result<std::vector<JobRecord>> History(std::string_view name);
  Result<JobRecord> Stop(std::string_view name);
  // Submits the spec stored with `version` as a new version (status running), exactly as
  // Submit would: unchanged (nothing written) when the job already runs that spec. NotFound
  // naming the version when the job has no such version.
  Result<SubmitResult> Revert(std::string_view name, int64_t version);
  Status Purge(std::string_view name);

 private:
  Result<std::optional<JobRecord>> Current(std::string_view name);
  // Writes `next` (and its history copy) if jobs/<name> still has `expected_mod_revision`.
  Result<bool> WriteVersion(const JobRecord& next, int64_t expected_mod_revision);

  store::Store& store_;
  store::Keys keys_;
  ClockPtr clock_;
};

// Job names are used in store keys and URLs: [a-z0-9][a-z0-9-]{0,62}.
Status ValidateJobName(std::string_view name);

}  // namespace berth::jobs
