#include "agent/agent.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "acl/access_control.h"
#include "agent/local_reconciler.h"
#include "agent/machine_registry.h"
#include "agent/route_publisher.h"
#include "api/api_service.h"
#include "common/version.h"
#include "driver/docker_driver.h"
#include "driver/process_driver.h"
#include "engine/engine.h"
#include "jobs/job_registry.h"
#include "router/router.h"
#include "secrets/machine_secrets.h"

namespace berth::agent {

namespace fs = std::filesystem;

namespace {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

Result<HostPort> ParseHostPort(const std::string& s, const std::string& flag) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument(flag + " \"" + s + "\": expected ADDRESS:PORT, e.g. 127.0.0.1:4680");
  }
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port_s = s.substr(colon + 1);
  char* end = nullptr;
  long port = std::strtol(port_s.c_str(), &end, 10);
  if (port_s.empty() || *end != '\0' || port < 0 || port > 65535) {
    return InvalidArgument(flag + " \"" + s + "\": port must be 0-65535");
  }
  if (host == "localhost") host = "127.0.0.1";
  return HostPort{host, static_cast<uint16_t>(port)};
}

bool IsLoopback(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "::1";
}

bool ValidMachineId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

std::string ReadFirstLine(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

Result<std::string> ResolveMachineId(const AgentOptions& o) {
  fs::path file = fs::path(o.data_dir) / "machine-id";
  std::string id = o.machine_id;
  if (id.empty()) id = ReadFirstLine(file);
  if (id.empty()) id = ReadFirstLine("/etc/machine-id").substr(0, 12);
  if (id.empty()) id = MachineInfo::FromSystem().hostname;
  if (!ValidMachineId(id)) {
    return InvalidArgument("machine id \"" + id +
                           "\": use 1-64 letters, digits, '-', '_' or '.' (--machine-id)");
  }
  std::ofstream(file) << id << "\n";
  return id;
}

// --secrets-dir, or /run/berth/<machine-id>/secrets as root, or else under $XDG_RUNTIME_DIR (on
// systemd machines a tmpfs of the user's own: an agent that is not root can neither create
// /run/berth nor mount a tmpfs).
std::string SecretsRoot(const AgentOptions& o, const std::string& machine_id) {
  if (!o.secrets_dir.empty()) return o.secrets_dir;
  const char* runtime_dir = std::getenv("XDG_RUNTIME_DIR");
  if (geteuid() != 0 && runtime_dir != nullptr && runtime_dir[0] == '/') {
    return std::string(runtime_dir) + "/berth/" + machine_id + "/secrets";
  }
  return "/run/berth/" + machine_id + "/secrets";
}

}  // namespace

Status ValidateAgentOptions(const AgentOptions& o) {
  BERTH_ASSIGN_OR_RETURN(auto api, ParseHostPort(o.api_address, "--api"));
  if (o.dev && !IsLoopback(api.host)) {
    return InvalidArgument(
        "--dev binds to loopback only (without --acl it serves without authentication); "
        "--api " +
        o.api_address + " is not a loopback address");
  }
  if (!o.api_tls.cert_file.empty() && o.api_tls.key_file.empty()) {
    return InvalidArgument("--api-cert " + o.api_tls.cert_file + " needs --api-key");
  }
  if (o.api_tls.cert_file.empty() &&
      (!o.api_tls.key_file.empty() || !o.api_tls.client_ca_file.empty())) {
    return InvalidArgument(
        "--api-key and --api-client-ca need --api-cert (the API's TLS "
        "certificate)");
  }
  if (o.acl_max_failures < 0) return InvalidArgument("--acl-max-failures must be 0 or more");
  if (o.dev && !o.store_url.empty() && o.store_url.rfind("etcd://", 0) == 0) {
    return InvalidArgument("--dev runs on the embedded store; drop --store or --dev");
  }
  for (const auto& [k, v] : o.meta) {
    if (k.empty()) return InvalidArgument("--meta \"=" + v + "\": empty key");
  }
  if (o.machine_ttl.count() < 1) return InvalidArgument("--machine-ttl must be at least 1s");
  if (o.port_first < 1 || o.port_last > 65535 || o.port_first > o.port_last) {
    return InvalidArgument("--port-range " + std::to_string(o.port_first) + "-" +
                           std::to_string(o.port_last) + ": expected LOW-HIGH within 1-65535");
  }
  if (o.dev && !o.publish_ip.empty() && !IsLoopback(o.publish_ip)) {
    return InvalidArgument("--dev publishes task ports on loopback only; --publish-ip " +
                           o.publish_ip + " is not a loopback address");
  }
  return Status::Ok();
}

