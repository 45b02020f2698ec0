// AllocRunner: runs one allocation (one instance of a task group) on this machine, on its own
// thread, the way a supervisor would: start every task through its driver, notice exits (a
// poll every `poll_interval`, or at once when the driver's exit notification calls Wake), restart
// per the group's restart policy, run the tasks' health checks, and publish what it observes as
// the allocation's status (status/<id>) whenever it changes.
//
// Start errors are statuses, never crashes: an unreachable engine is retried with back-off
// (100 ms doubling to 30 s) without using up restart attempts; anything else (a missing image,
// a command not found, a port in use) counts as a failed run, so the restart policy's back-off
// and attempts apply to it and the allocation ends "failed" rather than looping hot.
//
// A runner created with tasks re-adopted from the drivers (after an agent restart) keeps those
// tasks as they are: a running one is not restarted. The previous status (from the store) seeds
// restart counts and final states, so a task that had failed or completed is not started again.
//
// Stop() asks the tasks to stop (each with its kill_timeout, then killed), removes them, and
// publishes "stopped". Detach() ends the thread and leaves the tasks running: that is what an
// agent that is shutting down does, so the next agent re-adopts them.
//
// Secrets (docs/allocations.md#secrets): before every start of a task that lists secrets, the
// runner opens each through the SecretSource, writes the file targets into the task's directory
// on the SecretsDir (tmpfs) and hands env targets to the driver. A secret that cannot be opened,
// or a secrets dir that is not on tmpfs, keeps the task from starting: its status names the
// path and why (never the value), and the start is tried again with the restart policy's
// back-off (delay doubling up to max_delay, at least 100 ms) without using up attempts, or at
// once when Wake()d (the reconciler wakes the runner when a secret it uses changes). The task's
// directory goes when its run ends and when the allocation stops; Detach leaves it (the task
// keeps running).
//
// Host ports are taken from the PortAllocator at the first start and kept for the life of the
// runner, so restarts keep the same ports (and routes). Tasks see, besides their own env,
// BERTH_ALLOC_ID, BERTH_ALLOC_INDEX, BERTH_JOB, BERTH_GROUP, BERTH_TASK, BERTH_MACHINE_ID,
// BERTH_TASK_DIR (process driver), BERTH_SECRETS_DIR (tasks with file secrets), and per port
// BERTH_PORT_<name> (the port the task listens on: the container port for docker) and
// BERTH_HOST_PORT_<name>; ${NAME} in command, args and env values is replaced by those variables
// (unknown names are left as written). Thread-safety: every public method may be called from any
// thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "agent/secrets_dir.h"
#include "common/clock.h"
#include "driver/driver.h"
#include "runtime/alloc.h"
#include "runtime/port_allocator.h"
#include "secrets/secret_source.h"

namespace berth::agent {

struct RunnerDeps {
  // The driver for each kind; a task whose driver is missing fails with a clear message.
  std::map<spec::DriverKind, driver::Driver*> drivers;
  runtime::PortAllocator* ports = nullptr;
  ClockPtr clock;
  std::string machine_id;
  std::string alloc_root;                // per-allocation directories live under here
  std::string check_host = "127.0.0.1";  // where health checks reach the tasks' host ports
  // Publishes a status (the runner calls it from its thread whenever the status changes, and
  // again each poll until it returns OK).
  std::function<Status(const runtime::AllocStatus&)> publish;
  std::chrono::milliseconds poll_interval{1000};
  // Bounds how many driver starts run at once across the agent's runners (nullptr: no bound).
  // An engine asked to create 50 containers at once answers slower than 4 at a time, and its
  // callers time out and retry.
  std::shared_ptr<std::counting_semaphore<>> start_gate;
  // Consulted before the first start of a task that was not re-adopted: a handle of an existing
  // task to adopt, if any; kUnavailable when that cannot be known yet (the task's driver could
  // not be listed), which delays the start like an unreachable engine.
  std::function<Result<std::optional<driver::TaskHandle>>(
      const std::string& alloc_id, const std::string& task, spec::DriverKind driver)>
      find_existing;
  // Opens the secrets tasks list (nullptr: such tasks wait with a clear status).
  secrets::SecretSourcePtr secrets;
  // Where file secrets are written (nullptr: tasks with file secrets wait with a clear status).
  std::shared_ptr<SecretsDir> secrets_dir;
};

class AllocRunner {
 public:
  // `adopted`: tasks of this allocation the drivers still know (running or exited).
  // `previous`: the last status published for it, if any.
  AllocRunner(runtime::Allocation alloc, RunnerDeps deps, std::vector<driver::TaskHandle> adopted,
              std::optional<runtime::AllocStatus> previous);
  ~AllocRunner();  // Detach()es if still running
  AllocRunner(const AllocRunner&) = delete;
  AllocRunner& operator=(const AllocRunner&) = delete;

