// LeaderElection: at most one agent at a time holds engine/leader, through a store lease (etcd
// in a cluster; no consensus of our own).
//
// Campaign: grant a lease of `ttl`, then put engine/leader under it if and only if the key is
// absent (one transaction). The winner's term is the revision of that put: it is the key's
// create revision, unique per leadership, and every write the engine makes while leading
// compares it (Fence()), so a deposed leader's late writes fail instead of placing twice.
// The leader keeps the lease alive every ttl/3 and checks the key is still its own; when the
// lease ends, the key changes hands or the store has not answered for a whole ttl, it steps
// down (on_lost) before anyone else can have been elected. Followers watch the key and
// campaign when it goes away (and every ttl/3 anyway, in case a watch event is missed), so a
// dead leader is replaced within its lease TTL. Stop() resigns: it deletes the key (if still
// its own) and revokes the lease, so a clean stop hands over at once.
// Thread-safety: Start/Stop from one thread; term()/leading() from any. Callbacks run on the
// election thread, one at a time, on_elected always before the matching on_lost.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "engine/records.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::engine {

class LeaderElection {
 public:
  struct Callbacks {
    std::function<void(int64_t term)> on_elected;
    std::function<void()> on_lost;
  };

  LeaderElection(store::Store& store, store::Keys keys, LeaderRecord me, std::chrono::seconds ttl,
                 ClockPtr clock);
  ~LeaderElection();

  void Start(Callbacks callbacks);
  // resign=false leaves the key and lease to expire, as a crash would (for tests).
  void Stop(bool resign = true);

  // The current term while leading, else 0.
  int64_t term() const { return term_.load(); }
  bool leading() const { return term_.load() != 0; }
  // The compare that fences a write to the store to this term.
  static store::Compare Fence(const store::Keys& keys, int64_t term);

 private:
  void Loop();
  bool Campaign();      // true when elected
  bool StillLeading();  // keep-alive and ownership check
  void StepDown(const char* why);
  void WatchLeaderKey();

  store::Store& store_;
  const store::Keys keys_;
  const LeaderRecord me_;
  const std::chrono::seconds ttl_;
  const ClockPtr clock_;
  Callbacks callbacks_;

  std::atomic<int64_t> term_{0};
  store::LeaseId lease_ = 0;
  TimePoint last_renewed_{};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool wake_ = false;
  store::WatchPtr watch_;
  std::atomic<bool> watch_failed_{false};  // made again by the next campaign
  std::thread thread_;
};

}  // namespace berth::engine
