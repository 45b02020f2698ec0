// Keys: where each kind of record lives in the store, under a configurable prefix
// (default "/berth/"). The layout is written down in docs/store-layout.md.
// Thread-safety: immutable after construction.
#pragma once

#include <string>
#include <string_view>

namespace berth::store {

class Keys {
 public:
  explicit Keys(std::string prefix = "/berth/");

  const std::string& prefix() const { return prefix_; }
  std::string Machines() const { return prefix_ + "machines/"; }
  std::string Machine(std::string_view id) const { return Machines() + std::string(id); }
  std::string Jobs() const { return prefix_ + "jobs/"; }
  std::string Job(std::string_view name) const { return Jobs() + std::string(name); }
  // Every submitted version of a job: job-versions/<name>/<version, zero-padded>.
  std::string JobVersions(std::string_view name) const {
    return prefix_ + "job-versions/" + std::string(name) + "/";
  }
  std::string JobVersion(std::string_view name, int64_t version) const;
  std::string Allocs() const { return prefix_ + "allocs/"; }
  // allocs/<machine>/<id>: what a machine is asked to run.
  std::string MachineAllocs(std::string_view machine) const {
    return Allocs() + std::string(machine) + "/";
  }
  std::string Alloc(std::string_view machine, std::string_view id) const {
    return MachineAllocs(machine) + std::string(id);
  }
  std::string Status() const { return prefix_ + "status/"; }
  // status/<id>: what the agent running allocation <id> observes.
  std::string AllocStatus(std::string_view id) const { return Status() + std::string(id); }
  std::string Routes() const { return prefix_ + "routes/"; }
  std::string Secrets() const { return prefix_ + "secrets/"; }
  std::string EngineLeader() const { return prefix_ + "engine/leader"; }
  std::string Locks() const { return prefix_ + "locks/"; }

 private:
  std::string prefix_;
};

}  // namespace berth::store
