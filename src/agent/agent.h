// Agent: the `berth agent` daemon on one machine. It opens the store, registers the machine
// under a lease, runs the allocations assigned to the machine through its drivers (the local
// reconciler), campaigns to run the cluster engine (one agent leads and places every job; in
// --dev that is this agent on its own machine), and serves the HTTP API. Stopping the agent
// leaves tasks running and the machine record in place until its lease runs out, so an agent
// restarted within the TTL loses nothing; the next agent re-adopts the tasks.
// Thread-safety: Start/Stop/Wait from the thread that owns the Agent.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "api/http_server.h"
#include "common/status.h"
#include "store/store_factory.h"

namespace berth::agent {

struct AgentOptions {
  bool dev = false;  // embedded store, loopback only, everything in one process
  // API tokens: always required outside --dev; with --dev only when `acl` is set.
  bool acl = false;
  // 401s from one address within 10 s before it gets 429 (0 = no limit).
  int acl_max_failures = 10;
  // HTTPS for the API (--api-cert, --api-key, --api-client-ca); plain HTTP when empty.
  api::TlsFiles api_tls;
  std::string store_url;  // etcd://h:p,...  embedded:DIR  memory:   ("" = embedded in data_dir)
  store::StoreTls store_tls;
  std::string data_dir;  // default: /var/lib/berth, or ./.berth-dev with --dev
  std::string api_address = "127.0.0.1:4680";
  std::string machine_id;  // default: persisted in data_dir, else /etc/machine-id, else hostname
  std::map<std::string, std::string> meta;
  std::string key_prefix = "/berth/";
  // A dead machine's work moves elsewhere about machine_ttl after its death; a dead engine
  // leader is replaced within engine_ttl.
  std::chrono::seconds machine_ttl{3};
  std::chrono::seconds engine_ttl{3};
  size_t max_body_bytes = 1 << 20;
  // Where tasks' host ports are bound ("" = 127.0.0.1 with --dev, else 0.0.0.0), and the range
  // dynamic host ports come from.
  std::string publish_ip;
  int port_first = 20000;
  int port_last = 32000;
  std::string docker_host;  // "" = $DOCKER_HOST, else unix:///var/run/docker.sock
  // How often each allocation's tasks are inspected (exits are also noticed at once when the
  // driver reports them).
  std::chrono::milliseconds task_poll_interval{1000};
  // Also run the HTTP router (router/router.h) on this address ("" = no router).
  std::string router_listen;
  int router_threads = 0;  // 0: one per core
  // Task secret files live here, on tmpfs ("" = /run/berth/<machine-id>/secrets, or
  // $XDG_RUNTIME_DIR/berth/<machine-id>/secrets when not root); a tmpfs is mounted there when
  // it is on a real disk and the agent runs as root.
  std::string secrets_dir;
  // Only values signed by a key listed here (one public key per line) are opened ("" = the
  // writers registered in the store).
  std::string secret_writers_file;
};

// Checks flags that do not depend on the machine: addresses parse, --dev binds to loopback, ...
Status ValidateAgentOptions(const AgentOptions& options);

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> Create(AgentOptions options);
  ~Agent();

  Status Start();
  void Stop();
  uint16_t api_port() const;
  const std::string& machine_id() const;

 private:
  friend int RunAgent(AgentOptions options, const std::string& version);

 public:
  struct Impl;  // implementation detail (public so agent.cc's helpers can name it)

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Runs an agent until SIGINT or SIGTERM; returns the process exit code.
int RunAgent(AgentOptions options, const std::string& version);

}  // namespace berth::agent
