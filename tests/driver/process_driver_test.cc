// Tests for ProcessDriver against real processes in a temporary directory. Every test kills
// what it started (TearDown) and removes its directory.
#include "driver/process_driver.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace berth::driver {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Long enough for a slow, busy machine; tests never wait this long unless something is broken.
constexpr milliseconds kLong{60000};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Collects the alloc ids an exit callback receives, and the threads it ran on.
class ExitLog {
 public:
  std::function<void(const std::string&)> Callback() {
    return [this](const std::string& alloc_id) {
      std::lock_guard lock(mu_);
      ids_.push_back(alloc_id);
      threads_.push_back(std::this_thread::get_id());
      cv_.notify_all();
    };
  }
  std::vector<std::string> WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kLong, [&] { return ids_.size() >= n; });
    return ids_;
  }
  std::vector<std::thread::id> threads() {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> ids_;
  std::vector<std::thread::id> threads_;
};

class ProcessDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth_process_driver_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    task_dir_ = root_ + "/alloc1";
    fs::create_directories(task_dir_);
    driver_ = NewDriver();
    ASSERT_NE(driver_, nullptr);
  }

  void TearDown() override {
    // Kill every task group this test started, reap it, and remove the directory.
    for (const auto& [pid, pgid] : started_) {
      kill(-pgid, SIGKILL);
      int st = 0;
      waitpid(pid, &st, 0);
    }
    driver_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::unique_ptr<ProcessDriver> NewDriver(int64_t log_max_bytes = 10 << 20) {
    ProcessDriverOptions options;
    options.state_dir = root_ + "/state";
    options.log_max_bytes = log_max_bytes;
    options.log_max_files = 2;
    options.maintenance_interval = milliseconds(0);  // tests rotate explicitly
    options.poll_interval = milliseconds(5);
    options.cgroup_root = root_ + "/no-cgroup/berth";  // not cgroup2: limits are skipped
    auto created = ProcessDriver::Create(std::move(options));
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? std::move(created).value() : nullptr;
  }

  StartRequest Request(std::string command, std::vector<std::string> args) {
    StartRequest r;
    r.alloc_id = "alloc1";
    r.job = "web";
    r.group = "g";
    r.task = "main";
    r.command = std::move(command);
    r.args = std::move(args);
    r.task_dir = task_dir_;
    return r;
  }

  TaskHandle MustStart(const StartRequest& r) {
    auto handle = driver_->Start(r);
    EXPECT_TRUE(handle.ok()) << handle.status().ToString();
    if (!handle.ok()) return {};
    int pid = std::stoi(handle->id.substr(0, handle->id.find(':')));
    started_.emplace_back(pid, pid);
    return *handle;
  }

  std::string root_;
  std::string task_dir_;
  std::unique_ptr<ProcessDriver> driver_;
  std::vector<std::pair<int, int>> started_;  // (pid, process group)
};

TEST_F(ProcessDriverTest, StartInspectWaitReportsExitCode) {
  TaskHandle h = MustStart(Request("/bin/sh", {"-c", "read x; exit 7"}));
  EXPECT_EQ(h.driver, "process");
  EXPECT_EQ(h.task, "main");
  EXPECT_EQ(h.alloc_id, "alloc1");
  auto waited = driver_->Wait(h, kLong);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_EQ(*waited, 7);  // stdin is /dev/null, so `read` returns at once
  auto st = driver_->Inspect(h);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kExited);
  EXPECT_EQ(st->exit_code, 7);
  EXPECT_GT(st->pid, 0);
  EXPECT_GT(st->started_at_ms, 0);
  EXPECT_GE(st->finished_at_ms, st->started_at_ms);
}

