// What the CLI prints for people: padded tables, times and ages, and the allocation views
// (`berth alloc ls`, `berth alloc status`, the allocations of `berth job status`). Everything
// takes the API's JSON as it comes and tolerates missing fields ("-"), so an older or newer
// agent still prints something sensible.
// Thread-safety: plain functions; Table is a value.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"

namespace berth::cli {

// Prints a failed command's one line to stderr and returns its exit code (docs/cli.md): 1 a bad
// request, 3 the agent or its store cannot be reached, 4 not found, 5 the agent refused the
// token (401: none, unknown or revoked; 403: its policy does not allow this).
int ReportFailure(const Status& st);

// A plain text table: columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// A field as text: strings as they are, other values as JSON, `fallback` when absent or null.
std::string Str(const nlohmann::json& j, const char* key, const std::string& fallback = "-");
// A millisecond wall-clock field as "YYYY-MM-DD HH:MM:SS UTC"; "-" when absent or 0.
std::string FormatTime(const nlohmann::json& j, const char* key);
// How long ago `then_ms` was, as "42s", "5m", "3h", "2d"; "-" for 0 (never).
std::string FormatAge(int64_t now_ms, int64_t then_ms);

// Sum of the tasks' restart counts.
int64_t TotalRestarts(const nlohmann::json& alloc);
// The allocation table: ID, [JOB,] GROUP, MACHINE, STATE, DESIRED, HEALTH, RESTARTS, UPDATED.
void PrintAllocTable(const nlohmann::json& allocs, int64_t now_ms, bool with_job,
                     std::ostream& out);
// One allocation: its fields, a table of its tasks, then its recent events.
void PrintAllocStatus(const nlohmann::json& alloc, int64_t now_ms, std::ostream& out);

// The secrets section of `berth job status` / `berth alloc status`: a table TASK, PATH, TARGET
// of the references in `tasks` (task objects with "name", "driver" and "secrets", as in a job's
// spec or an allocation's status); nothing when no task lists secrets. References only: the
// API never has a value to show.
void PrintSecretRefs(const nlohmann::json& tasks, std::ostream& out);

}  // namespace berth::cli
