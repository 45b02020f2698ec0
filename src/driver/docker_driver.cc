#include "driver/docker_driver.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <ctime>

#include <string.h>

namespace berth::driver {

namespace {

constexpr std::string_view kPortLabelPrefix = "berth.port.";
// Where a container sees its task's secret files (spec::kContainerSecretsDir).
constexpr std::string_view kSecretsTarget = "/run/secrets";
constexpr char kMachineLabel[] = "berth.machine";
constexpr std::chrono::milliseconds kMinBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};

std::string PortKey(int container_port) {
  return std::to_string(container_port) + "/tcp";
}

const nlohmann::json* Find(const nlohmann::json& doc, std::initializer_list<const char*> path) {
  const nlohmann::json* at = &doc;
  for (const char* key : path) {
    if (!at->is_object()) return nullptr;
    auto it = at->find(key);
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

std::string GetString(const nlohmann::json& doc, std::initializer_list<const char*> path) {
  const auto* v = Find(doc, path);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

int64_t GetInt(const nlohmann::json& doc, std::initializer_list<const char*> path) {
  const auto* v = Find(doc, path);
  return v != nullptr && v->is_number_integer() ? v->get<int64_t>() : 0;
}

// RFC 3339 with optional fractional seconds ("2024-05-01T10:00:00.123456789Z") → ms since the
// epoch; 0 for the engine's "zero time" (0001-01-01...) or anything unparsable.
int64_t ParseTimeMs(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  if (s.size() < 20 || s.compare(0, 4, "0001") == 0) return 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return 0;
  }
  if (s.size() > 20 && s[19] == '.') {
    int digits = 0;
    for (size_t i = 20;
         i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && digits < 3;
         ++i, ++digits) {
      ms = ms * 10 + (s[i] - '0');
    }
    for (; digits < 3; ++digits) ms *= 10;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

Result<TaskHandle> HandleFromLabels(const std::string& id, const nlohmann::json& labels) {
  if (!labels.is_object()) return Internal("container " + id + " has no labels");
  TaskHandle handle;
  handle.driver = "docker";
  handle.id = id;
  handle.alloc_id = GetString(labels, {"berth.alloc"});
  handle.job = GetString(labels, {"berth.job"});
  handle.group = GetString(labels, {"berth.group"});
  handle.task = GetString(labels, {"berth.task"});
  return handle;
}

}  // namespace

Result<std::unique_ptr<DockerDriver>> DockerDriver::Create(DockerDriverOptions options) {
  BERTH_ASSIGN_OR_RETURN(auto client, DockerClient::Create(DockerClientOptions{
                                          options.docker_host, options.call_timeout}));
  return std::unique_ptr<DockerDriver>(new DockerDriver(std::move(client), std::move(options)));
}

std::string DockerDriver::ContainerName(const StartRequest& request,
                                        const std::string& machine_id) {
  // Container names are engine-wide: machines sharing the engine must not collide.
  std::string name = "berth-" + (machine_id.empty() ? "" : machine_id + "-") + request.alloc_id +
                     "-" + request.task;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '-';
  }
  return name;
}

nlohmann::json DockerDriver::ContainerConfig(const StartRequest& request,
                                             const std::string& publish_ip,
                                             const std::string& machine_id) {
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& [k, v] : request.labels) labels[k] = v;
  // Ownership is the driver's to state: a task must not pass for another machine's.
  labels.erase(kMachineLabel);
  if (!machine_id.empty()) labels[kMachineLabel] = machine_id;
  labels["berth.job"] = request.job;
  labels["berth.group"] = request.group;
  labels["berth.task"] = request.task;
  labels["berth.alloc"] = request.alloc_id;

  nlohmann::json config = nlohmann::json::object();
  config["Image"] = request.image;
  nlohmann::json cmd = nlohmann::json::array();
  if (!request.command.empty()) cmd.push_back(request.command);
  for (const auto& a : request.args) cmd.push_back(a);
  if (!cmd.empty()) config["Cmd"] = cmd;
  nlohmann::json env = nlohmann::json::array();
  for (const auto& [k, v] : request.env) env.push_back(k + "=" + v);
  // Env secrets are part of the container's configuration: the engine stores them and
  // `docker inspect` shows them (docs/drivers.md#secrets: files are preferred).
  for (const auto& [k, v] : request.secret_env) {
    if (!request.env.count(k)) env.push_back(k + "=" + v);
  }
  if (!request.secrets_dir.empty() && !request.env.count("BERTH_SECRETS_DIR")) {
    env.push_back("BERTH_SECRETS_DIR=" + std::string(kSecretsTarget));
  }
  config["Env"] = env;
  if (!request.workdir.empty()) config["WorkingDir"] = request.workdir;

  nlohmann::json host = nlohmann::json::object();
  nlohmann::json exposed = nlohmann::json::object();
  nlohmann::json bindings = nlohmann::json::object();
  for (const auto& p : request.ports) {
    const std::string key = PortKey(p.container_port);
    exposed[key] = nlohmann::json::object();
    // HostPort "" lets the engine pick a free port.
    bindings[key].push_back(
        {{"HostIp", publish_ip},
         {"HostPort", p.host_port > 0 ? std::to_string(p.host_port) : std::string()}});
    labels[std::string(kPortLabelPrefix) + p.name] = std::to_string(p.container_port);
  }
  config["Labels"] = labels;
  if (!exposed.empty()) {
    config["ExposedPorts"] = exposed;
    host["PortBindings"] = bindings;
  }
  nlohmann::json mounts = nlohmann::json::array();
  for (const auto& v : request.volumes) {
    // An absolute source is a host path; anything else names a volume.
    mounts.push_back({{"Type", !v.source.empty() && v.source[0] == '/' ? "bind" : "volume"},
                      {"Source", v.source},
                      {"Target", v.target},
                      {"ReadOnly", v.read_only}});
  }
  if (!request.secrets_dir.empty()) {
    // Read-only: the task reads its secrets and cannot change what the next start gets.
    mounts.push_back({{"Type", "bind"},
                      {"Source", request.secrets_dir},
                      {"Target", std::string(kSecretsTarget)},
                      {"ReadOnly", true}});
  }
  if (!mounts.empty()) host["Mounts"] = mounts;
  if (request.memory_bytes > 0) host["Memory"] = request.memory_bytes;
  if (request.cpu_shares > 0) host["CpuShares"] = request.cpu_shares;
  config["HostConfig"] = host;
  return config;
}

Result<TaskHandle> DockerDriver::Start(const StartRequest& request) {
  if (request.image.empty()) return InvalidArgument("docker task " + request.task + ": no image");
  const std::string name = ContainerName(request, options_.machine_id);
  nlohmann::json config = ContainerConfig(request, options_.publish_ip, options_.machine_id);
  // Best effort for env secrets: the config's copies are wiped when Start returns (the request
  // body the client builds from it is not ours to reach; the engine keeps its own anyway).
  struct EnvWiper {
    nlohmann::json& config;
    ~EnvWiper() {
      auto it = config.find("Env");
      if (it == config.end() || !it->is_array()) return;
      for (auto& e : *it) {
        auto& s = e.get_ref<std::string&>();
        explicit_bzero(s.data(), s.size());
      }
    }
  } wiper{config};

  auto created = client_->CreateContainer(name, config);
  if (!created.ok() && created.status().code() == Code::kAlreadyExists) {
    // Left by an earlier attempt (the agent died between create and start): a running one with
    // our labels is this task, adopt it; anything else is stale. Unless it is another
    // machine's: that one is not ours to adopt or remove.
    auto existing = client_->InspectContainer(name);
    if (existing.ok()) {
      std::string owner = GetString(*existing, {"Config", "Labels", kMachineLabel});
      if (owner != options_.machine_id) {
        return AlreadyExists("container " + name + " exists and belongs to " +
                             (owner.empty() ? std::string("no machine") : "machine " + owner) +
                             ", not to " +
                             (options_.machine_id.empty() ? std::string("this driver")
                                                          : "machine " + options_.machine_id));
      }
    }
    if (existing.ok() &&
        GetString(*existing, {"Config", "Labels", "berth.alloc"}) == request.alloc_id &&
        GetString(*existing, {"State", "Status"}) == "running") {
      return HandleFromLabels(GetString(*existing, {"Id"}), (*existing)["Config"]["Labels"]);
    }
    BERTH_RETURN_IF_ERROR(client_->RemoveContainer(name, /*force=*/true));
    created = client_->CreateContainer(name, config);
  }
  if (!created.ok()) {
    if (created.status().code() == Code::kNotFound) {
      // The only thing create can miss is the image; the driver does not pull.
      return NotFound("image " + request.image + " not found (" + created.status().message() + ")");
    }
    return created.status();
  }
  const std::string id = *created;
  if (Status st = client_->StartContainer(id); !st.ok()) {
    // Nothing is left behind, so a retry starts clean.
    client_->RemoveContainer(id, /*force=*/true).IgnoreError();
    return st;
  }
  TaskHandle handle;
  handle.driver = "docker";
  handle.id = id;
  handle.alloc_id = request.alloc_id;
  handle.job = request.job;
  handle.group = request.group;
  handle.task = request.task;
  return handle;
}

Status DockerDriver::Stop(const TaskHandle& handle, std::chrono::milliseconds grace) {
  // The API takes whole seconds; round up so the task gets at least its grace.
  int seconds = static_cast<int>((grace.count() + 999) / 1000);
  return client_->StopContainer(handle.id, seconds);
}

Status DockerDriver::Kill(const TaskHandle& handle) {
  return client_->KillContainer(handle.id);
}

Status DockerDriver::Remove(const TaskHandle& handle) {
  return client_->RemoveContainer(handle.id, /*force=*/false);
}

Result<TaskStatus> DockerDriver::Inspect(const TaskHandle& handle) {
  auto doc = client_->InspectContainer(handle.id);
  TaskStatus status;
  if (!doc.ok()) {
    if (doc.status().code() != Code::kNotFound) return doc.status();
    status.state = TaskState::kMissing;
    status.message = doc.status().message();
    return status;
  }
  const std::string state = GetString(*doc, {"State", "Status"});
  status.state = state == "running" || state == "paused" || state == "restarting"
                     ? TaskState::kRunning
                     : TaskState::kExited;
  status.exit_code = static_cast<int>(GetInt(*doc, {"State", "ExitCode"}));
  status.pid = static_cast<int>(GetInt(*doc, {"State", "Pid"}));
  status.started_at_ms = ParseTimeMs(GetString(*doc, {"State", "StartedAt"}));
  status.finished_at_ms = ParseTimeMs(GetString(*doc, {"State", "FinishedAt"}));
  const auto* oom = Find(*doc, {"State", "OOMKilled"});
  status.oom_killed = oom != nullptr && oom->is_boolean() && oom->get<bool>();
  status.message = GetString(*doc, {"State", "Error"});
  if (status.message.empty()) status.message = state;

  const auto* labels = Find(*doc, {"Config", "Labels"});
  const auto* ports = Find(*doc, {"NetworkSettings", "Ports"});
  if (labels != nullptr && labels->is_object() && ports != nullptr && ports->is_object()) {
    for (const auto& [key, value] : labels->items()) {
      if (key.rfind(kPortLabelPrefix, 0) != 0 || !value.is_string()) continue;
      PortBinding binding;
      binding.name = key.substr(kPortLabelPrefix.size());
      binding.container_port = std::atoi(value.get<std::string>().c_str());
      auto it = ports->find(PortKey(binding.container_port));
      if (it != ports->end() && it->is_array() && !it->empty()) {
        binding.host_port = std::atoi(GetString((*it)[0], {"HostPort"}).c_str());
      }
      status.ports.push_back(binding);
    }
  }
  return status;
}

Result<int> DockerDriver::Wait(const TaskHandle& handle, std::chrono::milliseconds timeout) {
  BERTH_ASSIGN_OR_RETURN(int64_t code, client_->WaitContainer(handle.id, timeout));
  return static_cast<int>(code);
}

Status DockerDriver::Logs(const TaskHandle& handle, const LogOptions& options,
                          const std::function<bool(std::string_view)>& sink) {
  DockerClient::LogsRequest request;
  request.follow = options.follow;
  request.stdout = options.stdout;
  request.stderr = options.stderr;
  request.tail_lines = options.tail_lines;
  return client_->Logs(handle.id, request,
                       [&sink](int, std::string_view payload) { return sink(payload); });
}

Result<std::vector<TaskHandle>> DockerDriver::List() {
  std::vector<std::string> filters{"berth.alloc"};
  const std::string& machine = options_.machine_id;
  if (!machine.empty()) filters.push_back(std::string(kMachineLabel) + "=" + machine);
  BERTH_ASSIGN_OR_RETURN(auto containers, client_->ListContainers(filters, /*all=*/true));
  std::vector<TaskHandle> out;
  for (const auto& c : containers) {
    const std::string id = GetString(c, {"Id"});
    const auto* labels = Find(c, {"Labels"});
    if (id.empty() || labels == nullptr) continue;
    // The engine filtered already; this only guards against one that ignored the filter.
    if (!machine.empty() && GetString(*labels, {kMachineLabel}) != machine) continue;
    auto handle = HandleFromLabels(id, *labels);
    if (handle.ok()) out.push_back(std::move(handle).value());
  }
  return out;
}

DockerDriver::~DockerDriver() {
  SetExitCallback(nullptr);
}

std::map<std::string, std::vector<std::string>> DockerDriver::ExitEventFilters(
    const std::string& machine_id) {
  return {{"type", {"container"}},
          {"event", {"die"}},
          {"label",
           {machine_id.empty() ? std::string("berth.alloc")
                               : std::string(kMachineLabel) + "=" + machine_id}}};
}

void DockerDriver::SetExitCallback(std::function<void(const std::string& alloc_id)> callback) {
  std::lock_guard lock(watcher_mu_);
  if (callback == nullptr) {
    if (watcher_.joinable()) {
      watcher_.request_stop();  // closes the event stream at once
      watcher_.join();
    }
    notifier_.Set(nullptr);
    return;
  }
  notifier_.Set(std::move(callback));
  if (watcher_.joinable()) return;  // the stream is up (or reconnecting): keep it
  // Exits from now on, even those before the stream is open: the engine replays them.
  const int64_t since_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  watcher_ = std::jthread(
      [this, since_ns](std::stop_token stop) { WatchExits(std::move(stop), since_ns); });
}

void DockerDriver::WatchExits(std::stop_token stop, int64_t since_ns) {
  std::mutex mu;
  std::condition_variable_any wake;  // waits out the back-off, or a stop
  auto backoff = kMinBackoff;
  EventsRequest request;
  request.filters = ExitEventFilters(options_.machine_id);
  request.on_open = [&backoff] { backoff = kMinBackoff; };
  auto on_event = [&](const nlohmann::json& event) {
    since_ns = std::max(since_ns, GetInt(event, {"timeNano"}) + 1);
    std::string action = GetString(event, {"Action"});
    if (action.empty()) action = GetString(event, {"status"});  // engines before API 1.22
    const auto* attributes = Find(event, {"Actor", "Attributes"});
    if (action != "die" || attributes == nullptr) return true;
    // The engine filtered already; this only guards against one that ignored the filter.
    if (!options_.machine_id.empty() &&
        GetString(*attributes, {kMachineLabel}) != options_.machine_id) {
      return true;
    }
    std::string alloc_id = GetString(*attributes, {"berth.alloc"});
    if (!alloc_id.empty()) notifier_.Post(std::move(alloc_id));
    return true;
  };
  while (!stop.stop_requested()) {
    request.since_ns = since_ns;
    // Every end but a stop (engine down, restarting, or refusing) is retried after a back-off.
    client_->Events(request, on_event, stop).IgnoreError();
    std::unique_lock lock(mu);
    // The predicate never holds: this waits out the back-off and returns early on a stop.
    static_cast<void>(wake.wait_for(lock, stop, backoff, [] { return false; }));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace berth::driver
