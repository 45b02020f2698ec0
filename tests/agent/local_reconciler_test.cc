// The agent's local reconciler, runners and --dev placer against a memory store and a fake
// driver (the Driver seam), on the real clock with short intervals. Waits are generous bounds,
// never timing requirements.
#include "agent/local_reconciler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "agent/fake_driver.h"
#include "jobs/job_registry.h"
#include "store/store_factory.h"

namespace berth::agent {
namespace {

using namespace std::chrono_literals;
using runtime::Allocation;
using runtime::AllocStatus;
using runtime::RunState;
using testing::FakeDriver;

template <typename F>
bool WaitFor(F pred, std::chrono::milliseconds limit = 20s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

spec::Job MakeJob(const std::string& name, int count = 1) {
  spec::Job job;
  job.name = name;
  spec::Group g;
  g.name = "g";
  g.count = count;
  g.restart.attempts = 2;
  g.restart.interval = 1min;
  g.restart.delay = 10ms;
  g.restart.max_delay = 40ms;
  g.restart.mode = spec::RestartMode::kFail;
  spec::Task t;
  t.name = "t";
  t.driver = spec::DriverKind::kProcess;
  t.command = "/bin/true";
  t.args = {"--port=${BERTH_PORT_http}", "${UNKNOWN}"};
  t.env = {{"GREETING", "alloc ${BERTH_ALLOC_ID}"}};
  t.ports = {{"http", 0, 0}};
  g.tasks.push_back(t);
  job.groups.push_back(g);
  return job;
}

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*store::OpenStore("memory:"));
    root_ = std::filesystem::temp_directory_path() /
            ("berth-reconciler-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(root_);
  }
  void TearDown() override {
    reconciler_.reset();
    std::filesystem::remove_all(root_);
  }
  void StartReconciler() {
    LocalReconciler::Options o;
    o.machine_id = "m1";
    o.alloc_root = root_.string();
    o.poll_interval = 20ms;
    reconciler_ = std::make_unique<LocalReconciler>(
        *store_, keys_,
        std::map<spec::DriverKind, driver::Driver*>{{spec::DriverKind::kProcess, &driver_},
                                                    {spec::DriverKind::kDocker, &docker_}},
        ports_, SystemClock::Shared(), o);
    reconciler_->Start();
  }
  Allocation Place(const spec::Job& job, const std::string& id) {
    Allocation a;
    a.id = id;
    a.job = job.name;
    a.group = job.groups[0].name;
    a.machine = "m1";
    a.job_version = 1;
    a.spec = job;
    EXPECT_TRUE(store_->Put(keys_.Alloc("m1", id), a.ToJson().dump()).ok());
    return a;
  }
  // Everything Logs() hands its sink for `task` of allocation `id`; "" if it fails.
  std::string LogsOf(const std::string& id, const std::string& task) {
    std::string got;
    Status st = reconciler_->Logs(id, task, {}, [&](std::string_view s) {
      got += s;
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return got;
  }
  std::optional<AllocStatus> StatusOf(const std::string& id) {
    auto kv = store_->Get(keys_.AllocStatus(id));
    if (!kv.ok() || !kv->has_value()) return std::nullopt;
    auto s = AllocStatus::FromJson(nlohmann::json::parse((*kv)->value), "status");
    if (!s.ok()) return std::nullopt;
    return *s;
  }
  bool StateIs(const std::string& id, RunState want) {
    auto s = StatusOf(id);
    return s && s->state == want;
  }

  store::StorePtr store_;
  store::Keys keys_;
  FakeDriver driver_;
  FakeDriver docker_{"docker"};
  runtime::PortAllocator ports_{{"127.0.0.1", 41000, 41999}};
  std::filesystem::path root_;
  std::unique_ptr<LocalReconciler> reconciler_;
};

TEST_F(ReconcilerTest, StartsAllocationsAndPublishesStatus) {
  StartReconciler();
  Place(MakeJob("web"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  auto s = *StatusOf("a1");
  EXPECT_EQ(s.machine, "m1");
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].handle, "fake-1");
  int port = s.tasks[0].ports.at("http");
  EXPECT_GE(port, 41000);
  // The task saw its port and alloc id; unknown ${...} stay as written.
  auto r = driver_.LastStart();
  EXPECT_EQ(r.args[0], "--port=" + std::to_string(port));
  EXPECT_EQ(r.args[1], "${UNKNOWN}");
  EXPECT_EQ(r.env.at("GREETING"), "alloc a1");
  EXPECT_EQ(r.env.at("BERTH_PORT_http"), std::to_string(port));
  EXPECT_EQ(r.task_dir, (root_ / "a1").string());
  EXPECT_EQ(driver_.RunningCount(), 1);
}

TEST_F(ReconcilerTest, RestartsPerPolicyThenFails) {
  StartReconciler();
  Place(MakeJob("crash"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  int port = StatusOf("a1")->tasks[0].ports.at("http");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 1; })) << i;
    driver_.Exit("a1", 3);
    ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 0; }));
  }
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kFailed); }));
  auto s = *StatusOf("a1");
  EXPECT_EQ(s.tasks[0].restarts, 2);
  EXPECT_EQ(s.tasks[0].exit_code, 3);
  EXPECT_EQ(s.tasks[0].ports.at("http"), port);  // restarts kept the port
  EXPECT_NE(s.message.find("exited with code 3"), std::string::npos) << s.message;
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(driver_.StartCount(), 3u);  // failed means no more starts
}

