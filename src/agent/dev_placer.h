// DevPlacer: the stand-in for the cluster scheduler in `berth agent --dev`: it places every
// instance of every running job on this agent's own machine, by writing allocs/<machine>/<id>.
//
// For each job whose status is "running", each group gets `count` instances (one for a system
// job), indexed 0..count-1. An instance whose allocation runs a different version of its group
// (anything in the group changed) is replaced: the old allocation is deleted and a new one
// written, in one transaction. Instances beyond the count, and every allocation of a stopped or
// purged job, are deleted; the local reconciler then stops their tasks. There is no rolling
// update, no resource check and no constraint: that is the engine's work (a later part), which
// replaces this class and writes the same records.
// Thread-safety: Start/Stop from the owning thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "store/keys.h"
#include "store/prefix_watcher.h"
#include "store/store.h"

namespace berth::agent {

class DevPlacer {
 public:
  DevPlacer(store::Store& store, store::Keys keys, std::string machine_id, ClockPtr clock);
  ~DevPlacer();

  void Start();
  void Stop();
  // One pass: reads jobs and this machine's allocations, writes the difference.
  Status PlaceOnce();

 private:
  store::Store& store_;
  const store::Keys keys_;
  const std::string machine_id_;
  const ClockPtr clock_;
  std::mutex mu_;  // one pass at a time
  std::unique_ptr<store::PrefixWatcher> watcher_;
};

}  // namespace berth::agent
