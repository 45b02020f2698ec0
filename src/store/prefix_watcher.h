// PrefixWatcher: keeps a reader current with every key under a prefix, the way DESIGN.md asks
// every watcher to: list, then watch from the listing's revision + 1; when the watch fails (the
// store went away, or the revision was compacted) list again — after a back-off — and go on.
//
// Callbacks run on the watcher's own thread, one at a time, never on the store's delivery
// thread, so they may block on the store or take locks. on_list delivers a full snapshot (the
// reader replaces its view with it); on_events delivers changes after the last snapshot or
// batch, in revision order. on_error reports each failure (the watcher keeps retrying).
// Thread-safety: Start/Stop from the owning thread; callbacks run on the watcher's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "store/store.h"

namespace berth::store {

class PrefixWatcher {
 public:
  struct Callbacks {
    std::function<void(const RangeResult& listing)> on_list;
    std::function<void(const std::vector<Event>& events)> on_events;
    std::function<void(const Status& error)> on_error;  // optional
  };
  struct Options {
    std::chrono::milliseconds min_backoff{100};
    std::chrono::milliseconds max_backoff{5000};
  };

  PrefixWatcher(Store& store, std::string prefix, Callbacks callbacks);
  PrefixWatcher(Store& store, std::string prefix, Callbacks callbacks, Options options);
  ~PrefixWatcher();
  PrefixWatcher(const PrefixWatcher&) = delete;
  PrefixWatcher& operator=(const PrefixWatcher&) = delete;

  void Start();
  // Cancels the watch and joins the thread; no callback runs after Stop returns.
  void Stop();
  // Makes the watcher list again now (e.g. the reader suspects it missed something).
  void Relist();

 private:
  void Loop();
  // Waits up to `d` or until stopping/relist; returns false when stopping.
  bool Sleep(std::chrono::milliseconds d);

  Store& store_;
  const std::string prefix_;
  const Callbacks callbacks_;
  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;            // guarded by mu_
  bool relist_ = false;              // guarded by mu_
  std::deque<WatchResponse> queue_;  // guarded by mu_: delivered by the store, not yet handled
  std::thread thread_;
};

}  // namespace berth::store
