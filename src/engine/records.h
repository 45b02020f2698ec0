// Records the cluster engine reads and writes besides jobs and allocations (the JSON forms are
// documented in docs/store-layout.md):
//
//   engine/leader        LeaderRecord    the engine leader; hangs on the leader's lease
//   machine-admin/<id>   MachineAdmin    an operator's settings for a machine (drain, eligible)
//   deployments/<job>    Deployment      rollout of the job's current version and placement
//                                        explanations, written by the engine leader
//
// FromJson rejects anything malformed with an error that names the field.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::engine {

struct LeaderRecord {
  std::string machine;  // the leading agent's machine id
  std::string address;  // its API address
  int64_t since_ms = 0;
  nlohmann::json ToJson() const;
  static Result<LeaderRecord> FromJson(const nlohmann::json& j);
  bool operator==(const LeaderRecord&) const = default;
};

// Absent record = eligible, not draining.
struct MachineAdmin {
  bool eligible = true;  // false: takes no new allocations; existing ones stay
  bool drain = false;    // true: takes no new allocations, and its allocations move elsewhere
  int64_t updated_at_ms = 0;
  bool TakesWork() const { return eligible && !drain; }
  nlohmann::json ToJson() const;
  static Result<MachineAdmin> FromJson(const nlohmann::json& j);
  bool operator==(const MachineAdmin&) const = default;
};

// Per task group: how many instances are wanted, placed, healthy, and why some could not be
// placed ("0 of 3 machines: 2 lacked memory, 1 is ineligible"; empty when all are placed).
struct GroupProgress {
  int desired = 0;
  int placed = 0;   // allocations of the current version
  int healthy = 0;  // of those, running and healthy for min_healthy_time
  int unplaced = 0;
  std::string explanation;
  bool operator==(const GroupProgress&) const = default;
};

enum class DeploymentState { kRunning, kSuccessful, kFailed };
std::string_view DeploymentStateName(DeploymentState s);

struct Deployment {
  std::string job;
  int64_t version = 0;  // the job version being rolled out
  DeploymentState state = DeploymentState::kRunning;
  std::string message;         // why it failed, or what it waits for
  int64_t stable_version = 0;  // the newest version whose deployment succeeded (0: none yet)
  int64_t reverted_from = 0;   // set when auto_revert submitted this version to undo that one
  int64_t started_at_ms = 0;
  int64_t updated_at_ms = 0;
  std::map<std::string, GroupProgress> groups;
  // New-version allocation id -> when the engine first saw it running and healthy (engine clock,
  // wall ms); for min_healthy_time across leader changes.
  std::map<std::string, int64_t> healthy_since_ms;

  nlohmann::json ToJson() const;
  static Result<Deployment> FromJson(const nlohmann::json& j);
  // Equal apart from updated_at_ms (the engine writes only real changes).
  bool SameAs(const Deployment& other) const;
  bool operator==(const Deployment&) const = default;
};

}  // namespace berth::engine
