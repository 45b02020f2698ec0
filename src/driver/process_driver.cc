#include "driver/process_driver.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace berth::driver {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string ErrnoText(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// What /proc says about a pid: its state letter and start time (clock ticks since boot).
struct ProcStat {
  char state = '?';
  uint64_t start_time = 0;
};

std::optional<ProcStat> ReadProcStat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  ProcStat st;
  rest >> st.state;  // field 3
  std::string field;
  for (int i = 4; i < 22 && rest >> field; ++i) {
  }
  if (!(rest >> st.start_time)) return std::nullopt;  // field 22
  return st;
}

bool ParseId(const std::string& id, int* pid, uint64_t* start) {
  size_t colon = id.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == id.size()) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i != colon && (id[i] < '0' || id[i] > '9')) return false;
  }
  if (colon > 9) return false;
  *pid = std::stoi(id.substr(0, colon));
  *start = std::stoull(id.substr(colon + 1));
  return *pid > 0;
}

// Resolves `command` like execvp would, but before fork, so errors are reported synchronously.
Result<std::string> ResolveCommand(const std::string& command, const std::string& path_env,
                                   const std::string& workdir) {
  if (command.find('/') != std::string::npos) {
    std::string path = command[0] == '/' ? command : workdir + "/" + command;
    if (access(path.c_str(), F_OK) != 0) return NotFound("command \"" + command + "\" not found");
    if (access(path.c_str(), X_OK) != 0 || fs::is_directory(path)) {
      return PermissionDenied("command \"" + command + "\" is not executable");
    }
    return path;
  }
  bool found_not_executable = false;
  std::istringstream dirs(path_env);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    std::string path = dir + "/" + command;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) continue;
    if (access(path.c_str(), X_OK) == 0) return path;
    found_not_executable = true;
  }
  if (found_not_executable) {
    return PermissionDenied("command \"" + command + "\" is not executable");
  }
  return NotFound("command \"" + command + "\" not found in PATH " + path_env);
}

// Opens with O_CLOEXEC and moves the descriptor above 2, so the child's dup2 onto 0/1/2 never
// lands on itself even if the agent runs with a closed standard descriptor.
int OpenHigh(const std::string& path, int flags, mode_t mode = 0) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0 || fd > 2) return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return high;
}

std::string LogPath(const std::string& task_dir, const std::string& task, const char* stream) {
  return task_dir + "/logs/" + task + "." + stream;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Maps Docker-style cpu shares (2..262144, default 1024) onto cgroup v2 cpu.weight (1..10000).
int64_t SharesToWeight(int64_t shares) {
  shares = std::clamp<int64_t>(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

bool WriteSmallFile(const std::string& path, const std::string& data, std::string* error) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = path + ": " + ErrnoText(errno);
    return false;
  }
  ssize_t n = write(fd, data.data(), data.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(data.size())) {
    *error = path + ": " + ErrnoText(err);
    return false;
  }
  return true;
}

std::string SafeName(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return out;
}

}  // namespace

// One task, as its state file holds it.
struct ProcessDriver::TaskRecord {
  TaskHandle handle;
  int pid = 0;
  uint64_t start_time = 0;
  std::string command;
  std::vector<std::string> args;
  std::string task_dir;
  std::string workdir;
  std::vector<PortBinding> ports;
  int64_t started_at_ms = 0;
  std::string cgroup;   // path of the task's cgroup, empty if none
  std::string message;  // e.g. why limits were not applied
  bool exited = false;
  int exit_code = 0;
  int64_t finished_at_ms = 0;
  bool oom_killed = false;

  json ToJson() const {
    json ports_json = json::array();
    for (const auto& p : ports) {
      ports_json.push_back(
          {{"name", p.name}, {"host_port", p.host_port}, {"container_port", p.container_port}});
    }
    return {{"version", 1},
            {"id", handle.id},
            {"alloc_id", handle.alloc_id},
            {"job", handle.job},
            {"group", handle.group},
            {"task", handle.task},
            {"pid", pid},
            {"start_time", start_time},
            {"command", command},
            {"args", args},
            {"task_dir", task_dir},
            {"workdir", workdir},
            {"ports", ports_json},
            {"started_at_ms", started_at_ms},
            {"cgroup", cgroup},
            {"message", message},
            {"exited", exited},
            {"exit_code", exit_code},
            {"finished_at_ms", finished_at_ms},
            {"oom_killed", oom_killed}};
  }

