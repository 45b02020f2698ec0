// The stored JSON form of a job: what the registry writes under jobs/<name> and the API
// returns. It is the job file schema itself (docs/jobspec.md), fully spelled out: every field
// with its default, durations as strings ("10s"), sizes as strings in the largest exact unit
// ("64MiB"), the optional health and route blocks only when present, empty strings and zero
// ports left out. So a stored job is also a valid job file, and
//   JobFromJson(JobToJson(job)) == job
// for every job that passes validation.
// Thread-safety: free functions without shared state; safe to call concurrently.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "spec/job.h"

namespace berth::spec {

// Never throws (the json is built from validated strings, all valid UTF-8).
nlohmann::json JobToJson(const Job& job);

// Decodes and validates with the same rules as ParseJobJson; `source` labels error messages
// (e.g. the store key). Never throws.
Result<Job> JobFromJson(const nlohmann::json& json, std::string_view source = "job");

// Checks a job built in code (the fleet and compose translators, tests) against the rules the
// parsers apply, and that it is in canonical form (e.g. no `path` on a tcp health check), so it
// survives the stored form unchanged. `source` labels error messages.
Status ValidateJob(const Job& job, std::string_view source = "job");

}  // namespace berth::spec
