// ProcessDriver: runs a task as a plain host process (no image, no isolation beyond an
// optional cgroup v2 memory/CPU limit).
//
// Start forks and execs the command in a new session (so it leads its own process group and
// Stop/Kill can signal the whole group), with a clean environment taken from the request (plus
// a default PATH if the request has none) and the task directory as default working directory.
// A missing or non-executable command is reported synchronously (kNotFound /
// kPermissionDenied naming it) through a close-on-exec pipe on which the child writes errno if
// execve fails. The child execs only once its state file exists (it waits on a pipe that the
// agent writes after saving it), so no task ever runs unrecorded. Processes are never tied to
// the agent's life (no PR_SET_PDEATHSIG).
//
// Secrets: the child's environment gets the request's `secret_env` and, when the request has a
// `secrets_dir`, BERTH_SECRETS_DIR pointing there; neither is written to the state file, and the
// driver wipes its copies of the env values once the child is started.
//
// Handles are "<pid>:<starttime>", starttime being field 22 of /proc/<pid>/stat, so a recycled
// pid never passes for our task. Each task has a JSON state file `<state_dir>/<pid>_<start>.json`
// (handle, request summary, start time, and the exit code once this agent reaped it): a new
// driver on the same state_dir (after an agent restart, even a SIGKILL) re-adopts running
// processes and reports exited ones. A re-adopted process is no longer our child, so its end is
// observed by polling /proc and its exit code is unknowable: Inspect reports kExited with
// exit_code kExitCodeUnknown and says so in `message`; Wait returns kExitCodeUnknown. Our own
// children are reaped (waitpid on their pid only, never -1, so other children of the agent are
// left alone) by every call that looks at them and by the maintenance thread, so none stay
// zombies for long.
//
// Exit notifications (SetExitCallback): whoever first sees a task's end — the maintenance thread
// or any call that looks at the task (Inspect, Wait, Stop, Logs(follow), RotateLogs) — reaps
// it, records the exit, and posts the alloc id from the task's state file to an ExitNotifier,
// which calls the callback from its own thread (never inside the call that saw the exit). The
// same goes for a re-adopted process seen gone. Nothing watches idle tasks between maintenance
// rounds, so an exit nobody asks about is reported within `maintenance_interval` (none with
// interval zero).
//
// Logs: the child writes stdout/stderr straight to `<task_dir>/logs/<task>.stdout|.stderr`
// (O_APPEND). We chose this over a pump thread because the files keep filling while the agent
// is down or restarting, and no agent thread sits in the data path. Rotation is copy-truncate
// (to .1, .2, ... up to log_max_files), done by RotateLogs() — called from a maintenance thread
// every `maintenance_interval`, or directly. The price of copy-truncate: a write landing
// between the copy and the truncate is lost, and Logs(follow) may skip output written around a
// rotation.
//
// cgroups: when a task asks for memory or CPU limits and `cgroup_root`'s file system is cgroup2
// and writable, the task gets its own child cgroup (memory.max, cpu.weight) which the child joins
// before exec. Otherwise the task starts without limits and its TaskStatus.message says why.
//
// Thread-safety: every method may be called from any thread concurrently. The state files are
// the only table (no in-memory copy, so two drivers on one state_dir agree); one mutex
// serialises state-file writes and reaping; blocking waits are done without it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "driver/driver.h"
#include "driver/exit_notifier.h"

namespace berth::driver {

// Exit code reported for a process that exited while it was not our child (re-adopted).
inline constexpr int kExitCodeUnknown = -1;

struct ProcessDriverOptions {
  std::string state_dir;  // where per-task state files live (created if absent)
  int64_t log_max_bytes = 10 << 20;
  int log_max_files = 3;
  // Timestamps, and the deadlines of Wait and of Stop's grace (a paused clock makes them wait
  // for the exit). Default: SystemClock.
  ClockPtr clock;
  // Where per-task cgroups are created; its file system must be cgroup2.
  std::string cgroup_root = "/sys/fs/cgroup/berth";
  // How often the maintenance thread rotates logs and reaps children (and so reports exits to
  // the exit callback); zero = no thread (call RotateLogs() yourself).
  std::chrono::milliseconds maintenance_interval{5000};
  // How often Wait/Stop/Logs(follow) re-check a process; real time, not the injected clock,
  // because it paces polling of the OS.
  std::chrono::milliseconds poll_interval{20};
};

class ProcessDriver final : public Driver {
 public:
  static Result<std::unique_ptr<ProcessDriver>> Create(ProcessDriverOptions options);
  // Stops the maintenance thread and exit notifications; running tasks keep running.
  ~ProcessDriver() override;

  std::string_view Name() const override { return "process"; }
  Result<TaskHandle> Start(const StartRequest& request) override;
  Status Stop(const TaskHandle& handle, std::chrono::milliseconds grace) override;
  Status Kill(const TaskHandle& handle) override;
  Status Remove(const TaskHandle& handle) override;
  Result<TaskStatus> Inspect(const TaskHandle& handle) override;
  Result<int> Wait(const TaskHandle& handle, std::chrono::milliseconds timeout) override;
  Status Logs(const TaskHandle& handle, const LogOptions& options,
              const std::function<bool(std::string_view)>& sink) override;
  Result<std::vector<TaskHandle>> List() override;
  void SetExitCallback(std::function<void(const std::string& alloc_id)> callback) override;

  // Copy-truncates every task's log file larger than log_max_bytes; reaps exited children.
  Status RotateLogs();

 private:
  struct TaskRecord;
  explicit ProcessDriver(ProcessDriverOptions options);

  std::string StatePath(const std::string& id) const;
  Result<TaskRecord> Load(const TaskHandle& handle);
  Status Save(const TaskRecord& record);
  // Observes the process (reaping it if it is our child) and persists a newly seen exit.
  Result<TaskStatus> Observe(TaskRecord& record);
  Status Signal(const TaskHandle& handle, int sig);
  void MaintenanceLoop();

  ProcessDriverOptions options_;
  std::mutex mu_;  // guards state-file writes and reaping, so two calls never reap twice
  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  bool stopping_ = false;  // guarded by maintenance_mu_
  std::thread maintenance_;
  ExitNotifier notifier_;
};

}  // namespace berth::driver
