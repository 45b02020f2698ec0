// DockerDriver: runs each task as a Docker container through the Engine API (DockerClient),
// never the docker CLI.
//
// A task's container is named berth-<alloc>-<task> and labelled berth.job, berth.group,
// berth.task, berth.alloc (plus the request's labels, and berth.port.<name>=<container port>
// so Inspect can name the published ports), so List() finds every container berth started on
// this engine, running or exited, for the agent to re-adopt. Ports are published on
// `publish_ip` (127.0.0.1 in tests); host_port 0 lets the engine pick one, which Inspect
// reports. A missing image is kNotFound at Start ("image X not found") and leaves nothing
// behind; so does a host port in use (kFailedPrecondition naming the port).
//
// Machines sharing an engine: with `machine_id` set (several agents on one host, each with its
// own machine id), containers are also labelled berth.machine=<id> and named
// berth-<id>-<alloc>-<task>; List() asks the engine only for containers with that label, and
// Start never adopts or removes a container of another machine. With it empty, there is no
// machine label and List() returns every berth container on the engine.
//
// Secrets: a request's `secrets_dir` is bind-mounted read-only at /run/secrets (and
// BERTH_SECRETS_DIR=/run/secrets set); `secret_env` goes into the container's Env, where the
// engine keeps it and `docker inspect` shows it, which is why files are the preferred target.
//
// Exit notifications (SetExitCallback): a watcher thread follows the engine's GET /events
// (type=container, event=die, label berth.machine=<id> when set, else label berth.alloc) and
// posts each dead container's berth.alloc to an ExitNotifier, which calls the callback from
// its own thread. When the engine is down or restarts, the watcher reconnects with back-off
// (100 ms doubling to 5 s, back to 100 ms once a stream is open), asking for the events since
// the last one it saw (or since the callback was set), so an exit during a reconnect is still
// reported if the engine kept it. Clearing the callback or destroying the driver stops the
// watcher at once, even while it waits on a quiet stream.
// Thread-safety: every method may be called from any thread concurrently (DockerClient is).
#pragma once

#include <cstdint>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "driver/docker_client.h"
#include "driver/driver.h"
#include "driver/exit_notifier.h"

namespace berth::driver {

struct DockerDriverOptions {
  std::string docker_host;  // "" = $DOCKER_HOST, else unix:///var/run/docker.sock
  std::string publish_ip = "0.0.0.0";
  std::chrono::milliseconds call_timeout{30000};
  // This agent's machine id, when agents share the engine: labels containers berth.machine and
  // limits List() and exit notifications to them. "" = the only berth agent on this engine.
  std::string machine_id{};  // {}: callers may leave it out of designated initializers
};

class DockerDriver final : public Driver {
 public:
  // Parses the address (does not connect: the engine may come up later).
  static Result<std::unique_ptr<DockerDriver>> Create(DockerDriverOptions options);
  // Stops the exit watcher; containers keep running.
  ~DockerDriver() override;

  std::string_view Name() const override { return "docker"; }
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

  DockerClient& client() { return *client_; }

  // "berth-<alloc>-<task>", or "berth-<machine_id>-<alloc>-<task>" when `machine_id` is set,
  // with characters Docker refuses in names replaced by '-'.
  static std::string ContainerName(const StartRequest& request, const std::string& machine_id);
  // The container create body for `request` (exposed for unit tests). A request label
  // berth.machine is replaced by `machine_id`, or dropped when that is empty.
  static nlohmann::json ContainerConfig(const StartRequest& request, const std::string& publish_ip,
                                        const std::string& machine_id);
  // The GET /events filters of the exit watcher (exposed for unit tests).
  static std::map<std::string, std::vector<std::string>> ExitEventFilters(
      const std::string& machine_id);

 private:
  DockerDriver(DockerClientPtr client, DockerDriverOptions options)
      : client_(std::move(client)), options_(std::move(options)) {}

  // Follows die events until `stop`, reconnecting with back-off; starts from `since_ns`.
  void WatchExits(std::stop_token stop, int64_t since_ns);

  DockerClientPtr client_;
  const DockerDriverOptions options_;
  ExitNotifier notifier_;
  std::mutex watcher_mu_;  // serialises SetExitCallback: starting and joining the watcher
  std::jthread watcher_;   // runs WatchExits while a callback is set
};

}  // namespace berth::driver
