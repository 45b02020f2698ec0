// MachineRegistry: announces this machine in the store (machines/<id>) under a lease and
// keeps the lease alive, so the record vanishes by itself when the agent dies.
//
// A background thread sends keep-alives every TTL/3. If the store is unreachable the agent
// keeps running and keeps trying; if the lease has ended meanwhile (the store expired it, or
// restarted) the machine registers again under a fresh lease. Stop(true) revokes the lease so
// the machine disappears at once; the agent stops with Stop(false): its tasks keep running, so
// the machine stays until the lease runs out (an agent restarted within the TTL keeps it).
// Thread-safety: Start/Stop from one thread; lease(), SetUsage() and Record() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/clock.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::agent {

struct MachineInfo {
  std::string id;
  std::string api_address;  // "127.0.0.1:4680"
  std::string hostname;
  std::string os;
  int cpus = 0;
  int64_t memory_bytes = 0;
  std::map<std::string, std::string> meta;
  std::string version;
  int64_t started_at_ms = 0;

  nlohmann::json ToJson() const;
  // Fills hostname, os, cpus and memory from the running system.
  static MachineInfo FromSystem();
};

// What the allocations on this machine reserve (the sum of their tasks' resources).
struct MachineUsage {
  int64_t cpu = 0;
  int64_t memory_bytes = 0;
  int allocs = 0;
  bool operator==(const MachineUsage&) const = default;
};

class MachineRegistry {
 public:
  MachineRegistry(store::Store& store, store::Keys keys, MachineInfo info,
                  std::chrono::seconds ttl);
  ~MachineRegistry();

  // Tries one registration now (its error is returned, e.g. the store is down) and starts the
  // keep-alive thread either way, which retries until it succeeds.
  Status Start();
  void Stop(bool revoke);
  // Called (on the registering thread) after every registration under a new lease: what else
  // the machine announces when the store is back (its secrets recipient key). Before Start.
  void OnRegistered(std::function<void()> callback) { on_registered_ = std::move(callback); }
  store::LeaseId lease() const { return lease_.load(); }
  const MachineInfo& info() const { return info_; }
  // Updates the record's used/free resources (written by the keep-alive thread, soon).
  void SetUsage(const MachineUsage& usage);
  // The machine record as stored: info plus resources {cpu, memory_bytes, used, free}. CPU is
  // counted in the job spec's units, 1000 per core.
  nlohmann::json Record() const;

 private:
  Status Register();
  void Loop();

  store::Store& store_;
  store::Keys keys_;
  MachineInfo info_;
  std::chrono::seconds ttl_;
  std::atomic<store::LeaseId> lease_{0};
  std::function<void()> on_registered_;  // set before Start, then only read
  mutable std::mutex mu_;                // guards stop_, usage_, usage_dirty_
  std::condition_variable cv_;
  bool stop_ = false;
  MachineUsage usage_;
  bool usage_dirty_ = false;
  std::thread thread_;
};

}  // namespace berth::agent