TEST_F(ReconcilerTest, BatchTaskThatExitsZeroCompletes) {
  StartReconciler();
  auto job = MakeJob("once");
  job.type = spec::JobType::kBatch;
  Place(job, "a1");
  ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 1; }));
  driver_.Exit("a1", 0);
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kComplete); }));
  EXPECT_EQ(driver_.StartCount(), 1u);
}

TEST_F(ReconcilerTest, DeletedAllocationIsStoppedAndItsStatusRemoved) {
  StartReconciler();
  Place(MakeJob("web"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  std::filesystem::create_directories(root_ / "a1" / "logs");
  ASSERT_TRUE(store_->Delete(keys_.Alloc("m1", "a1")).ok());
  ASSERT_TRUE(WaitFor([&] { return !StatusOf("a1").has_value(); }));
  EXPECT_EQ(driver_.RunningCount(), 0);
  EXPECT_FALSE(std::filesystem::exists(root_ / "a1"));  // its directory went with it
  EXPECT_EQ(reconciler_->runner_count(), 0u);
}

TEST_F(ReconcilerTest, ReadoptsRunningTasksWithoutRestartingThem) {
  Place(MakeJob("web"), "a1");
  driver::TaskHandle planted = driver_.Plant("a1", "t");
  StartReconciler();
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  EXPECT_EQ(StatusOf("a1")->tasks[0].handle, planted.id);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(driver_.StartCount(), 0u);
  EXPECT_EQ(driver_.RunningCount(), 1);
}

TEST_F(ReconcilerTest, StopDetachesAndANewReconcilerReadopts) {
  StartReconciler();
  Place(MakeJob("web", 1), "a1");
  Place(MakeJob("api", 1), "a2");
  ASSERT_TRUE(WaitFor(
      [&] { return StateIs("a1", RunState::kRunning) && StateIs("a2", RunState::kRunning); }));
  reconciler_->Stop();
  reconciler_.reset();
  EXPECT_EQ(driver_.RunningCount(), 2);  // the agent stopping leaves tasks running
  StartReconciler();
  ASSERT_TRUE(WaitFor([&] { return reconciler_->runner_count() == 2; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(driver_.StartCount(), 2u);  // nothing started twice
  EXPECT_EQ(driver_.RunningCount(), 2);
}

TEST_F(ReconcilerTest, OrphanTasksAreStoppedAfterTheFirstListing) {
  driver_.Plant("gone", "t");
  StartReconciler();
  ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 0; }));
}

TEST_F(ReconcilerTest, EngineDownRetriesWithoutUsingAttempts) {
  driver_.FailStartsUnavailable(4);
  StartReconciler();
  Place(MakeJob("web"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  auto s = *StatusOf("a1");
  EXPECT_EQ(s.tasks[0].restarts, 0);
  EXPECT_EQ(driver_.StartCount(), 5u);
  bool saw_error = false;
  for (const auto& e : s.events) saw_error |= e.type == "start-error";
  EXPECT_TRUE(saw_error);
}

TEST_F(ReconcilerTest, UnlistableDriverIsAskedAgainBeforeStarting) {
  Place(MakeJob("web"), "a1");
  driver::TaskHandle planted = driver_.Plant("a1", "t");
  driver_.SetListUnavailable(true);
  StartReconciler();
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(driver_.StartCount(), 0u);  // it cannot know whether the task exists
  ASSERT_TRUE(StatusOf("a1").has_value());
  driver_.SetListUnavailable(false);
  ASSERT_TRUE(WaitFor([&] {
    auto s = StatusOf("a1");
    return s && s->tasks[0].handle == planted.id && s->state == RunState::kRunning;
  }));
  EXPECT_EQ(driver_.StartCount(), 0u);
}

TEST_F(ReconcilerTest, RunningTaskIsNotDeclaredGoneWhileItsDriverCannotBeListed) {
  Place(MakeJob("web"), "a1");
  AllocStatus previous;
  previous.id = "a1";
  previous.job = "web";
  previous.group = "g";
  previous.machine = "m1";
  previous.state = RunState::kRunning;
  runtime::TaskReport report;
  report.name = "t";
  report.state = RunState::kRunning;
  previous.tasks.push_back(report);
  ASSERT_TRUE(store_->Put(keys_.AllocStatus("a1"), previous.ToJson().dump()).ok());
  driver::TaskHandle planted = driver_.Plant("a1", "t");
  driver_.SetListUnavailable(true);
  StartReconciler();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(driver_.StartCount(), 0u);
  auto s = StatusOf("a1");
  ASSERT_TRUE(s.has_value());
  EXPECT_NE(s->state, RunState::kFailed);
  EXPECT_EQ(s->tasks[0].restarts, 0);
  driver_.SetListUnavailable(false);
  ASSERT_TRUE(WaitFor([&] {
    auto st = StatusOf("a1");
    return st && st->tasks[0].handle == planted.id && st->state == RunState::kRunning;
  }));
  EXPECT_EQ(StatusOf("a1")->tasks[0].restarts, 0);
  EXPECT_EQ(driver_.StartCount(), 0u);
}

TEST_F(ReconcilerTest, ProcessTasksStartWhileDockerCannotBeListed) {
  docker_.SetListUnavailable(true);  // a machine without a Docker Engine
  StartReconciler();
  Place(MakeJob("web"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  EXPECT_EQ(driver_.StartCount(), 1u);
}

TEST_F(ReconcilerTest, OrphansOfALateDriverAreStoppedWhenItAnswers) {
  driver_.Plant("gone", "t");
  driver_.SetListUnavailable(true);
  StartReconciler();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(driver_.RunningCount(), 1);  // unknown to the store, but the driver was not listed
  driver_.SetListUnavailable(false);
  ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 0; }));
}

TEST_F(ReconcilerTest, ACrashedRunKeepsItsLogsUntilTheNextStart) {
  StartReconciler();
  auto job = MakeJob("crash");
  job.groups[0].restart.attempts = 0;
  Place(job, "a1");
  ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 1; }));
  driver_.Exit("a1", 1);
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kFailed); }));
  EXPECT_EQ(LogsOf("a1", "t"), "logs of fake-1\n");
}