TEST_F(ProcessDriverTest, RunningTaskIsRunningAndWaitTimesOut) {
  auto clock = std::make_shared<ManualClock>();
  ProcessDriverOptions options;
  options.state_dir = root_ + "/state";
  options.clock = clock;
  options.maintenance_interval = milliseconds(0);
  auto driver = ProcessDriver::Create(std::move(options));
  ASSERT_TRUE(driver.ok());
  driver_ = std::move(driver).value();
  TaskHandle h = MustStart(Request("/bin/sleep", {"600"}));
  auto st = driver_->Inspect(h);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kRunning);
  // With a paused clock a zero timeout expires on the first check.
  auto waited = driver_->Wait(h, milliseconds(0));
  EXPECT_EQ(waited.status().code(), Code::kDeadlineExceeded);
  EXPECT_EQ(driver_->Remove(h).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(driver_->Kill(h).ok());
  auto killed = driver_->Inspect(h);
  ASSERT_TRUE(killed.ok());
  // Kill is asynchronous; once the child is gone the exit is reported as SIGKILL.
  while (killed->state == TaskState::kRunning) {
    std::this_thread::yield();
    killed = driver_->Inspect(h);
    ASSERT_TRUE(killed.ok());
  }
  EXPECT_EQ(killed->exit_code, 128 + SIGKILL);
}

TEST_F(ProcessDriverTest, EnvIsCleanAndWorkdirApplies) {
  fs::create_directories(root_ + "/work");
  setenv("BERTH_TEST_LEAK", "leaked", 1);
  StartRequest r = Request("sh", {"-c", "echo \"A=$A LEAK=$BERTH_TEST_LEAK PATH=$PATH\"; pwd"});
  r.env = {{"A", "1"}};
  r.workdir = root_ + "/work";
  TaskHandle h = MustStart(r);
  unsetenv("BERTH_TEST_LEAK");
  auto waited = driver_->Wait(h, kLong);
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(*waited, 0);
  std::string out = ReadAll(task_dir_ + "/logs/main.stdout");
  EXPECT_NE(out.find("A=1 LEAK= PATH=/usr/local/sbin:"), std::string::npos) << out;
  EXPECT_NE(out.find(fs::canonical(root_ + "/work").string() + "\n"), std::string::npos) << out;
}

TEST_F(ProcessDriverTest, SecretsReachTheEnvironmentAndNotTheStateFile) {
  fs::create_directories(root_ + "/secrets");
  std::ofstream(root_ + "/secrets/db_password") << "file-value";
  StartRequest r =
      Request("/bin/sh", {"-c", "echo \"K=$API_KEY\"; cat \"$BERTH_SECRETS_DIR/db_password\""});
  r.secrets_dir = root_ + "/secrets";
  r.secret_env = {{"API_KEY", "env-secret-value"}};
  TaskHandle h = MustStart(r);
  auto waited = driver_->Wait(h, kLong);
  ASSERT_TRUE(waited.ok());
  EXPECT_EQ(*waited, 0);
  EXPECT_EQ(ReadAll(task_dir_ + "/logs/main.stdout"), "K=env-secret-value\nfile-value");
  // The state file (on disk) records the task, never the secret env value.
  bool saw_state = false;
  for (const auto& e : fs::directory_iterator(root_ + "/state")) {
    saw_state = true;
    EXPECT_EQ(ReadAll(e.path().string()).find("env-secret-value"), std::string::npos);
  }
  EXPECT_TRUE(saw_state);
}

TEST_F(ProcessDriverTest, WorkdirDefaultsToTaskDir) {
  TaskHandle h = MustStart(Request("/bin/sh", {"-c", "pwd; echo oops >&2"}));
  ASSERT_TRUE(driver_->Wait(h, kLong).ok());
  EXPECT_EQ(ReadAll(task_dir_ + "/logs/main.stdout"), fs::canonical(task_dir_).string() + "\n");
  EXPECT_EQ(ReadAll(task_dir_ + "/logs/main.stderr"), "oops\n");
}

