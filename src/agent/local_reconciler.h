// LocalReconciler: makes this machine run what the store says it should. It watches
// allocs/<machine>/ (list, then watch from the listing's revision), keeps one AllocRunner per
// allocation, stops the runners of allocations that went away, and deletes their status once
// their tasks are stopped.
//
// At Start it asks every driver for the tasks it still knows (containers by label, processes by
// state file) and hands them to the runners of their allocations: after an agent restart,
// including a SIGKILL, nothing is duplicated and nothing running is restarted. Tasks whose
// allocation is no longer wanted are stopped and removed once the first listing succeeds
// (never before: an agent that cannot reach the store keeps running what it runs). A driver that
// could not be listed at Start (engine down) is asked again before each first start of one of
// its tasks, until it answers.
//
// Secrets: runners open their tasks' secrets through `secrets` and write file targets to
// `secrets_dir` (alloc_runner.h). Once the first listing succeeded, the secret directories of
// allocations this machine no longer has (left by an agent that died) are removed. A watch on
// secrets/ wakes the runners whose tasks use a secret that was just set, so a task waiting for
// it starts without waiting out its back-off.
//
// Stop() detaches the runners: tasks keep running for the next agent to re-adopt.
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/alloc_runner.h"
#include "agent/route_publisher.h"
#include "common/clock.h"
#include "driver/driver.h"
#include "runtime/alloc.h"
#include "runtime/port_allocator.h"
#include "store/keys.h"
#include "store/prefix_watcher.h"
#include "store/store.h"

namespace berth::agent {

class LocalReconciler {
 public:
  struct Options {
    std::string machine_id;
    std::string alloc_root;  // per-allocation directories (task dirs, process logs)
    std::string check_host = "127.0.0.1";
    std::chrono::milliseconds poll_interval{1000};
    int max_parallel_starts = 4;  // driver starts in flight at once (0: no bound)
    // Called (from the watcher thread) with the resources the allocations here reserve, each
    // time the set of allocations changes.
    std::function<void(int64_t cpu, int64_t memory_bytes, int allocs)> on_usage;
    // Keeps the routes of routed tasks in the store (optional).
    RoutePublisher* routes = nullptr;
    // Opens task secrets, and where their files go (optional: without them, tasks that list
    // secrets wait with a clear status).
    secrets::SecretSourcePtr secrets;
    std::shared_ptr<SecretsDir> secrets_dir;
  };

  LocalReconciler(store::Store& store, store::Keys keys,
                  std::map<spec::DriverKind, driver::Driver*> drivers,
                  runtime::PortAllocator& ports, ClockPtr clock, Options options);
  ~LocalReconciler();

  void Start();
  void Stop();

  // Streams the logs of `task` of allocation `alloc_id` (which must run here).
  Status Logs(const std::string& alloc_id, const std::string& task,
              const driver::LogOptions& options, const std::function<bool(std::string_view)>& sink);
  // The statuses of every allocation this agent runs now.
  std::vector<runtime::AllocStatus> Statuses() const;
  size_t runner_count() const;

 private:
  void OnList(const store::RangeResult& listing);
  void OnEvents(const std::vector<store::Event>& events);
  void Want(const store::KeyValue& kv);
  void Unwant(const std::string& id);
  void ListDrivers();
  Result<std::optional<driver::TaskHandle>> FindExisting(const std::string& alloc_id,
                                                         const std::string& task,
                                                         spec::DriverKind kind);
  // Lists a driver that could not be listed before (no-op otherwise): its tasks become
  // adoptable and the runners they belong to are woken. kUnavailable while it cannot be.
  Status ListUnlisted(spec::DriverKind kind);
  void JanitorLoop();
  RunnerDeps Deps(const runtime::Allocation& alloc);
  void OnDriverExit(const std::string& alloc_id);
  void ReportUsage();
  void RelistDrivers();
  // Wakes the runners with a task that uses a secret stored at one of `keys`.
  void OnSecretsChanged(const std::set<std::string>& keys);

  store::Store& store_;
  const store::Keys keys_;
  const std::map<spec::DriverKind, driver::Driver*> drivers_;
  runtime::PortAllocator& ports_;
  const ClockPtr clock_;
  const Options options_;
  std::unique_ptr<store::PrefixWatcher> watcher_;
  std::unique_ptr<store::PrefixWatcher> secrets_watcher_;
  std::shared_ptr<std::counting_semaphore<>> start_gate_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool listed_once_ = false;  // a listing of allocs/<machine>/ has succeeded
  std::map<std::string, std::unique_ptr<AllocRunner>> runners_;  // by alloc id
  std::vector<std::unique_ptr<AllocRunner>>
      stopping_runners_;  // asked to stop; joined by the janitor
  // Tasks the drivers reported at Start, by alloc id, not yet handed to a runner.
  std::map<std::string, std::vector<driver::TaskHandle>> adoptable_;
  std::set<spec::DriverKind> unlisted_;  // drivers that could not be listed yet
  std::thread janitor_;
};

}  // namespace berth::agent