  static Result<TaskRecord> FromJson(const std::string& text) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return InvalidArgument("state file is not a JSON object");
    try {
      TaskRecord r;
      r.handle.driver = "process";
      r.handle.id = j.at("id").get<std::string>();
      r.handle.alloc_id = j.value("alloc_id", "");
      r.handle.job = j.value("job", "");
      r.handle.group = j.value("group", "");
      r.handle.task = j.value("task", "");
      r.pid = j.at("pid").get<int>();
      r.start_time = j.at("start_time").get<uint64_t>();
      r.command = j.value("command", "");
      r.args = j.value("args", std::vector<std::string>{});
      r.task_dir = j.value("task_dir", "");
      r.workdir = j.value("workdir", "");
      for (const auto& p : j.value("ports", json::array())) {
        r.ports.push_back(
            {p.value("name", ""), p.value("host_port", 0), p.value("container_port", 0)});
      }
      r.started_at_ms = j.value("started_at_ms", int64_t{0});
      r.cgroup = j.value("cgroup", "");
      r.message = j.value("message", "");
      r.exited = j.value("exited", false);
      r.exit_code = j.value("exit_code", 0);
      r.finished_at_ms = j.value("finished_at_ms", int64_t{0});
      r.oom_killed = j.value("oom_killed", false);
      return r;
    } catch (const json::exception& e) {
      return InvalidArgument(std::string("state file: ") + e.what());
    }
  }
};

Result<std::unique_ptr<ProcessDriver>> ProcessDriver::Create(ProcessDriverOptions options) {
  if (options.state_dir.empty()) return InvalidArgument("process driver: state_dir is empty");
  if (options.log_max_bytes <= 0 || options.log_max_files < 1) {
    return InvalidArgument("process driver: log_max_bytes and log_max_files must be positive");
  }
  std::error_code ec;
  fs::create_directories(options.state_dir, ec);
  if (ec) {
    return Unavailable("process driver: cannot create state dir " + options.state_dir + ": " +
                       ec.message());
  }
  if (!options.clock) options.clock = SystemClock::Shared();
  return std::unique_ptr<ProcessDriver>(new ProcessDriver(std::move(options)));
}

ProcessDriver::ProcessDriver(ProcessDriverOptions options) : options_(std::move(options)) {
  if (options_.maintenance_interval.count() > 0) {
    maintenance_ = std::thread([this] { MaintenanceLoop(); });
  }
}

ProcessDriver::~ProcessDriver() {
  notifier_.Set(nullptr);
  {
    std::lock_guard<std::mutex> lock(maintenance_mu_);
    stopping_ = true;
  }
  maintenance_cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
}

void ProcessDriver::SetExitCallback(std::function<void(const std::string& alloc_id)> callback) {
  notifier_.Set(std::move(callback));
}

void ProcessDriver::MaintenanceLoop() {
  std::unique_lock<std::mutex> lock(maintenance_mu_);
  while (!stopping_) {
    maintenance_cv_.wait_for(lock, options_.maintenance_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    RotateLogs().IgnoreError();  // best effort; the next round retries
    lock.lock();
  }
}

std::string ProcessDriver::StatePath(const std::string& id) const {
  std::string name = id;
  std::replace(name.begin(), name.end(), ':', '_');
  return options_.state_dir + "/" + name + ".json";
}

Result<ProcessDriver::TaskRecord> ProcessDriver::Load(const TaskHandle& handle) {
  int pid = 0;
  uint64_t start = 0;
  if (!ParseId(handle.id, &pid, &start)) {
    return InvalidArgument("process driver: malformed handle id \"" + handle.id + "\"");
  }
  auto text = ReadFile(StatePath(handle.id));
  if (!text.ok()) return NotFound("process task " + handle.id + " not found");
  auto record = TaskRecord::FromJson(*text);
  if (!record.ok()) return record.status().Annotate("process task " + handle.id);
  if (record->pid != pid || record->start_time != start) {
    return NotFound("process task " + handle.id + " not found");
  }
  return record;
}

Status ProcessDriver::Save(const TaskRecord& record) {
  std::string path = StatePath(record.handle.id);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << record.ToJson().dump(2) << "\n";
    out.flush();
    if (!out) return Unavailable("process driver: cannot write " + tmp);
  }
  // rename is atomic: a reader (or an agent restarting after a crash) sees the old or new file.
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return Unavailable("process driver: cannot write " + path + ": " + ErrnoText(err));
  }
  return Status::Ok();
}