TEST_F(ProcessDriverTest, LogsTailAndRotation) {
  driver_ = NewDriver(/*log_max_bytes=*/100);
  TaskHandle h =
      MustStart(Request("/bin/sh", {"-c", "for i in $(seq 1 50); do echo line$i; done"}));
  ASSERT_EQ(driver_->Wait(h, kLong).value_or(-2), 0);
  std::string log = task_dir_ + "/logs/main.stdout";
  ASSERT_GT(fs::file_size(log), 100u);

  std::string tail;
  LogOptions tail2;
  tail2.stderr = false;
  tail2.tail_lines = 2;
  ASSERT_TRUE(driver_
                  ->Logs(h, tail2,
                         [&](std::string_view d) {
                           tail += d;
                           return true;
                         })
                  .ok());
  EXPECT_EQ(tail, "line49\nline50\n");

  ASSERT_TRUE(driver_->RotateLogs().ok());
  EXPECT_EQ(fs::file_size(log), 0u);
  std::string first = ReadAll(log + ".1");
  EXPECT_EQ(first.substr(0, 6), "line1\n");
  // A second rotation shifts .1 to .2; with log_max_files = 2 nothing older is kept.
  { std::ofstream(log, std::ios::app) << std::string(200, 'x') << "\n"; }
  ASSERT_TRUE(driver_->RotateLogs().ok());
  EXPECT_EQ(ReadAll(log + ".2"), first);
  EXPECT_FALSE(fs::exists(log + ".3"));
  // The whole history is read oldest first, across rotated files.
  std::string all;
  LogOptions everything;
  everything.stderr = false;
  ASSERT_TRUE(driver_
                  ->Logs(h, everything,
                         [&](std::string_view d) {
                           all += d;
                           return true;
                         })
                  .ok());
  EXPECT_EQ(all.substr(0, 6), "line1\n");
  EXPECT_NE(all.find("line50\nxxx"), std::string::npos);
}

TEST_F(ProcessDriverTest, RotationKeepsAppendingChildAtStart) {
  driver_ = NewDriver(/*log_max_bytes=*/10);
  // The child writes once, waits for a file to appear, then writes again.
  std::string go = root_ + "/go";
  TaskHandle h = MustStart(Request("/bin/sh", {"-c", "echo before-rotation; while [ ! -e " + go +
                                                         " ]; do sleep 0.01; done; echo after"}));
  std::string log = task_dir_ + "/logs/main.stdout";
  while (ReadAll(log).empty()) std::this_thread::yield();
  ASSERT_TRUE(driver_->RotateLogs().ok());
  { std::ofstream(go) << "go"; }
  ASSERT_EQ(driver_->Wait(h, kLong).value_or(-2), 0);
  EXPECT_EQ(ReadAll(log + ".1"), "before-rotation\n");
  EXPECT_EQ(ReadAll(log), "after\n");  // O_APPEND: no hole of zeros after the truncate
}

TEST_F(ProcessDriverTest, LogsFollowEndsWhenTaskExits) {
  std::string go = root_ + "/go";
  TaskHandle h = MustStart(Request(
      "/bin/sh", {"-c", "echo one; while [ ! -e " + go + " ]; do sleep 0.01; done; echo two"}));
  std::string got;
  LogOptions follow;
  follow.follow = true;
  ASSERT_TRUE(driver_
                  ->Logs(h, follow,
                         [&](std::string_view d) {
                           got += d;
                           if (got.find("one\n") != std::string::npos) std::ofstream(go) << "go";
                           return true;
                         })
                  .ok());
  EXPECT_EQ(got, "one\ntwo\n");
}

TEST_F(ProcessDriverTest, StopKillsProcessThatIgnoresTerm) {
  std::string ready = root_ + "/ready";
  TaskHandle h = MustStart(
      Request("/bin/sh", {"-c", "trap '' TERM; touch " + ready + "; while :; do sleep 1; done"}));
  // Wait until the trap is installed, or SIGTERM could kill the shell before it.
  while (!fs::exists(ready)) std::this_thread::yield();
  ASSERT_TRUE(driver_->Stop(h, milliseconds(50)).ok());
  auto st = driver_->Inspect(h);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kExited);
  EXPECT_EQ(st->exit_code, 128 + SIGKILL);
}

