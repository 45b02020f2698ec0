// Allocations: one instance of a job's task group placed on one machine, and what the agent of
// that machine observes about it.
//
//   allocs/<machine>/<id>  Allocation   written by whoever places work (the --dev placer now,
//                                       the cluster engine later); read by that machine's agent
//   status/<id>            AllocStatus  written only by the agent that runs the allocation
//
// An Allocation carries the whole job version it runs, so an agent needs nothing else from the
// store to run it (and a purged job's history does not strand its running allocations). The
// JSON forms are documented in docs/allocations.md; FromJson rejects anything malformed with an
// error that names the record and the field.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "spec/job.h"

namespace berth::runtime {

struct Allocation {
  std::string id;  // unique in the cluster: [a-z0-9-], at most 63 characters
  std::string job;
  std::string group;
  int index = 0;  // which of the group's `count` instances
  std::string machine;
  int64_t job_version = 0;
  spec::Job spec;  // the job version this allocation runs
  int64_t created_at_ms = 0;

  // The group this allocation runs, or nullptr when the spec has no group of that name.
  const spec::Group* FindGroup() const;
  nlohmann::json ToJson() const;
  static Result<Allocation> FromJson(const nlohmann::json& json, std::string_view source);
  bool operator==(const Allocation&) const = default;
};

// A fresh allocation id: "<job>-<group>-<index>-<8 random hex>", cut to 63 characters.
std::string NewAllocId(std::string_view job, std::string_view group, int index);

// Task and allocation states, as stored (lower-case names).
//   pending     not started yet (first start, or waiting for the engine/image to be there)
//   running     started and not exited
//   restarting  exited; will start again after a back-off delay
//   failed      exited (or could not start) and the restart policy gives up
//   complete    a batch task that exited 0
//   stopped     stopped because it is no longer wanted
//   lost        (allocations only) its machine died; set by the engine
enum class RunState { kPending, kRunning, kRestarting, kFailed, kComplete, kStopped, kLost };
std::string_view RunStateName(RunState s);
std::optional<RunState> RunStateFromName(std::string_view s);

struct TaskEvent {
  int64_t time_ms = 0;
  std::string task;  // empty for allocation-wide events
  std::string type;  // "started", "exited", "restarting", "failed", "start-error", "health", ...
  std::string message;
  bool operator==(const TaskEvent&) const = default;
};

struct TaskReport {
  std::string name;
  std::string driver;  // "docker" | "process"
  RunState state = RunState::kPending;
  std::string handle;  // the driver's handle id: container id, or "<pid>:<start time>"
  int pid = 0;         // 0 when unknown
  std::map<std::string, int> ports;  // port name -> host port
  std::string health;                // "" (no check), "unknown", "healthy", "unhealthy"
  std::string health_message;
  std::optional<int> exit_code;  // of the last exit; -1 when unknowable (re-adopted process)
  int restarts = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::string message;  // the last thing that happened, for people
  // The task's secret references (path and target), never their values: what `berth alloc
  // status` shows.
  std::vector<spec::SecretRef> secrets;
  bool operator==(const TaskReport&) const = default;
};

struct AllocStatus {
  static constexpr size_t kMaxEvents = 16;  // newest kept

  std::string id;
  std::string job;
  std::string group;
  int index = 0;
  std::string machine;
  int64_t job_version = 0;
  RunState state = RunState::kPending;
  std::string health;  // "" (no checks), "unknown", "healthy" (all), "unhealthy" (any)
  std::string message;
  std::vector<TaskReport> tasks;
  std::vector<TaskEvent> events;  // oldest first, at most kMaxEvents
  int64_t updated_at_ms = 0;

  // The status of an allocation its agent has not run yet: `pending`, one pending task report
  // (name, driver, and health "unknown" when checked) per task of its group.
  static AllocStatus Pending(const Allocation& alloc);
  // Appends an event, dropping the oldest beyond kMaxEvents.
  void AddEvent(TaskEvent event);
  // Recomputes `state` and `health` from the tasks: failed if any task failed; else running if
  // every task runs; else restarting if any restarts; else complete if all completed; stopped
  // if all stopped (or complete); else pending.
  void Summarize();
  nlohmann::json ToJson() const;
  static Result<AllocStatus> FromJson(const nlohmann::json& json, std::string_view source);
  bool operator==(const AllocStatus&) const = default;
};

}  // namespace berth::runtime