Result<TaskStatus> ProcessDriver::Observe(TaskRecord& record) {
  TaskStatus status;
  status.pid = record.pid;
  status.started_at_ms = record.started_at_ms;
  status.ports = record.ports;
  status.message = record.message;
  if (!record.exited) {
    std::lock_guard<std::mutex> lock(mu_);
    // Re-read under the lock: another call may have reaped it and saved the exit meanwhile.
    auto fresh = ReadFile(StatePath(record.handle.id));
    if (fresh.ok()) {
      auto parsed = TaskRecord::FromJson(*fresh);
      if (parsed.ok()) record = std::move(parsed).value();
    }
    if (!record.exited) {
      auto st = ReadProcStat(record.pid);
      bool ours = st && st->start_time == record.start_time;
      if (ours && st->state != 'Z') {
        status.state = TaskState::kRunning;
        return status;
      }
      // The process ended. If it is our (zombie) child, waitpid gives the exit code; its pid
      // cannot be recycled while it is a zombie, so the start-time check above still holds.
      bool known = false;
      if (ours) {
        int wstatus = 0;
        pid_t r = waitpid(record.pid, &wstatus, WNOHANG);
        if (r == record.pid) {
          known = true;
          record.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
        } else if (r == 0) {
          status.state = TaskState::kRunning;  // a zombie not yet reapable: it is exiting
          return status;
        }
      }
      if (!known) {
        record.exit_code = kExitCodeUnknown;
        std::string why =
            "exit code unknown: the process ended while it was not a child of this agent "
            "(re-adopted after an agent restart)";
        record.message = record.message.empty() ? why : record.message + "; " + why;
      }
      record.exited = true;
      record.finished_at_ms = options_.clock->WallMillis();
      if (!record.cgroup.empty()) {
        auto events = ReadFile(record.cgroup + "/memory.events");
        if (events.ok()) {
          auto pos = events->find("oom_kill ");
          record.oom_killed = pos != std::string::npos && events->compare(pos + 9, 1, "0") != 0;
        }
      }
      BERTH_RETURN_IF_ERROR(Save(record));
      // Only the call that records the exit gets here (under mu_), so each exit is posted once.
      if (!record.handle.alloc_id.empty()) notifier_.Post(record.handle.alloc_id);
    }
  }
  status.state = TaskState::kExited;
  status.exit_code = record.exit_code;
  status.finished_at_ms = record.finished_at_ms;
  status.oom_killed = record.oom_killed;
  status.message = record.message;
  return status;
}