// True once `pid` is gone or a zombie (killed, waiting for whoever reaps orphans).
bool Ended(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  return line.substr(line.rfind(')') + 2, 1) == "Z";
}

TEST_F(ProcessDriverTest, StopSignalsTheWholeGroup) {
  std::string pid_file = root_ + "/pid";
  TaskHandle h =
      MustStart(Request("/bin/sh", {"-c", "sleep 600 & echo $! > " + pid_file + ".tmp; mv " +
                                              pid_file + ".tmp " + pid_file + "; wait"}));
  while (!fs::exists(pid_file)) std::this_thread::yield();
  int child = std::stoi(ReadAll(pid_file));
  ASSERT_TRUE(driver_->Stop(h, kLong).ok());
  // The shell's own child got the group's signal too; the kernel delivers it at once, but
  // the child may need a moment to be scheduled and die.
  while (!Ended(child)) std::this_thread::yield();
}

TEST_F(ProcessDriverTest, MaintenanceThreadRotatesLogs) {
  ProcessDriverOptions options;
  options.state_dir = root_ + "/state";
  options.log_max_bytes = 10;
  options.maintenance_interval = milliseconds(1);
  auto driver = ProcessDriver::Create(std::move(options));
  ASSERT_TRUE(driver.ok());
  driver_ = std::move(driver).value();
  TaskHandle h = MustStart(Request("/bin/sh", {"-c", "echo more-than-ten-bytes"}));
  std::string rotated = task_dir_ + "/logs/main.stdout.1";
  while (!fs::exists(rotated)) std::this_thread::yield();
  driver_.reset();  // joins the thread
  EXPECT_EQ(ReadAll(rotated), "more-than-ten-bytes\n");
}

TEST_F(ProcessDriverTest, StopEndsCooperativeProcessWithTerm) {
  TaskHandle h = MustStart(Request("/bin/sleep", {"600"}));
  ASSERT_TRUE(driver_->Stop(h, kLong).ok());
  auto st = driver_->Inspect(h);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->exit_code, 128 + SIGTERM);
  ASSERT_TRUE(driver_->Remove(h).ok());
  EXPECT_EQ(driver_->Inspect(h)->state, TaskState::kMissing);
  EXPECT_TRUE(fs::exists(task_dir_ + "/logs/main.stdout"));  // logs are kept
}

TEST_F(ProcessDriverTest, CommandNotFoundOrNotExecutableIsClearError) {
  auto missing = driver_->Start(Request("berth-no-such-command", {}));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("berth-no-such-command"), std::string::npos);

  auto missing_abs = driver_->Start(Request("/nonexistent/bin/x", {}));
  EXPECT_EQ(missing_abs.status().code(), Code::kNotFound);
  EXPECT_NE(missing_abs.status().message().find("/nonexistent/bin/x"), std::string::npos);

  std::string script = root_ + "/not-executable.sh";
  std::ofstream(script) << "#!/bin/sh\n";
  auto denied = driver_->Start(Request(script, {}));
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied);
  EXPECT_NE(denied.status().message().find(script), std::string::npos);

  // Found and executable, but execve fails: reported through the exec-status pipe.
  std::string bad = root_ + "/bad-interpreter";
  std::ofstream(bad) << "#!/nonexistent/interpreter\n";
  fs::permissions(bad, fs::perms::owner_all);
  auto exec_failed = driver_->Start(Request(bad, {}));
  EXPECT_EQ(exec_failed.status().code(), Code::kNotFound);
  EXPECT_NE(exec_failed.status().message().find(bad), std::string::npos);

  auto listed = driver_->List();
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_F(ProcessDriverTest, ReadoptsRunningTaskAfterRestart) {
  TaskHandle h = MustStart(Request("/bin/sleep", {"600"}));
  driver_.reset();  // the agent goes away; the process must not
  driver_ = NewDriver();
  auto listed = driver_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0], h);
  auto st = driver_->Inspect((*listed)[0]);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kRunning);
  ASSERT_TRUE(driver_->Stop((*listed)[0], kLong).ok());
  EXPECT_EQ(driver_->Inspect(h)->state, TaskState::kExited);
}

