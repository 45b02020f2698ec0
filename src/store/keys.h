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
  // secrets/<path>: one sealed value (docs/secrets.md), path "db/password".
  std::string Secrets() const { return prefix_ + "secrets/"; }
  std::string Secret(std::string_view path) const { return Secrets() + std::string(path); }
  // secret-keys/<name>: a recipient's public keys (machines are "machine:<id>").
  std::string SecretKeys() const { return prefix_ + "secret-keys/"; }
  std::string SecretKey(std::string_view name) const { return SecretKeys() + std::string(name); }
  // acl/tokens/<accessor>: an API token (hashed) and its policy; acl/bootstrap: set once.
  std::string AclTokens() const { return prefix_ + "acl/tokens/"; }
  std::string AclToken(std::string_view accessor) const {
    return AclTokens() + std::string(accessor);
  }
  std::string AclBootstrap() const { return prefix_ + "acl/bootstrap"; }
  std::string EngineLeader() const { return prefix_ + "engine/leader"; }
  // machine-admin/<id>: an operator's settings for a machine (eligible, drain); not leased, so
  // they outlive the agent.
  std::string MachineAdmins() const { return prefix_ + "machine-admin/"; }
  std::string MachineAdmin(std::string_view id) const { return MachineAdmins() + std::string(id); }
  // deployments/<job>: the engine's progress rolling out the job's current version, and why
  // instances could not be placed.
  std::string Deployments() const { return prefix_ + "deployments/"; }
  std::string Deployment(std::string_view job) const { return Deployments() + std::string(job); }
  std::string Locks() const { return prefix_ + "locks/"; }

 private:
  std::string prefix_;
};

}  // namespace berth::store
