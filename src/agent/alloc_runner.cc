#include "agent/alloc_runner.h"

#include <spdlog/spdlog.h>

#include <string.h>

#include <algorithm>
#include <filesystem>

#include "health/health_check.h"
#include "runtime/restart_tracker.h"

namespace berth::agent {

using runtime::RunState;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kMinUnavailableBackoff{100};
constexpr milliseconds kMaxUnavailableBackoff{30'000};
// The exit code of a task whose end the agent did not see (re-adopted process, vanished task).
constexpr int kUnknownExit = -1;

std::string Seconds(Duration d) {
  auto ms = std::chrono::duration_cast<milliseconds>(d).count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  char buf[32];
  snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  return buf;
}

int PidOf(const driver::TaskHandle& h) {
  if (h.driver != "process") return 0;
  return std::atoi(h.id.c_str());
}

}  // namespace

std::string Interpolate(const std::string& s, const std::map<std::string, std::string>& vars) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      size_t end = s.find('}', i + 2);
      if (end != std::string::npos) {
        auto it = vars.find(s.substr(i + 2, end - i - 2));
        if (it != vars.end()) {
          out += it->second;
          i = end + 1;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

struct AllocRunner::TaskRun {
  TaskRun(const spec::Task& task, const spec::Group& group, spec::JobType type)
      : spec(&task), restart(group.restart, type) {}

  const spec::Task* spec;
  driver::Driver* driver = nullptr;
  std::optional<driver::TaskHandle> handle;
  // The last run, exited but kept (a container is not removed at once) so its logs can still be
  // read; removed before the next start or when the allocation stops.
  std::optional<driver::TaskHandle> dead;
  runtime::RestartTracker restart;
  int base_restarts = 0;  // restarts counted before this runner (previous status)
  health::ProbePtr probe;
  std::unique_ptr<health::HealthTracker> health;
  runtime::TaskReport report;
  TimePoint next_start{};
  TimePoint next_poll{};
  milliseconds unavailable_backoff = kMinUnavailableBackoff;
  bool looked_for_existing = false;
  bool waiting_for_driver = false;  // the last start found the driver unreachable
  bool waiting_for_secret = false;  // the last start could not open a secret
  milliseconds secret_backoff{0};   // the wait before the next try after a secret failure
  std::string secret_error;         // the last secret failure, to add an event only on change
  bool final = false;               // failed, complete or stopped: nothing more to do
};

AllocRunner::AllocRunner(runtime::Allocation alloc, RunnerDeps deps,
                         std::vector<driver::TaskHandle> adopted,
                         std::optional<runtime::AllocStatus> previous)
    : alloc_(std::move(alloc)), group_(alloc_.FindGroup()), deps_(std::move(deps)) {
  status_ = runtime::AllocStatus::Pending(alloc_);
  status_.machine = deps_.machine_id;
  if (previous) status_.events = previous->events;
  if (group_ == nullptr) return;  // FromJson guarantees a group; be safe anyway
  for (size_t i = 0; i < group_->tasks.size(); ++i) {
    const spec::Task& task = group_->tasks[i];
    auto t = std::make_unique<TaskRun>(task, *group_, alloc_.spec.type);
    t->report = status_.tasks[i];
    if (previous) {
      for (const auto& r : previous->tasks) {
        if (r.name != task.name) continue;
        t->report.state = r.state;
        t->report.restarts = t->base_restarts = r.restarts;
        t->report.exit_code = r.exit_code;
        t->report.started_at_ms = r.started_at_ms;
        t->report.finished_at_ms = r.finished_at_ms;
        t->report.message = r.message;
        t->report.ports = r.ports;
      }
    }
    for (const auto& h : adopted) {
      if (h.task == task.name) t->handle = h;
    }
    tasks_.push_back(std::move(t));
  }
}

AllocRunner::~AllocRunner() {
  Detach();
}

void AllocRunner::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void AllocRunner::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void AllocRunner::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

void AllocRunner::Join() {
  if (thread_.joinable()) thread_.join();
}

void AllocRunner::Detach() {
  {
    std::lock_guard lock(mu_);
    detach_ = true;
  }
  cv_.notify_all();
  Join();
}

runtime::AllocStatus AllocRunner::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::optional<driver::TaskHandle> AllocRunner::handle(const std::string& task) const {
  std::lock_guard lock(mu_);
  auto it = handles_.find(task);
  if (it == handles_.end()) return std::nullopt;
  return it->second;
}

void AllocRunner::Event(TaskRun* t, std::string type, std::string message) {
  runtime::TaskEvent e{deps_.clock->WallMillis(), t ? t->spec->name : "", std::move(type),
                       std::move(message)};
  spdlog::info("alloc {}{}{}: {}: {}", alloc_.id, t ? " task " : "", e.task, e.type, e.message);
  std::lock_guard lock(mu_);
  status_.AddEvent(std::move(e));
  dirty_ = true;
}

void AllocRunner::Loop() {
  if (group_ == nullptr) {
    done_ = true;
    return;
  }
  // Ports that tasks held before (previous status) stay theirs, so restarts and re-adopted
  // tasks keep their ports.
  for (auto& t : tasks_) {
    if (deps_.ports == nullptr || t->report.ports.empty()) continue;
    std::vector<int> held;
    for (const auto& [name, port] : t->report.ports) held.push_back(port);
    if (!deps_.ports->Reserve(held).ok() && !t->handle) t->report.ports.clear();
  }
  for (auto& t : tasks_) Prepare(*t);
  Publish();
  while (true) {
    bool woke = false;
    {
      std::lock_guard lock(mu_);
      if (stop_ || detach_) break;
      woke = wake_;
      wake_ = false;
    }
    for (auto& tp : tasks_) {
      TaskRun& t = *tp;
      if (t.final) continue;
      TimePoint now = deps_.clock->Now();
      if (!t.handle) {
        // A wake-up (the driver answers again) cuts an unreachable-driver back-off short.
        // So does one for a task waiting for a secret (it may have been set just now).
        if (now >= t.next_start || (woke && (t.waiting_for_driver || t.waiting_for_secret))) {
          TryStart(t);
        }
      } else {
        if (woke || now >= t.next_poll) Observe(t);
        if (t.handle && t.health && t.health->Due()) CheckHealth(t);
      }
    }
    if (dirty_) Publish();
    TimePoint deadline = NextDeadline();
    std::unique_lock lock(mu_);
    auto wait = std::chrono::duration_cast<milliseconds>(deadline - deps_.clock->Now());
    wait = std::clamp(wait, milliseconds(1), deps_.poll_interval);
    cv_.wait_for(lock, wait, [this] { return stop_ || detach_ || wake_; });
  }
  bool stopping = false;
  {
    std::lock_guard lock(mu_);
    stopping = stop_;
  }
  if (stopping) {
    for (auto& t : tasks_) StopTask(*t);
    if (deps_.ports != nullptr) {
      std::vector<int> held;
      for (auto& t : tasks_) {
        for (const auto& [name, port] : t->report.ports) held.push_back(port);
      }
      deps_.ports->Release(held);
    }
    // The allocation's directory (process logs, state) goes with it, once nothing runs there.
    bool all_stopped = std::none_of(tasks_.begin(), tasks_.end(),
                                    [](const auto& t) { return t->handle.has_value(); });
    if (all_stopped && !deps_.alloc_root.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path(deps_.alloc_root) / alloc_.id, ec);
    }
    if (all_stopped && deps_.secrets_dir) deps_.secrets_dir->RemoveAlloc(alloc_.id);
    Publish();
  }
  done_ = true;
}

TimePoint AllocRunner::NextDeadline() const {
  TimePoint next = deps_.clock->Now() + deps_.poll_interval;
  for (const auto& t : tasks_) {
    if (t->final) continue;
    if (!t->handle) {
      next = std::min(next, t->next_start);
    } else {
      next = std::min(next, t->next_poll);
      if (t->health) next = std::min(next, t->health->NextCheckAt());
    }
  }
  return next;
}

void AllocRunner::Prepare(TaskRun& t) {
  auto it = deps_.drivers.find(t.spec->driver);
  if (it != deps_.drivers.end()) t.driver = it->second;
  if (t.driver == nullptr) {
    t.final = true;
    t.report.state = RunState::kFailed;
    t.report.message = "this machine has no " + t.report.driver + " driver";
    Event(&t, "failed", t.report.message);
    return;
  }
  if (t.handle) {
    t.looked_for_existing = true;
    SetHandle(t, *t.handle);
    // A run the previous agent had already seen end (kept for its logs) is not an exit to act
    // on again.
    RunState was = t.report.state;
    if (was == RunState::kFailed || was == RunState::kComplete || was == RunState::kRestarting ||
        was == RunState::kStopped) {
      auto st = t.driver->Inspect(*t.handle);
      if (st.ok() && st->state != driver::TaskState::kRunning) {
        t.dead = t.handle;
        t.handle.reset();
        t.report.handle.clear();
        if (was == RunState::kFailed || was == RunState::kComplete) {
          t.final = true;
        } else {
          t.report.state = RunState::kRestarting;
          t.next_start = deps_.clock->Now();
        }
        return;
      }
    }
    Event(&t, "adopted", "re-adopted " + t.handle->id + " after an agent restart");
    t.restart.OnStarted(deps_.clock->Now());
    StartHealth(t);
    Observe(t);
    return;
  }
  switch (t.report.state) {
    case RunState::kFailed:
    case RunState::kComplete:
      t.final = true;  // the restart policy already decided; do not run it again
      RemoveSecrets(t);
      return;
    case RunState::kRunning:
      // It ran when the last agent stopped. Ask its driver again: an engine that cannot be
      // listed yet says nothing about whether the task still runs.
      if (deps_.find_existing) {
        auto existing = deps_.find_existing(alloc_.id, t.spec->name, t.spec->driver);
        if (!existing.ok()) {
          t.report.message = "cannot tell whether it still runs: " + existing.status().message();
          t.waiting_for_driver = true;
          t.next_start = deps_.clock->Now() + t.unavailable_backoff;
          t.unavailable_backoff = std::min(t.unavailable_backoff * 2, kMaxUnavailableBackoff);
          Event(&t, "inspect-error", t.report.message);
          return;
        }
        t.looked_for_existing = true;
        if (*existing) {
          t.handle = **existing;
          Prepare(t);
          return;
        }
      }
      OnExit(t, kUnknownExit, false, "gone while the agent was down");
      return;
    default:
      t.report.state = RunState::kPending;
      t.next_start = deps_.clock->Now();
      return;
  }
}

void AllocRunner::SetHandle(TaskRun& t, const driver::TaskHandle& h) {
  t.handle = h;
  t.report.handle = h.id;
  std::lock_guard lock(mu_);
  handles_[t.spec->name] = h;
}

void AllocRunner::StartHealth(TaskRun& t) {
  t.probe.reset();
  t.health.reset();
  if (!t.spec->health) return;
  t.report.health = "unknown";
  auto port = t.report.ports.find(t.spec->health->port);
  auto probe = health::MakeProbe(*t.spec->health, deps_.check_host,
                                 port == t.report.ports.end() ? 0 : port->second);
  if (!probe.ok()) {
    t.report.health_message = probe.status().message();
    return;
  }
  t.probe = std::move(*probe);
  t.health = std::make_unique<health::HealthTracker>(*t.spec->health, deps_.clock);
}

void AllocRunner::RemoveTask(TaskRun& t, const driver::TaskHandle& h) {
  Status removed = t.driver->Remove(h);
  if (!removed.ok() && removed.code() != Code::kNotFound) {
    spdlog::warn("alloc {} task {}: removing {}: {}", alloc_.id, t.spec->name, h.id,
                 removed.message());
  }
}

void AllocRunner::RemoveDead(TaskRun& t) {
  if (!t.dead) return;
  RemoveTask(t, *t.dead);
  t.dead.reset();
  std::lock_guard lock(mu_);
  if (!t.handle) handles_.erase(t.spec->name);
}

driver::StartRequest AllocRunner::BuildRequest(const TaskRun& t) const {
  const spec::Task& task = *t.spec;
  bool docker = task.driver == spec::DriverKind::kDocker;
  driver::StartRequest r;
  r.alloc_id = alloc_.id;
  r.job = alloc_.job;
  r.group = alloc_.group;
  r.task = task.name;
  r.task_dir = deps_.alloc_root + "/" + alloc_.id;
  std::map<std::string, std::string> vars{
      {"BERTH_ALLOC_ID", alloc_.id},
      {"BERTH_ALLOC_INDEX", std::to_string(alloc_.index)},
      {"BERTH_JOB", alloc_.job},
      {"BERTH_GROUP", alloc_.group},
      {"BERTH_TASK", task.name},
      {"BERTH_MACHINE_ID", deps_.machine_id},
      {"BERTH_JOB_VERSION", std::to_string(alloc_.job_version)}};
  if (!docker) vars["BERTH_TASK_DIR"] = r.task_dir;
  bool file_secrets = std::any_of(task.secrets.begin(), task.secrets.end(),
                                  [](const spec::SecretRef& s) { return !s.file.empty(); });
  if (file_secrets) {
    vars["BERTH_SECRETS_DIR"] =
        docker ? std::string(spec::kContainerSecretsDir)
               : (deps_.secrets_dir ? deps_.secrets_dir->TaskDir(alloc_.id, task.name) : "");
  }
  for (const auto& p : task.ports) {
    auto it = t.report.ports.find(p.name);
    int host = it == t.report.ports.end() ? 0 : it->second;
    int inside = docker && p.to != 0 ? p.to : host;
    r.ports.push_back({p.name, host, inside});
    vars["BERTH_PORT_" + p.name] = std::to_string(inside);
    vars["BERTH_HOST_PORT_" + p.name] = std::to_string(host);
  }
  r.env = vars;
  for (const auto& [k, v] : task.env) r.env[k] = Interpolate(v, vars);
  r.image = task.image;
  r.command = Interpolate(task.command, vars);
  for (const auto& a : task.args) r.args.push_back(Interpolate(a, vars));
  r.workdir = task.workdir;
  r.cpu_shares = task.resources.cpu;
  r.memory_bytes = task.resources.memory_bytes;
  for (const auto& v : task.volumes) r.volumes.push_back({v.source, v.target, v.read_only});
  r.labels = task.labels;
  return r;
}

void AllocRunner::TryStart(TaskRun& t) {
  TimePoint now = deps_.clock->Now();
  auto start_failed = [&](const Status& st) {
    if (st.code() == Code::kUnavailable) {
      t.waiting_for_driver = true;
      // The engine (or the machine) is not there: not the task's fault, so no attempt is used.
      t.next_start = now + t.unavailable_backoff;
      t.report.message = st.message() + "; retrying in " +
                         Seconds(std::chrono::duration_cast<Duration>(t.unavailable_backoff));
      t.unavailable_backoff = std::min(t.unavailable_backoff * 2, kMaxUnavailableBackoff);
      Event(&t, "start-error", t.report.message);
      return;
    }
    Event(&t, "start-error", st.message());
    OnExit(t, kUnknownExit, false, "could not start: " + st.message());
  };
  if (!t.looked_for_existing && deps_.find_existing) {
    auto existing = deps_.find_existing(alloc_.id, t.spec->name, t.spec->driver);
    if (!existing.ok()) return start_failed(existing.status());
    t.looked_for_existing = true;
    t.waiting_for_driver = false;
    if (*existing) {
      t.handle = **existing;
      Prepare(t);
      return;
    }
  }
  // Host ports: taken at the first start, kept across restarts.
  std::vector<spec::Port> missing;
  for (const auto& p : t.spec->ports) {
    if (!t.report.ports.count(p.name)) missing.push_back(p);
  }
  if (!missing.empty() && deps_.ports != nullptr) {
    auto got = deps_.ports->Allocate(missing);
    if (!got.ok()) return start_failed(got.status());
    for (size_t i = 0; i < missing.size(); ++i) t.report.ports[missing[i].name] = (*got)[i];
  }
  driver::StartRequest request = BuildRequest(t);
  // Wipes the plaintext of env secrets in the request once the driver has it (the driver wipes
  // its own copies; files are written and their buffers wiped by the SecretsDir).
  struct EnvWiper {
    driver::StartRequest& r;
    ~EnvWiper() {
      for (auto& [name, value] : r.secret_env) explicit_bzero(value.data(), value.size());
    }
  } wiper{request};
  if (!t.spec->secrets.empty()) {
    Status opened = OpenSecrets(t, &request);
    if (!opened.ok()) return SecretFailed(t, opened);
  }
  RemoveDead(t);  // the exited run's container would hold the name
  if (deps_.start_gate) deps_.start_gate->acquire();
  auto handle = t.driver->Start(request);
  if (deps_.start_gate) deps_.start_gate->release();
  if (!handle.ok()) {
    RemoveSecrets(t);
    return start_failed(handle.status());
  }
  t.unavailable_backoff = kMinUnavailableBackoff;
  t.waiting_for_driver = false;
  t.waiting_for_secret = false;
  t.secret_backoff = milliseconds(0);
  t.secret_error.clear();
  SetHandle(t, *handle);
  t.report.state = RunState::kRunning;
  t.report.pid = PidOf(*handle);
  t.report.started_at_ms = deps_.clock->WallMillis();
  t.report.message = "started";
  t.restart.OnStarted(now);
  t.next_poll = now + deps_.poll_interval;
  StartHealth(t);
  Event(&t, "started", handle->id);
}

Status AllocRunner::OpenSecrets(const TaskRun& t, driver::StartRequest* r) {
  const spec::Task& task = *t.spec;
  // The source's messages name the path ("secret db/password: not found"); say it otherwise.
  auto named = [](const spec::SecretRef& ref, const Status& st) {
    if (st.message().find(ref.path) != std::string::npos) return st;
    return Status(st.code(), "secret " + ref.path + ": " + st.message());
  };
  std::vector<SecretFile> files;
  bool wants_files = false;
  for (const auto& ref : task.secrets) wants_files |= !ref.file.empty();
  if (wants_files) {
    if (!deps_.secrets_dir) {
      return FailedPrecondition("this agent has no secrets directory for the task's secret files");
    }
    // A machine problem, not a secret's: said first, and whatever the secrets' state.
    BERTH_RETURN_IF_ERROR(deps_.secrets_dir->Ready());
  }
  for (const auto& ref : task.secrets) {
    if (!deps_.secrets) {
      return named(ref, FailedPrecondition("this agent cannot open secrets (no secret source)"));
    }
    auto value = deps_.secrets->Open(ref.path);
    if (!value.ok()) return named(ref, value.status());
    if (!ref.file.empty()) {
      files.push_back({ref.file, ref.mode, std::move(*value), ref.uid, ref.gid});
      continue;
    }
    if (value->view().find('\0') != std::string_view::npos) {
      return named(ref, InvalidArgument("the value holds a NUL byte, which an environment "
                                        "variable cannot (use a file target)"));
    }
    std::string& slot = r->secret_env[ref.env];
    explicit_bzero(slot.data(), slot.size());
    slot.assign(value->view());
  }
  if (!files.empty()) {
    auto dir = deps_.secrets_dir->Write(alloc_.id, task.name, files);
    if (!dir.ok()) return dir.status();
    r->secrets_dir = *dir;
  }
  return Status::Ok();
}

void AllocRunner::SecretFailed(TaskRun& t, const Status& st) {
  TimePoint now = deps_.clock->Now();
  // The restart policy's back-off, but no attempt is used: the task never ran, and it should
  // start as soon as its secret can be opened, however long that takes.
  const spec::RestartPolicy& policy = group_->restart;
  milliseconds floor = std::max(policy.delay, milliseconds(100));
  milliseconds cap = std::max(policy.max_delay, floor);
  t.secret_backoff = t.secret_backoff.count() == 0 ? floor : std::min(t.secret_backoff * 2, cap);
  t.waiting_for_secret = true;
  t.next_start = now + t.secret_backoff;
  t.report.message = st.message() + "; not started, trying again in " +
                     Seconds(std::chrono::duration_cast<Duration>(t.secret_backoff));
  dirty_ = true;
  if (st.message() != t.secret_error) {
    t.secret_error = st.message();
    Event(&t, "secret-error", st.message());
  }
}

void AllocRunner::RemoveSecrets(const TaskRun& t) {
  if (!deps_.secrets_dir) return;
  bool files = std::any_of(t.spec->secrets.begin(), t.spec->secrets.end(),
                           [](const spec::SecretRef& s) { return !s.file.empty(); });
  if (files) deps_.secrets_dir->RemoveTask(alloc_.id, t.spec->name);
}

void AllocRunner::Observe(TaskRun& t) {
  TimePoint now = deps_.clock->Now();
  t.next_poll = now + deps_.poll_interval;
  auto st = t.driver->Inspect(*t.handle);
  if (!st.ok()) {
    if (st.status().code() == Code::kNotFound) {
      OnExit(t, kUnknownExit, false, "vanished: " + st.status().message());
      return;
    }
    std::string msg = "cannot inspect: " + st.status().message();
    if (t.report.message != msg) {
      t.report.message = msg;
      Event(&t, "inspect-error", msg);
    }
    return;
  }
  switch (st->state) {
    case driver::TaskState::kRunning:
      if (t.report.state != RunState::kRunning) {
        t.report.state = RunState::kRunning;
        dirty_ = true;
      }
      if (st->pid != 0 && t.report.pid != st->pid) {
        t.report.pid = st->pid;
        dirty_ = true;
      }
      if (t.report.message.rfind("cannot inspect", 0) == 0) {
        t.report.message = "running";
        dirty_ = true;
      }
      for (const auto& p : st->ports) {
        if (p.host_port != 0 && t.report.ports[p.name] != p.host_port) {
          t.report.ports[p.name] = p.host_port;
          dirty_ = true;
        }
      }
      return;
    case driver::TaskState::kExited:
      OnExit(t, st->exit_code, st->oom_killed, st->message);
      return;
    case driver::TaskState::kMissing:
      OnExit(t, kUnknownExit, false, "vanished");
      return;
  }
}

void AllocRunner::OnExit(TaskRun& t, int exit_code, bool oom, const std::string& why) {
  TimePoint now = deps_.clock->Now();
  if (t.handle) {
    RemoveDead(t);
    t.dead = t.handle;  // kept, with its logs, until the next start
    t.handle.reset();
  }
  RemoveSecrets(t);  // the run is over; the next start writes them afresh
  t.probe.reset();
  t.health.reset();
  if (t.spec->health) t.report.health = "unknown";
  t.report.pid = 0;
  t.report.handle.clear();
  t.report.exit_code = exit_code;
  t.report.finished_at_ms = deps_.clock->WallMillis();
  std::string what;
  if (why.rfind("could not start", 0) == 0) {
    what = why;
  } else {
    what = exit_code == kUnknownExit ? "exited (code unknown)"
                                     : "exited with code " + std::to_string(exit_code);
    if (oom) what += " (out of memory)";
    if (!why.empty()) what += ": " + why;
  }
  runtime::RestartDecision d = t.restart.OnExit(exit_code == kUnknownExit ? 255 : exit_code, now);
  t.report.restarts = t.base_restarts + t.restart.restart_count();
  switch (d.kind) {
    case runtime::RestartDecision::Kind::kRestart:
      t.report.state = RunState::kRestarting;
      t.next_start = d.restart_at;
      t.report.message = what + "; " + d.message;
      Event(&t, "restarting", t.report.message);
      break;
    case runtime::RestartDecision::Kind::kComplete:
      t.final = true;
      t.report.state = RunState::kComplete;
      t.report.message = what;
      Event(&t, "complete", t.report.message);
      break;
    case runtime::RestartDecision::Kind::kFailed:
      t.final = true;
      t.report.state = RunState::kFailed;
      t.report.message = what + "; " + d.message;
      Event(&t, "failed", t.report.message);
      break;
  }
}

void AllocRunner::CheckHealth(TaskRun& t) {
  health::ProbeOutcome outcome = t.probe->Run();
  bool changed = t.health->Record(outcome);
  t.report.health_message = outcome.message;
  if (!changed) return;
  t.report.health = std::string(health::HealthStateName(t.health->state()));
  if (t.health->state() == health::HealthState::kHealthy) {
    t.restart.OnStable(deps_.clock->Now());
  }
  Event(&t, "health", t.report.health + ": " + outcome.message);
}

void AllocRunner::StopTask(TaskRun& t) {
  RemoveDead(t);
  if (!t.handle) {
    if (!t.final) t.report.state = RunState::kStopped;  // failed or complete stay so
    return;
  }
  Status st = t.driver->Stop(*t.handle, t.spec->kill_timeout);
  if (!st.ok() && st.code() != Code::kNotFound) {
    t.report.message = "stop failed: " + st.message();
    Event(&t, "stop-error", t.report.message);
    return;
  }
  RemoveTask(t, *t.handle);
  t.handle.reset();
  {
    std::lock_guard lock(mu_);
    handles_.erase(t.spec->name);
  }
  RemoveSecrets(t);
  t.report.state = RunState::kStopped;
  t.report.pid = 0;
  t.report.finished_at_ms = deps_.clock->WallMillis();
  t.report.message = "stopped";
  t.final = true;
  Event(&t, "stopped", "stopped");
}

void AllocRunner::Publish() {
  runtime::AllocStatus copy;
  {
    std::lock_guard lock(mu_);
    status_.tasks.clear();
    for (const auto& t : tasks_) status_.tasks.push_back(t->report);
    status_.Summarize();
    status_.message.clear();
    for (const auto& t : tasks_) {
      if (t->report.state != RunState::kRunning && !t->report.message.empty()) {
        status_.message = t->spec->name + ": " + t->report.message;
        break;
      }
    }
    status_.updated_at_ms = deps_.clock->WallMillis();
    copy = status_;
  }
  dirty_ = false;
  if (deps_.publish) {
    Status st = deps_.publish(copy);
    if (!st.ok()) {
      dirty_ = true;  // retried at the next poll
      spdlog::debug("alloc {}: publishing status: {}", alloc_.id, st.message());
    }
  }
}

}  // namespace berth::agent
