#include "driver/docker_driver.h"

#include <cctype>
#include <ctime>

namespace berth::driver {

namespace {

constexpr std::string_view kPortLabelPrefix = "berth.port.";

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

std::string DockerDriver::ContainerName(const StartRequest& request) {
  std::string name = "berth-" + request.alloc_id + "-" + request.task;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '-';
  }
  return name;
}

nlohmann::json DockerDriver::ContainerConfig(const StartRequest& request,
                                             const std::string& publish_ip) {
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& [k, v] : request.labels) labels[k] = v;
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
  if (!mounts.empty()) host["Mounts"] = mounts;
  if (request.memory_bytes > 0) host["Memory"] = request.memory_bytes;
  if (request.cpu_shares > 0) host["CpuShares"] = request.cpu_shares;
  config["HostConfig"] = host;
  return config;
}

Result<TaskHandle> DockerDriver::Start(const StartRequest& request) {
  if (request.image.empty()) return InvalidArgument("docker task " + request.task + ": no image");
  const std::string name = ContainerName(request);
  const nlohmann::json config = ContainerConfig(request, options_.publish_ip);

  auto created = client_->CreateContainer(name, config);
  if (!created.ok() && created.status().code() == Code::kAlreadyExists) {
    // Left by an earlier attempt (the agent died between create and start): a running one with
    // our labels is this task, adopt it; anything else is stale.
    auto existing = client_->InspectContainer(name);
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
  BERTH_ASSIGN_OR_RETURN(auto containers, client_->ListContainers({"berth.alloc"}, /*all=*/true));
  std::vector<TaskHandle> out;
  for (const auto& c : containers) {
    const std::string id = GetString(c, {"Id"});
    const auto* labels = Find(c, {"Labels"});
    if (id.empty() || labels == nullptr) continue;
    auto handle = HandleFromLabels(id, *labels);
    if (handle.ok()) out.push_back(std::move(handle).value());
  }
  return out;
}

}  // namespace berth::driver