TEST_F(ReconcilerTest, StartErrorBecomesAClearStatus) {
  StartReconciler();
  auto job = MakeJob("bad");
  job.groups[0].tasks[0].command = "/no/such/command";
  Place(job, "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kFailed); }));
  auto s = *StatusOf("a1");
  EXPECT_NE(s.message.find("command /no/such/command not found"), std::string::npos) << s.message;
  EXPECT_EQ(driver_.StartCount(), 3u);  // the first start and 2 restarts, with back-off
}

TEST_F(ReconcilerTest, CorruptAllocationIsIgnoredOthersRun) {
  StartReconciler();
  ASSERT_TRUE(store_->Put(keys_.Alloc("m1", "bad"), "{not json").ok());
  Place(MakeJob("web"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  EXPECT_EQ(reconciler_->runner_count(), 1u);
}

TEST_F(ReconcilerTest, LogsComeFromTheTasksDriver) {
  StartReconciler();
  Place(MakeJob("web"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  EXPECT_EQ(LogsOf("a1", "t"), "logs of fake-1\n");
  EXPECT_EQ(reconciler_->Logs("nope", "t", {}, [](std::string_view) { return true; }).code(),
            Code::kNotFound);
}

TEST(InterpolateTest, ReplacesKnownNamesOnly) {
  std::map<std::string, std::string> v{{"A", "1"}, {"BB", "two"}};
  EXPECT_EQ(Interpolate("${A}-${BB}-${C}-$A-${", v), "1-two-${C}-$A-${");
  EXPECT_EQ(Interpolate("", v), "");
}

}  // namespace
}  // namespace berth::agent