TEST_F(ProcessDriverTest, ReportsTaskThatExitedWhileAgentWasDown) {
  std::string go = root_ + "/go";
  TaskHandle h = MustStart(
      Request("/bin/sh", {"-c", "while [ ! -e " + go + " ]; do sleep 0.01; done; exit 3"}));
  driver_.reset();
  { std::ofstream(go) << "go"; }
  driver_ = NewDriver();
  auto listed = driver_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0], h);
  // Still this test process's child, so the code is known.
  EXPECT_EQ(driver_->Wait(h, kLong).value_or(-2), 3);
  EXPECT_EQ(driver_->Inspect(h)->state, TaskState::kExited);
  ASSERT_TRUE(driver_->Remove(h).ok());
  EXPECT_TRUE(driver_->List()->empty());
}

TEST_F(ProcessDriverTest, ConcurrentWaitersAllSeeTheExitCode) {
  std::string go = root_ + "/go";
  TaskHandle h = MustStart(
      Request("/bin/sh", {"-c", "while [ ! -e " + go + " ]; do sleep 0.01; done; exit 5"}));
  std::vector<int> codes(4, -2);
  std::vector<std::thread> waiters;
  for (size_t i = 0; i < codes.size(); ++i) {
    waiters.emplace_back([&, i] { codes[i] = driver_->Wait(h, kLong).value_or(-3); });
  }
  { std::ofstream(go) << "go"; }
  for (auto& t : waiters) t.join();
  for (int code : codes) EXPECT_EQ(code, 5);  // reaped once, recorded for all
}

TEST_F(ProcessDriverTest, ExitOfNonChildIsReportedWithUnknownCode) {
  // A grandchild (re-parented away from us) stands in for a process started by an earlier agent:
  // the shell prints its pid and exits; the sleep (leading its own session, as our tasks do)
  // lives on, not our child.
  std::string pid_file = root_ + "/pid";
  TaskHandle shell =
      MustStart(Request("/bin/sh", {"-c", "setsid sleep 600 & echo $! > " + pid_file}));
  ASSERT_EQ(driver_->Wait(shell, kLong).value_or(-2), 0);
  int pid = std::stoi(ReadAll(pid_file));
  started_.emplace_back(pid, pid);
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  for (int i = 3; i < 22; ++i) rest >> field;
  std::string start;
  rest >> start;
  // Forge the state file an earlier agent would have written for it.
  std::string shell_state = root_ + "/state/" + shell.id.substr(0, shell.id.find(':')) + "_" +
                            shell.id.substr(shell.id.find(':') + 1) + ".json";
  std::string text = ReadAll(shell_state);
  std::string id = std::to_string(pid) + ":" + start;
  auto json_replace = [&](const std::string& from, const std::string& to) {
    text.replace(text.find(from), from.size(), to);
  };
  json_replace("\"id\": \"" + shell.id + "\"", "\"id\": \"" + id + "\"");
  json_replace("\"pid\": " + shell.id.substr(0, shell.id.find(':')),
               "\"pid\": " + std::to_string(pid));
  json_replace("\"start_time\": " + shell.id.substr(shell.id.find(':') + 1),
               "\"start_time\": " + start);
  json_replace("\"exited\": true", "\"exited\": false");
  json_replace("\"alloc_id\": \"alloc1\"", "\"alloc_id\": \"readopted\"");
  std::ofstream(root_ + "/state/" + std::to_string(pid) + "_" + start + ".json") << text;
  TaskHandle h = shell;
  h.id = id;
  h.alloc_id = "readopted";

  ExitLog exits;
  driver_->SetExitCallback(exits.Callback());
  EXPECT_EQ(driver_->Inspect(h)->state, TaskState::kRunning);
  ASSERT_TRUE(driver_->Kill(h).ok());
  auto waited = driver_->Wait(h, kLong);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_EQ(*waited, kExitCodeUnknown);
  auto st = driver_->Inspect(h);
  EXPECT_EQ(st->state, TaskState::kExited);
  EXPECT_NE(st->message.find("exit code unknown"), std::string::npos);
  // Seen gone, though not reaped: reported once, with the alloc id of its state file.
  EXPECT_EQ(exits.WaitFor(1), std::vector<std::string>{"readopted"});
}