  void Start();
  // Wakes the runner to look at its tasks now (a driver said one exited).
  void Wake();
  // Asks the runner to stop its tasks; returns at once. done() turns true when they are.
  void Stop();
  // Waits until the runner's thread ends (after Stop, or Detach).
  void Join();
  // Ends the thread, leaving the tasks running.
  void Detach();
  bool done() const { return done_.load(); }

  const std::string& id() const { return alloc_.id; }
  const runtime::Allocation& alloc() const { return alloc_; }
  runtime::AllocStatus status() const;
  // The handle of `task`: its running task, else its last exited run (kept for its logs).
  std::optional<driver::TaskHandle> handle(const std::string& task) const;

 private:
  struct TaskRun;
  void Loop();
  void Prepare(TaskRun& t);
  void TryStart(TaskRun& t);
  void Observe(TaskRun& t);
  void OnExit(TaskRun& t, int exit_code, bool oom, const std::string& why);
  void CheckHealth(TaskRun& t);
  void StopTask(TaskRun& t);
  void RemoveDead(TaskRun& t);
  // Removes a task's container or state, logging (not failing on) an engine error.
  void RemoveTask(TaskRun& t, const driver::TaskHandle& h);
  void SetHandle(TaskRun& t, const driver::TaskHandle& h);
  // (Re)creates the task's health probe and tracker for a new or re-adopted run.
  void StartHealth(TaskRun& t);
  driver::StartRequest BuildRequest(const TaskRun& t) const;
  // Opens the task's secrets into `r` (files written, env values set); the error names the
  // secret's path and why.
  Status OpenSecrets(const TaskRun& t, driver::StartRequest* r);
  // A start held back by a secret: the status says why; tried again after a back-off.
  void SecretFailed(TaskRun& t, const Status& st);
  void RemoveSecrets(const TaskRun& t);
  void Event(TaskRun* t, std::string type, std::string message);
  void Publish();
  TimePoint NextDeadline() const;

  const runtime::Allocation alloc_;
  const spec::Group* group_;  // points into alloc_.spec
  RunnerDeps deps_;
  std::vector<std::unique_ptr<TaskRun>> tasks_;  // owned by the runner thread after Start
  std::map<std::string, int> host_ports_;        // port name -> host port, runner thread only
  bool ports_allocated_ = false;                 // runner thread only
  bool dirty_ = true;                            // runner thread only: status not yet published

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;            // guarded by mu_
  bool detach_ = false;          // guarded by mu_
  bool wake_ = false;            // guarded by mu_
  runtime::AllocStatus status_;  // guarded by mu_ (the runner thread writes it)
  std::map<std::string, driver::TaskHandle> handles_;  // guarded by mu_
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Replaces ${NAME} in `s` with vars[NAME]; unknown names are left as written.
std::string Interpolate(const std::string& s, const std::map<std::string, std::string>& vars);

}  // namespace berth::agent