namespace {
Status CreateRuntime(Agent::Impl& d);
void StartRuntime(Agent::Impl& d);
}  // namespace

struct Agent::Impl {
  AgentOptions opts;
  std::string machine_id;
  int lock_fd = -1;
  store::StorePtr store;
  store::Keys keys;
  std::unique_ptr<jobs::JobRegistry> jobs;
  std::unique_ptr<MachineRegistry> machines;
  secrets::MachineSecretsPtr machine_secrets;  // also registers the key when the store is back
  std::unique_ptr<api::HttpServer> http;
  std::unique_ptr<driver::ProcessDriver> process_driver;
  std::unique_ptr<driver::DockerDriver> docker_driver;
  std::unique_ptr<runtime::PortAllocator> ports;
  std::unique_ptr<LocalReconciler> reconciler;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<RoutePublisher> routes;
  std::unique_ptr<router::Router> router;
  bool started = false;

  ~Impl() {
    if (lock_fd >= 0) close(lock_fd);
  }
};

namespace {

// The drivers, the port allocator and the local reconciler; they start later, in StartRuntime.
Status CreateRuntime(Agent::Impl& d) {
  const auto& o = d.opts;
  driver::ProcessDriverOptions po;
  po.state_dir = (fs::path(o.data_dir) / "process").string();
  BERTH_ASSIGN_OR_RETURN(d.process_driver, driver::ProcessDriver::Create(po));
  driver::DockerDriverOptions dopt;
  dopt.docker_host = o.docker_host;
  dopt.publish_ip = o.publish_ip;
  dopt.machine_id = d.machine_id;
  BERTH_ASSIGN_OR_RETURN(d.docker_driver, driver::DockerDriver::Create(dopt));
  runtime::PortAllocator::Options popt;
  popt.address = o.publish_ip;
  popt.first = o.port_first;
  popt.last = o.port_last;
  d.ports = std::make_unique<runtime::PortAllocator>(popt);
  LocalReconciler::Options ro;
  ro.machine_id = d.machine_id;
  ro.alloc_root = (fs::path(o.data_dir) / "allocs").string();
  ro.check_host = o.publish_ip == "0.0.0.0" ? "127.0.0.1" : o.publish_ip;
  ro.poll_interval = o.task_poll_interval;
  Agent::Impl* raw = &d;
  ro.on_usage = [raw](int64_t cpu, int64_t memory, int allocs) {
    if (raw->machines) raw->machines->SetUsage({cpu, memory, allocs});
  };
  // Where routers reach this machine's tasks: the address their ports bind to, else the API's.
  std::string advertise = o.publish_ip;
  if (advertise == "0.0.0.0" || advertise == "::") {
    auto api = ParseHostPort(o.api_address, "--api");
    advertise = api.ok() && api->host != "0.0.0.0" && api->host != "::" ? api->host : "127.0.0.1";
  }
  d.routes = std::make_unique<RoutePublisher>(*d.store, d.keys, advertise, [raw] {
    return raw->machines ? raw->machines->lease() : store::LeaseId{0};
  });
  ro.routes = d.routes.get();
  // Task secrets: opened with this machine's key (registered as recipient machine:<id>), their
  // files written to a tmpfs.
  secrets::MachineSecretsOptions so{o.data_dir, d.machine_id, o.secret_writers_file};
  BERTH_ASSIGN_OR_RETURN(d.machine_secrets, secrets::SetUpMachineSecrets(*d.store, d.keys, so));
  ro.secrets = d.machine_secrets;
  ro.secrets_dir = std::make_shared<SecretsDir>(SecretsDirOptions{SecretsRoot(o, d.machine_id)});
  std::map<spec::DriverKind, driver::Driver*> drivers{
      {spec::DriverKind::kProcess, d.process_driver.get()},
      {spec::DriverKind::kDocker, d.docker_driver.get()}};
  d.reconciler = std::make_unique<LocalReconciler>(*d.store, d.keys, drivers, *d.ports,
                                                   SystemClock::Shared(), ro);
  return Status::Ok();
}

// The local reconciler, and this agent's bid to run the cluster engine (every agent campaigns;
// one leads). After the machine registry: the engine publishes the API address.
void StartRuntime(Agent::Impl& d) {
  d.reconciler->Start();
  engine::Engine::Options eo;
  eo.machine_id = d.machine_id;
  eo.address = d.machines->info().api_address;
  eo.leader_ttl = d.opts.engine_ttl;
  eo.startup_grace = d.opts.machine_ttl + std::chrono::seconds(2);
  d.engine = std::make_unique<engine::Engine>(*d.store, d.keys, SystemClock::Shared(), eo);
  d.engine->Start();
}

}  // namespace

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() {
  Stop();
}