TEST_F(ProcessDriverTest, ExitCallbackHearsOfEachExitOnceFromItsOwnThread) {
  ExitLog exits;
  driver_->SetExitCallback(exits.Callback());
  StartRequest r = Request("/bin/sh", {"-c", "exit 4"});
  r.alloc_id = "first";
  TaskHandle h = MustStart(r);
  ASSERT_EQ(driver_->Wait(h, kLong).value_or(-2), 4);  // this call reaps it
  EXPECT_EQ(driver_->Inspect(h)->state, TaskState::kExited);
  ASSERT_TRUE(driver_->Remove(h).ok());
  EXPECT_EQ(exits.WaitFor(1), std::vector<std::string>{"first"});
  // Delivered from the driver's thread, not inside Wait.
  for (auto id : exits.threads()) EXPECT_NE(id, std::this_thread::get_id());

  // Cleared: an exit is no longer reported.
  driver_->SetExitCallback(nullptr);
  r.alloc_id = "unheard";
  TaskHandle quiet = MustStart(r);
  ASSERT_EQ(driver_->Wait(quiet, kLong).value_or(-2), 4);
  ASSERT_TRUE(driver_->Remove(quiet).ok());

  // An exit nobody asks about is found by the maintenance thread.
  ProcessDriverOptions options;
  options.state_dir = root_ + "/state";
  options.maintenance_interval = milliseconds(1);
  options.cgroup_root = root_ + "/no-cgroup/berth";
  auto driver = ProcessDriver::Create(std::move(options));
  ASSERT_TRUE(driver.ok());
  driver_ = std::move(driver).value();
  driver_->SetExitCallback(exits.Callback());
  r.alloc_id = "second";
  TaskHandle later = MustStart(r);
  EXPECT_EQ(exits.WaitFor(2), (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(driver_->Inspect(later)->exit_code, 4);
}

TEST_F(ProcessDriverTest, WrongStartTimeIsMissing) {
  TaskHandle h = MustStart(Request("/bin/sleep", {"600"}));
  TaskHandle forged = h;
  forged.id = h.id.substr(0, h.id.find(':')) + ":1";
  auto st = driver_->Inspect(forged);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kMissing);
  EXPECT_EQ(driver_->Kill(forged).code(), Code::kNotFound);
  EXPECT_EQ(driver_->Inspect(h)->state, TaskState::kRunning);  // the real task was left alone

  TaskHandle malformed = h;
  malformed.id = "not-a-handle";
  EXPECT_EQ(driver_->Inspect(malformed).status().code(), Code::kInvalidArgument);
}

TEST_F(ProcessDriverTest, LimitsWithoutCgroupsStillStartAndSaySo) {
  StartRequest r = Request("/bin/sleep", {"600"});
  r.memory_bytes = 64 << 20;
  r.cpu_shares = 512;
  TaskHandle h = MustStart(r);
  auto st = driver_->Inspect(h);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, TaskState::kRunning);
  EXPECT_NE(st->message.find("limits not applied"), std::string::npos) << st->message;
}

}  // namespace
}  // namespace berth::driver
