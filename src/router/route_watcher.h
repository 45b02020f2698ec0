// RouteWatcher: keeps a RouteTableHolder current with the store's routes/ keys.
//
// It lists routes/, publishes a snapshot, then watches from the listing's revision + 1 and
// publishes a new snapshot per batch of events, built by applying the events to the previous
// snapshot (no re-listing, only the touched hosts rebuilt). When the watch fails (the store is
// unreachable, the revision was compacted) store::PrefixWatcher lists again after a back-off;
// until then, and for as long as the store stays away, the last good table keeps serving.
// Thread-safety: Start/Stop from the owning thread; stats() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "router/route_table.h"
#include "store/prefix_watcher.h"
#include "store/store.h"

namespace berth::router {

class RouteWatcher {
 public:
  struct Stats {
    uint64_t listings = 0;  // full snapshots from a listing
    uint64_t updates = 0;   // snapshots from watch events
    uint64_t errors = 0;    // failed listings or watches
    uint64_t rejected = 0;  // malformed route keys skipped
    int64_t revision = 0;   // store revision of the current table
  };

  // `key_prefix`: berth's store prefix ("/berth/"); routes live under <key_prefix>routes/.
  RouteWatcher(store::Store& store, const std::string& key_prefix, RouteTableHolder& holder,
               std::string default_backend = "",
               store::PrefixWatcher::Options options = store::PrefixWatcher::Options());
  ~RouteWatcher();
  RouteWatcher(const RouteWatcher&) = delete;
  RouteWatcher& operator=(const RouteWatcher&) = delete;

  void Start();
  void Stop();
  // Waits until the first listing is published; false on timeout.
  bool WaitReady(std::chrono::milliseconds timeout);
  Stats stats() const;

 private:
  void Published(const RouteTablePtr& table, bool listing);

  RouteTableHolder& holder_;
  RouteTableBuilder builder_;  // used on the watcher's thread only
  std::unique_ptr<store::PrefixWatcher> watcher_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Stats stats_;  // guarded by mu_
};

}  // namespace berth::router