Result<std::unique_ptr<Agent>> Agent::Create(AgentOptions o) {
  BERTH_RETURN_IF_ERROR(ValidateAgentOptions(o));
  if (o.data_dir.empty()) o.data_dir = o.dev ? ".berth-dev" : "/var/lib/berth";
  std::error_code ec;
  fs::create_directories(o.data_dir, ec);
  if (ec) return Unavailable("data dir " + o.data_dir + ": " + ec.message());

  auto impl = std::make_unique<Impl>();
  // One agent per data dir: a second one would corrupt the first one's view of its machine.
  std::string lock_path = (fs::path(o.data_dir) / "LOCK").string();
  impl->lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (impl->lock_fd < 0 || flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Unavailable("data dir " + o.data_dir + " is in use by another berth agent (" +
                       lock_path + " is locked)");
  }
  BERTH_ASSIGN_OR_RETURN(impl->machine_id, ResolveMachineId(o));
  if (o.store_url.empty()) o.store_url = "embedded:" + o.data_dir;
  if (o.publish_ip.empty()) o.publish_ip = o.dev ? "127.0.0.1" : "0.0.0.0";
  impl->keys = store::Keys(o.key_prefix);
  impl->opts = std::move(o);
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Status Agent::Start() {
  auto& d = *impl_;
  const auto& o = d.opts;
  BERTH_ASSIGN_OR_RETURN(d.store, store::OpenStore(o.store_url, o.store_tls));
  d.jobs = std::make_unique<jobs::JobRegistry>(*d.store, d.keys, SystemClock::Shared());
  BERTH_RETURN_IF_ERROR(CreateRuntime(d));

  BERTH_ASSIGN_OR_RETURN(auto api_addr, ParseHostPort(o.api_address, "--api"));
  api::HttpServer::Options http_opts;
  http_opts.address = api_addr.host;
  http_opts.port = api_addr.port;
  http_opts.max_body_bytes = o.max_body_bytes;
  http_opts.tls = o.api_tls;
  d.http = std::make_unique<api::HttpServer>(http_opts);

  MachineInfo info = MachineInfo::FromSystem();
  info.id = d.machine_id;
  info.meta = o.meta;
  info.version = Version();
  info.started_at_ms = SystemClock::Shared()->WallMillis();

  api::ApiContext ctx;
  ctx.store = d.store.get();
  ctx.keys = d.keys;
  ctx.jobs = d.jobs.get();
  ctx.version = Version();
  Impl* raw = impl_.get();
  ctx.self_info = [raw] {
    return nlohmann::json{{"machine", raw->machines ? raw->machines->Record() : nullptr},
                          {"store", raw->store->Describe()},
                          {"dev", raw->opts.dev},
                          {"data_dir", raw->opts.data_dir},
                          {"version", Version()}};
  };
  ctx.machine_id = d.machine_id;
  ctx.api_scheme = o.api_tls.enabled() ? "https" : "http";
  acl::AccessControl::Options access;
  access.enforce = !o.dev || o.acl;
  access.limits.max_failures = o.acl_max_failures;
  ctx.access = std::make_shared<acl::AccessControl>(*d.store, d.keys, access);
  ctx.alloc_logs = [raw](const std::string& alloc, const std::string& task, bool follow,
                         int64_t tail_lines, bool want_stdout, bool want_stderr,
                         const std::function<bool(std::string_view)>& sink) -> Status {
    driver::LogOptions lo;
    lo.follow = follow;
    lo.tail_lines = tail_lines;
    lo.stdout = want_stdout;
    lo.stderr = want_stderr;
    // Following may wait for output: send the response head first.
    if (follow && !sink("")) return Status::Ok();
    return raw->reconciler->Logs(alloc, task, lo, sink);
  };
  api::RegisterApiRoutes(*d.http, ctx);
  BERTH_RETURN_IF_ERROR(d.http->Start().Annotate("API"));

  info.api_address = api_addr.host + ":" + std::to_string(d.http->port());
  // Scripts and tests that bind port 0 read the chosen address from here.
  std::ofstream(fs::path(o.data_dir) / "api.addr") << info.api_address << "\n";
  d.machines = std::make_unique<MachineRegistry>(*d.store, d.keys, info, o.machine_ttl);
  if (d.machine_secrets) {
    // A store that was away at start: the recipient record is written once it is back.
    d.machines->OnRegistered([ms = d.machine_secrets] { ms->Register().IgnoreError(); });
  }
  Status reg = d.machines->Start();
  if (!reg.ok()) {
    // The agent keeps serving (and retrying) while the store is away.
    spdlog::warn("machine {}: first registration failed: {}; retrying in the background",
                 d.machine_id, reg.ToString());
  }
  // After the registry exists: the reconciler reports usage to it.
  StartRuntime(d);
  if (!o.router_listen.empty()) {
    router::RouterOptions ro;
    ro.key_prefix = o.key_prefix;
    ro.listen = o.router_listen;
    ro.threads = o.router_threads;
    d.router = std::make_unique<router::Router>(ro, *d.store);
    Status rs = d.router->Start();
    if (!rs.ok()) {
      d.started = true;
      Stop();
      return rs.Annotate("router");
    }
    spdlog::info("router listening on {}", o.router_listen);
  }
  d.started = true;
  return Status::Ok();
}

void Agent::Stop() {
  auto& d = *impl_;
  if (!d.started) return;
  d.started = false;
  if (d.router) d.router->Stop();  // graceful: in-flight requests finish
  if (d.http) d.http->Stop();
  if (d.engine) d.engine->Stop();          // resigns: another agent leads at once
  if (d.reconciler) d.reconciler->Stop();  // tasks keep running
  if (d.machines) d.machines->Stop(/*revoke=*/false);
}

uint16_t Agent::api_port() const {
  return impl_->http ? impl_->http->port() : 0;
}
const std::string& Agent::machine_id() const {
  return impl_->machine_id;
}

int RunAgent(AgentOptions options, const std::string& version) {
  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // One thread per allocation would otherwise get up to 8 malloc arenas per core, each keeping
  // its own free memory: two arenas keep an agent with many allocations small (measured in
  // docs/benchmarks.md), and its threads rarely contend for the allocator.
  mallopt(M_ARENA_MAX, 2);

  bool dev = options.dev;
  auto agent = Agent::Create(std::move(options));
  if (!agent.ok()) {
    spdlog::error("{}", agent.status().message());
    return 1;
  }
  Status st = (*agent)->Start();
  if (!st.ok()) {
    spdlog::error("{}", st.message());
    return 1;
  }
  auto& d = *(*agent)->impl_;
  const bool tls = d.opts.api_tls.enabled();
  spdlog::info("berth agent {} up: machine {}, store {}, API {}://{}{}", version, d.machine_id,
               d.store->Describe(), tls ? "https" : "http", d.machines->info().api_address,
               d.opts.api_tls.client_ca_file.empty() ? "" : " (client certificates required)");
  if (dev && !d.opts.acl) {
    spdlog::warn(
        "dev mode: embedded store in {}, API on loopback only, no authentication (every "
        "request may do anything; --acl requires tokens)",
        d.opts.data_dir);
  } else {
    auto boot = acl::TokenStore(*d.store, d.keys, SystemClock::Shared()).Bootstrapped();
    spdlog::info("API access control on: every request but /v1/health needs a token{}",
                 dev ? " (--dev --acl)" : "");
    if (boot.ok() && !*boot) {
      spdlog::warn(
          "ACL not bootstrapped yet: run `berth acl bootstrap` for the first admin "
          "token");
    }
    if (!tls && !dev) {
      spdlog::warn(
          "the API is plain HTTP: tokens cross the network in the clear; serve it "
          "with --api-cert/--api-key beyond a trusted network");
    }
  }
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*agent)->Stop();
  return 0;
}

}  // namespace berth::agent
