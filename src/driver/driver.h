// Driver: the seam between the agent and whatever runs a task on this machine — a Docker
// container (DockerDriver, through the Docker Engine API) or a plain process (ProcessDriver).
//
// A driver starts a task from a StartRequest and returns a TaskHandle whose `id` is enough to
// find the task again after the agent restarts (a container id; for a process, its pid and
// start time). Everything a driver starts is marked as berth's (container labels berth.job,
// berth.group, berth.task, berth.alloc; a state file per process) so List() can re-adopt it:
// none duplicated, none orphaned, none restarted needlessly. Drivers that can tell when a task
// exits call back through SetExitCallback, so the agent learns of an exit before its next poll.
// Errors: a missing image is kNotFound naming the image; a host port in use is
// kFailedPrecondition naming the port; the engine being unreachable is kUnavailable. A driver
// never crashes on what the engine or the OS says.
// Thread-safety: every method may be called from any thread concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace berth::driver {

struct PortBinding {
  std::string name;        // the task's port name
  int host_port = 0;       // resolved by the agent (fixed, or picked from the dynamic range)
  int container_port = 0;  // docker: the port inside the container; process: == host_port
  bool operator==(const PortBinding&) const = default;
};

struct VolumeMount {
  std::string source;  // absolute host path (bind mount) or a named volume
  std::string target;  // absolute path inside the container
  bool read_only = false;
};

struct StartRequest {
  std::string alloc_id;
  std::string job;
  std::string group;
  std::string task;
  std::string image;    // docker
  std::string command;  // process: the program; docker: overrides the image's entrypoint cmd
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::string workdir;
  std::vector<PortBinding> ports;
  int64_t cpu_shares = 0;    // 0 = no limit
  int64_t memory_bytes = 0;  // 0 = no limit
  std::vector<VolumeMount> volumes;
  std::map<std::string, std::string> labels;
  std::string task_dir;  // per-allocation directory on the host (logs, state, secrets)
  // Secrets (docs/drivers.md#secrets). `secrets_dir`: the host directory (on tmpfs) holding the
  // task's secret files, "" when it has none; docker mounts it read-only at /run/secrets, a
  // process finds it in BERTH_SECRETS_DIR. `secret_env`: environment variables whose values are
  // secrets, set besides `env`. A driver never logs, stores or echoes their values, and wipes
  // the copies it makes once the task is started.
  std::string secrets_dir;
  std::map<std::string, std::string> secret_env;
};

struct TaskHandle {
  std::string driver;  // "docker" | "process"
  std::string id;      // container id, or "<pid>:<start time in clock ticks>"
  std::string alloc_id;
  std::string job;
  std::string group;
  std::string task;
  bool operator==(const TaskHandle&) const = default;
};

enum class TaskState { kRunning, kExited, kMissing };

struct TaskStatus {
  TaskState state = TaskState::kMissing;
  int exit_code = 0;  // when kExited; 128+N when killed by signal N
  int pid = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  bool oom_killed = false;
  std::string message;  // what the engine or OS said, for people
  std::vector<PortBinding> ports;
};

struct LogOptions {
  bool follow = false;
  bool stdout = true;
  bool stderr = true;
  int64_t tail_lines = -1;  // -1 = everything
};

class Driver {
 public:
  virtual ~Driver() = default;

  virtual std::string_view Name() const = 0;
  virtual Result<TaskHandle> Start(const StartRequest& request) = 0;
  // Asks the task to stop (SIGTERM / docker stop), then kills it after `grace`.
  virtual Status Stop(const TaskHandle& handle, std::chrono::milliseconds grace) = 0;
  virtual Status Kill(const TaskHandle& handle) = 0;
  // Releases what the task holds (removes the container, the process state file). The task
  // must have exited.
  virtual Status Remove(const TaskHandle& handle) = 0;
  virtual Result<TaskStatus> Inspect(const TaskHandle& handle) = 0;
  // Waits up to `timeout` for the task to exit; its exit code, or kDeadlineExceeded.
  virtual Result<int> Wait(const TaskHandle& handle, std::chrono::milliseconds timeout) = 0;
  // Calls `sink` with log data until it returns false, the logs end, or (follow) the task exits.
  virtual Status Logs(const TaskHandle& handle, const LogOptions& options,
                      const std::function<bool(std::string_view)>& sink) = 0;
  // Every task this driver started on this machine that still exists (running or exited).
  virtual Result<std::vector<TaskHandle>> List() = 0;
  // Optional: calls `callback(alloc_id)` (from a driver thread, soon after it happens) when a task
  // of this driver exits, so the agent need not wait for its next poll. The callback must not
  // block. Replaces any earlier callback; nullptr stops notifications. Default: no notifications.
  // A notification is a hint to look (Inspect) now, not a record: one may repeat, and one may be
  // missed (say, while the engine restarts), so the agent keeps polling. Once SetExitCallback
  // returns, the earlier callback is not running and is not called again; so the callback must
  // not call SetExitCallback itself.
  virtual void SetExitCallback(
      [[maybe_unused]] std::function<void(const std::string& alloc_id)> callback) {}
};
using DriverPtr = std::unique_ptr<Driver>;

}  // namespace berth::driver