Result<TaskHandle> ProcessDriver::Start(const StartRequest& request) {
  if (request.command.empty()) return InvalidArgument("process driver: command is empty");
  if (request.task.empty()) return InvalidArgument("process driver: task name is empty");
  if (request.task_dir.empty()) return InvalidArgument("process driver: task_dir is empty");
  std::error_code ec;
  fs::create_directories(request.task_dir + "/logs", ec);
  if (ec) {
    return Unavailable("process driver: cannot create " + request.task_dir +
                       "/logs: " + ec.message());
  }
  std::string workdir = request.workdir.empty() ? request.task_dir : request.workdir;
  if (!fs::is_directory(workdir, ec)) {
    return NotFound("process driver: working directory " + workdir + " does not exist");
  }

  std::map<std::string, std::string> env = request.env;
  if (!env.count("PATH")) env["PATH"] = kDefaultPath;
  if (!request.secrets_dir.empty() && !env.count("BERTH_SECRETS_DIR")) {
    env["BERTH_SECRETS_DIR"] = request.secrets_dir;
  }
  BERTH_ASSIGN_OR_RETURN(std::string path, ResolveCommand(request.command, env["PATH"], workdir));

  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<std::string> argv_s{request.command};
  argv_s.insert(argv_s.end(), request.args.begin(), request.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  // Env secrets: only in the child's environment (never in the state file); this copy is wiped
  // when Start returns, in the parent (the child has exec'd or exited by then, or never will).
  size_t plain_env = env_s.size();
  for (const auto& [k, v] : request.secret_env) {
    if (!env.count(k)) env_s.push_back(k + "=" + v);
  }
  struct EnvWiper {
    std::vector<std::string>& env_s;
    size_t from;
    ~EnvWiper() {
      for (size_t i = from; i < env_s.size(); ++i) {
        explicit_bzero(env_s[i].data(), env_s[i].size());
      }
    }
  } wiper{env_s, plain_env};
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  TaskRecord record;
  record.handle = {"process", "", request.alloc_id, request.job, request.group, request.task};
  record.command = request.command;
  record.args = request.args;
  record.task_dir = request.task_dir;
  record.workdir = workdir;
  record.ports = request.ports;

  // cgroup v2 limits, where the machine offers them; a start never fails for lack of them.
  int cgroup_procs = -1;
  if (request.memory_bytes > 0 || request.cpu_shares > 0) {
    std::string why;
    std::string parent = fs::path(options_.cgroup_root).parent_path().string();
    struct statfs sfs {};
    if (statfs(parent.c_str(), &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
      why = parent + " is not a cgroup2 file system";
    } else if (access(parent.c_str(), W_OK) != 0) {
      why = parent + " is not writable";
    } else {
      fs::create_directories(options_.cgroup_root, ec);
      std::string ignored;
      // Controllers must be enabled for the children of berth's cgroup; already-enabled is fine.
      WriteSmallFile(parent + "/cgroup.subtree_control", "+memory +cpu", &ignored);
      WriteSmallFile(options_.cgroup_root + "/cgroup.subtree_control", "+memory +cpu", &ignored);
      std::string dir = options_.cgroup_root + "/" +
                        SafeName(request.alloc_id + "." + request.task) + "." +
                        std::to_string(options_.clock->WallMillis());
      if (mkdir(dir.c_str(), 0755) != 0) {
        why = "mkdir " + dir + ": " + ErrnoText(errno);
      } else if (request.memory_bytes > 0 &&
                 !WriteSmallFile(dir + "/memory.max", std::to_string(request.memory_bytes), &why)) {
      } else if (request.cpu_shares > 0 &&
                 !WriteSmallFile(dir + "/cpu.weight",
                                 std::to_string(SharesToWeight(request.cpu_shares)), &why)) {
      } else if ((cgroup_procs = OpenHigh(dir + "/cgroup.procs", O_WRONLY)) < 0) {
        why = dir + "/cgroup.procs: " + ErrnoText(errno);
      } else {
        record.cgroup = dir;
      }
      if (record.cgroup.empty()) rmdir(dir.c_str());
    }
    if (!why.empty()) record.message = "memory/cpu limits not applied: " + why;
  }

  std::string out_path = LogPath(request.task_dir, request.task, "stdout");
  std::string err_path = LogPath(request.task_dir, request.task, "stderr");
  int out_fd = OpenHigh(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  int err_fd = OpenHigh(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  int null_fd = OpenHigh("/dev/null", O_RDONLY);
  int report[2] = {-1, -1};
  int go[2] = {-1, -1};
  bool fds_ok = out_fd >= 0 && err_fd >= 0 && null_fd >= 0 && pipe2(report, O_CLOEXEC) == 0 &&
                pipe2(go, O_CLOEXEC) == 0;
  int open_err = errno;
  auto close_fds = [&] {
    for (int fd : {out_fd, err_fd, null_fd, report[0], report[1], go[0], go[1], cgroup_procs}) {
      if (fd >= 0) close(fd);
    }
  };
  if (!fds_ok) {
    close_fds();
    if (!record.cgroup.empty()) rmdir(record.cgroup.c_str());
    return Unavailable("process driver: cannot open log files in " + request.task_dir +
                       "/logs: " + ErrnoText(open_err));
  }

  // The child waits on `go` until its state file is written, so an agent that dies in between
  // never leaves a task it does not know about (the child sees EOF and exits without exec'ing).
  // It then reports a failure on `report` as {stage, errno}: stage 1 = chdir, 2 = execve.
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close_fds();
    if (!record.cgroup.empty()) rmdir(record.cgroup.c_str());
    return Unavailable("process driver: fork: " + ErrnoText(err));
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    close(go[1]);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);  // SIG_IGN survives exec
    setsid();
    if (cgroup_procs >= 0) {
      ssize_t ignored = write(cgroup_procs, "0", 1);
      (void)ignored;
    }
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    // Descriptors other agent threads opened without O_CLOEXEC must not leak into the task.
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    char go_byte = 0;
    ssize_t go_n = 0;
    do {
      go_n = read(go[0], &go_byte, 1);
    } while (go_n < 0 && errno == EINTR);
    if (go_n != 1) _exit(127);
    int msg[2] = {1, 0};
    if (chdir(workdir.c_str()) == 0) {
      execve(path.c_str(), argv.data(), envp.data());
      msg[0] = 2;
    }
    msg[1] = errno;
    ssize_t ignored = write(report[1], msg, sizeof(msg));
    (void)ignored;
    _exit(127);
  }
  close(report[1]);
  report[1] = -1;
  close(go[0]);
  go[0] = -1;
  auto abandon = [&](Status status) -> Status {
    close_fds();  // closing `go` unread makes the child exit without exec'ing
    int ignored = 0;
    while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {
    }
    if (!record.cgroup.empty()) rmdir(record.cgroup.c_str());
    return status;
  };

  // The start time is fixed at fork, and the child (at worst a zombie) is ours: /proc has it.
  auto st = ReadProcStat(pid);
  if (!st) {
    return abandon(Internal("process driver: cannot read /proc/" + std::to_string(pid) + "/stat"));
  }
  record.pid = pid;
  record.start_time = st->start_time;
  record.handle.id = std::to_string(pid) + ":" + std::to_string(st->start_time);
  record.started_at_ms = options_.clock->WallMillis();
  {
    std::lock_guard<std::mutex> lock(mu_);
    Status saved = Save(record);
    if (!saved.ok()) return abandon(saved);
  }
  ssize_t go_n = 0;
  do {
    go_n = write(go[1], "g", 1);
  } while (go_n < 0 && errno == EINTR);
  close(go[1]);
  go[1] = -1;

  int msg[2] = {0, 0};
  size_t got = 0;
  while (got < sizeof(msg)) {
    ssize_t n = read(report[0], reinterpret_cast<char*>(msg) + got, sizeof(msg) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > 0 || go_n != 1) {
    std::string what = msg[0] == 1 ? "chdir " + workdir : "exec \"" + request.command + "\"";
    std::string text = "process driver: " + what + ": " + ErrnoText(msg[1]);
    Status failed = msg[1] == ENOENT                      ? NotFound(text)
                    : msg[1] == EACCES || msg[1] == EPERM ? PermissionDenied(text)
                                                          : Internal(text);
    if (got == 0) {
      failed = Internal("process driver: cannot release the child of " + record.handle.id);
    }
    std::lock_guard<std::mutex> lock(mu_);
    unlink(StatePath(record.handle.id).c_str());
    return abandon(failed);
  }
  close_fds();
  return record.handle;
}

Result<TaskStatus> ProcessDriver::Inspect(const TaskHandle& handle) {
  auto record = Load(handle);
  if (!record.ok()) {
    if (record.status().code() != Code::kNotFound) return record.status();
    TaskStatus missing;
    missing.state = TaskState::kMissing;
    missing.message = record.status().message();
    return missing;
  }
  return Observe(*record);
}

Status ProcessDriver::Signal(const TaskHandle& handle, int sig) {
  BERTH_ASSIGN_OR_RETURN(TaskRecord record, Load(handle));
  BERTH_ASSIGN_OR_RETURN(TaskStatus status, Observe(record));
  if (status.state != TaskState::kRunning) return Status::Ok();
  // The leader is verified alive (or an unreaped zombie) with our start time, so its pid — and
  // hence the group id — cannot belong to anyone else.
  // A task that left its group (setpgid) is at least signalled itself.
  if (killpg(record.pid, sig) != 0 && (errno != ESRCH || kill(record.pid, sig) != 0) &&
      errno != ESRCH) {
    return Internal("process driver: kill " + handle.id + ": " + ErrnoText(errno));
  }
  return Status::Ok();
}

Status ProcessDriver::Stop(const TaskHandle& handle, std::chrono::milliseconds grace) {
  BERTH_RETURN_IF_ERROR(Signal(handle, SIGTERM));
  auto waited = Wait(handle, grace);
  if (waited.ok()) return Status::Ok();
  if (waited.status().code() != Code::kDeadlineExceeded) return waited.status();
  BERTH_RETURN_IF_ERROR(Signal(handle, SIGKILL));
  // SIGKILL cannot be ignored; this bounds only a process stuck in the kernel.
  auto killed = Wait(handle, std::chrono::seconds(30));
  return killed.ok() ? Status::Ok() : killed.status();
}

Status ProcessDriver::Kill(const TaskHandle& handle) {
  return Signal(handle, SIGKILL);
}

Status ProcessDriver::Remove(const TaskHandle& handle) {
  BERTH_ASSIGN_OR_RETURN(TaskRecord record, Load(handle));
  BERTH_ASSIGN_OR_RETURN(TaskStatus status, Observe(record));
  if (status.state == TaskState::kRunning) {
    return FailedPrecondition("process task " + handle.id + " is still running");
  }
  if (!record.cgroup.empty()) rmdir(record.cgroup.c_str());
  std::lock_guard<std::mutex> lock(mu_);
  if (unlink(StatePath(handle.id).c_str()) != 0 && errno != ENOENT) {
    return Unavailable("process driver: cannot remove state of " + handle.id + ": " +
                       ErrnoText(errno));
  }
  return Status::Ok();
}

Result<int> ProcessDriver::Wait(const TaskHandle& handle, std::chrono::milliseconds timeout) {
  BERTH_ASSIGN_OR_RETURN(TaskRecord record, Load(handle));
  TimePoint deadline = options_.clock->Now() + timeout;
  while (true) {
    BERTH_ASSIGN_OR_RETURN(TaskStatus status, Observe(record));
    if (status.state == TaskState::kExited) return status.exit_code;
    if (options_.clock->Now() >= deadline) {
      return DeadlineExceeded("process task " + handle.id + " still running");
    }
    std::this_thread::sleep_for(options_.poll_interval);
  }
}

Status ProcessDriver::Logs(const TaskHandle& handle, const LogOptions& options,
                           const std::function<bool(std::string_view)>& sink) {
  BERTH_ASSIGN_OR_RETURN(TaskRecord record, Load(handle));
  struct Stream {
    std::string path;
    uint64_t offset = 0;
  };
  std::vector<Stream> streams;
  if (options.stdout) streams.push_back({LogPath(record.task_dir, record.handle.task, "stdout")});
  if (options.stderr) streams.push_back({LogPath(record.task_dir, record.handle.task, "stderr")});

  // History: rotated files oldest first, then the current one; cut to the last tail_lines.
  for (auto& s : streams) {
    std::string text;
    for (int i = options_.log_max_files; i >= 0; --i) {
      std::string p = i == 0 ? s.path : s.path + "." + std::to_string(i);
      auto part = ReadFile(p);
      if (!part.ok()) continue;
      text += *part;
      if (i == 0) s.offset = part->size();
    }
    if (options.tail_lines >= 0) {
      size_t start = text.size();
      size_t limit = text.size();
      if (limit > 0 && text[limit - 1] == '\n') --limit;  // a final newline starts no line
      for (int64_t n = 0; n < options.tail_lines; ++n) {
        size_t nl = limit == 0 ? std::string::npos : text.rfind('\n', limit - 1);
        if (nl == std::string::npos) {
          start = 0;
          break;
        }
        start = nl + 1;
        limit = nl;
      }
      text.erase(0, start);
    }
    if (!text.empty() && !sink(text)) return Status::Ok();
  }
  if (!options.follow) return Status::Ok();

  while (true) {
    // Decide before reading, so output written just before the exit is still read below.
    BERTH_ASSIGN_OR_RETURN(TaskStatus status, Observe(record));
    bool done = status.state != TaskState::kRunning;
    for (auto& s : streams) {
      std::ifstream in(s.path, std::ios::binary);
      if (!in) continue;
      in.seekg(0, std::ios::end);
      auto size = static_cast<uint64_t>(in.tellg());
      if (size < s.offset) s.offset = 0;  // copy-truncated by rotation
      if (size == s.offset) continue;
      in.seekg(static_cast<std::streamoff>(s.offset));
      std::string chunk(size - s.offset, '\0');
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      chunk.resize(static_cast<size_t>(in.gcount()));
      s.offset += chunk.size();
      if (!chunk.empty() && !sink(chunk)) return Status::Ok();
    }
    if (done) return Status::Ok();
    std::this_thread::sleep_for(options_.poll_interval);
  }
}

Result<std::vector<TaskHandle>> ProcessDriver::List() {
  std::vector<TaskHandle> out;
  std::error_code ec;
  fs::directory_iterator it(options_.state_dir, ec);
  if (ec) {
    return Unavailable("process driver: cannot list " + options_.state_dir + ": " + ec.message());
  }
  for (const auto& entry : it) {
    if (entry.path().extension() != ".json") continue;
    auto text = ReadFile(entry.path().string());
    if (!text.ok()) continue;  // removed meanwhile
    auto record = TaskRecord::FromJson(*text);
    if (!record.ok()) continue;  // not ours, or torn by hand: never crash on it
    out.push_back(record->handle);
  }
  std::sort(out.begin(), out.end(),
            [](const TaskHandle& a, const TaskHandle& b) { return a.id < b.id; });
  return out;
}

Status ProcessDriver::RotateLogs() {
  BERTH_ASSIGN_OR_RETURN(std::vector<TaskHandle> handles, List());
  Status first_error;
  for (const auto& handle : handles) {
    auto record = Load(handle);
    if (!record.ok()) continue;
    Observe(*record).status().IgnoreError();  // reaps an exited child
    for (const char* stream : {"stdout", "stderr"}) {
      std::string path = LogPath(record->task_dir, record->handle.task, stream);
      std::error_code ec;
      auto size = fs::file_size(path, ec);
      if (ec || static_cast<int64_t>(size) <= options_.log_max_bytes) continue;
      // Shift .N-1 -> .N ... .1 -> .2 (the oldest falls off), then copy the live file to .1 and
      // truncate it in place: the child's O_APPEND descriptor then writes from offset 0.
      for (int i = options_.log_max_files - 1; i >= 1; --i) {
        fs::rename(path + "." + std::to_string(i), path + "." + std::to_string(i + 1), ec);
      }
      fs::copy_file(path, path + ".1", fs::copy_options::overwrite_existing, ec);
      if (ec) {
        if (first_error.ok()) first_error = Unavailable("rotate " + path + ": " + ec.message());
        continue;
      }
      if (truncate(path.c_str(), 0) != 0 && first_error.ok()) {
        first_error = Unavailable("truncate " + path + ": " + ErrnoText(errno));
      }
    }
  }
  return first_error;
}

}  // namespace berth::driver
