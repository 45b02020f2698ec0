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
// Thread-safety: every method may be called from any thread concurrently (DockerClient is).
#pragma once

#include <string>

#include "driver/docker_client.h"
#include "driver/driver.h"

namespace berth::driver {

struct DockerDriverOptions {
  std::string docker_host;  // "" = $DOCKER_HOST, else unix:///var/run/docker.sock
  std::string publish_ip = "0.0.0.0";
  std::chrono::milliseconds call_timeout{30000};
};

class DockerDriver final : public Driver {
 public:
  // Parses the address (does not connect: the engine may come up later).
  static Result<std::unique_ptr<DockerDriver>> Create(DockerDriverOptions options);

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

  DockerClient& client() { return *client_; }

  // "berth-<alloc>-<task>", with characters Docker refuses in names replaced by '-'.
  static std::string ContainerName(const StartRequest& request);
  // The container create body for `request` (exposed for unit tests).
  static nlohmann::json ContainerConfig(const StartRequest& request, const std::string& publish_ip);

 private:
  DockerDriver(DockerClientPtr client, DockerDriverOptions options)
      : client_(std::move(client)), options_(std::move(options)) {}

  DockerClientPtr client_;
  const DockerDriverOptions options_;
};

}  // namespace berth::driver
