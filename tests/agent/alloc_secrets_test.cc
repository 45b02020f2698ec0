// Task secrets through the agent's reconciler and runners, with a fake SecretSource and a fake
// driver, the files on a real tmpfs (/dev/shm): what the task gets (files, modes, env), what
// happens when a secret cannot be opened (not started, a clear status, started once it opens),
// when the files go, and that the value reaches neither the store nor the log. Waits are
// generous bounds, never timing requirements.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/fake_driver.h"
#include "agent/fake_secret_source.h"
#include "agent/file_checks.h"
#include "agent/local_reconciler.h"
#include "store/store_factory.h"

namespace berth::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using runtime::Allocation;
using runtime::AllocStatus;
using runtime::RunState;
using testing::FakeDriver;
using testing::FakeSecretSource;

constexpr char kPassword[] = "correct-horse-battery-staple";
constexpr char kApiKey[] = "sk-live-0123456789abcdef";

template <typename F>
bool WaitFor(F pred, std::chrono::milliseconds limit = 20s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

using testing::ModeOf;
using testing::OnTmpfs;
using testing::Slurp;
using testing::TestName;

// A job whose one task reads db/password into a file and api/key into API_KEY.
spec::Job SecretJob(const std::string& name, spec::DriverKind driver = spec::DriverKind::kProcess) {
  spec::Job job;
  job.name = name;
  spec::Group g;
  g.name = "g";
  g.restart.attempts = 1;
  g.restart.interval = 1min;
  g.restart.delay = 10ms;
  g.restart.max_delay = 40ms;
  g.restart.mode = spec::RestartMode::kFail;
  spec::Task t;
  t.name = "t";
  t.driver = driver;
  if (driver == spec::DriverKind::kDocker) {
    t.image = "berth/busybox:latest";
  } else {
    t.command = "/bin/true";
  }
  t.args = {"--password-file=${BERTH_SECRETS_DIR}/db_password"};
  t.secrets = {{"db/password", "db_password", "", 0400}, {"api/key", "", "API_KEY", 0400}};
  g.tasks.push_back(t);
  job.groups.push_back(g);
  return job;
}

class AllocSecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!OnTmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not a tmpfs here";
    store_ = std::move(*store::OpenStore("memory:"));
    base_ = fs::path("/dev/shm") / ("berth-alloc-secrets-" + TestName());
    fs::remove_all(base_);
    fs::create_directories(base_ / "allocs");
    secrets_root_ = base_ / "secrets";
    // Everything the agent logs during the test, to check that no value is in it.
    log_sink_ = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_);
    previous_logger_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", log_sink_);
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override {
    reconciler_.reset();
    if (previous_logger_) spdlog::set_default_logger(previous_logger_);
    std::error_code ec;
    fs::remove_all(base_, ec);
  }
  void StartReconciler(std::string secrets_root = "") {
    LocalReconciler::Options o;
    o.machine_id = "m1";
    o.alloc_root = (base_ / "allocs").string();
    o.poll_interval = 20ms;
    o.secrets = source_;
    o.secrets_dir = std::make_shared<SecretsDir>(SecretsDirOptions{
        secrets_root.empty() ? secrets_root_.string() : secrets_root, /*mount_tmpfs=*/false});
    reconciler_ = std::make_unique<LocalReconciler>(
        *store_, keys_,
        std::map<spec::DriverKind, driver::Driver*>{{spec::DriverKind::kProcess, &driver_},
                                                    {spec::DriverKind::kDocker, &docker_}},
        ports_, SystemClock::Shared(), o);
    reconciler_->Start();
  }
  void Place(const spec::Job& job, const std::string& id) {
    Allocation a;
    a.id = id;
    a.job = job.name;
    a.group = job.groups[0].name;
    a.machine = "m1";
    a.job_version = 1;
    a.spec = job;
    ASSERT_TRUE(store_->Put(keys_.Alloc("m1", id), a.ToJson().dump()).ok());
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
  std::string MessageOf(const std::string& id) {
    auto s = StatusOf(id);
    return s ? s->message : "";
  }
  // Every key and value in the store, as one string.
  std::string StoreDump() {
    auto all = store_->Range(keys_.prefix());
    std::string out;
    if (all.ok()) {
      for (const auto& kv : all->kvs) out += kv.key + "=" + kv.value + "\n";
    }
    return out;
  }
  std::string Log() {
    log_sink_->flush();
    return log_.str();
  }
  fs::path TaskDir(const std::string& alloc) { return secrets_root_ / alloc / "t"; }

  store::StorePtr store_;
  store::Keys keys_;
  FakeDriver driver_;
  FakeDriver docker_{"docker"};
  std::shared_ptr<FakeSecretSource> source_ = std::make_shared<FakeSecretSource>();
  runtime::PortAllocator ports_{{"127.0.0.1", 42000, 42999}};
  fs::path base_;
  fs::path secrets_root_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> log_sink_;
  std::shared_ptr<spdlog::logger> previous_logger_;
  std::unique_ptr<LocalReconciler> reconciler_;
};

TEST_F(AllocSecretsTest, FileAndEnvSecretsReachTheTask) {
  source_->Set("db/password", kPassword);
  source_->Set("api/key", kApiKey);
  StartReconciler();
  Place(SecretJob("app"), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); })) << MessageOf("a1");
  auto r = driver_.LastStart();
  // The file, 0400, in the task's own 0700 directory on the tmpfs.
  EXPECT_EQ(r.secrets_dir, TaskDir("a1").string());
  EXPECT_EQ(Slurp(TaskDir("a1") / "db_password"), kPassword);
  EXPECT_EQ(ModeOf(TaskDir("a1") / "db_password"), 0400);
  EXPECT_EQ(ModeOf(TaskDir("a1")), 0700);
  EXPECT_EQ(ModeOf(secrets_root_ / "a1"), 0700);
  // BERTH_SECRETS_DIR points there, also for ${...} in args.
  EXPECT_EQ(r.env.at("BERTH_SECRETS_DIR"), TaskDir("a1").string());
  EXPECT_EQ(r.args[0], "--password-file=" + TaskDir("a1").string() + "/db_password");
  // The env secret comes apart from the plain env, so drivers know what not to keep.
  EXPECT_EQ(r.env.count("API_KEY"), 0u);
  EXPECT_EQ(r.secret_env.at("API_KEY"), kApiKey);
  // The status shows references, never values; neither does anything in the store or the log.
  auto s = *StatusOf("a1");
  ASSERT_EQ(s.tasks[0].secrets.size(), 2u);
  EXPECT_EQ(s.tasks[0].secrets[0], (spec::SecretRef{"db/password", "db_password", "", 0400}));
  EXPECT_EQ(s.tasks[0].secrets[1].env, "API_KEY");
  std::string dump = StoreDump();
  EXPECT_EQ(dump.find(kPassword), std::string::npos);
  EXPECT_EQ(dump.find(kApiKey), std::string::npos);
  EXPECT_EQ(Log().find(kPassword), std::string::npos);
  EXPECT_EQ(Log().find(kApiKey), std::string::npos);
}

TEST_F(AllocSecretsTest, AMissingSecretKeepsTheTaskFromStartingUntilItIsSet) {
  source_->Set("api/key", kApiKey);  // db/password is not there
  StartReconciler();
  Place(SecretJob("app"), "a1");
  ASSERT_TRUE(WaitFor([&] {
    return MessageOf("a1").find("secret db/password: not found") != std::string::npos;
  })) << MessageOf("a1");
  auto s = *StatusOf("a1");
  EXPECT_EQ(s.state, RunState::kPending);
  EXPECT_EQ(s.message.rfind("t: secret db/password: not found; not started, trying again in", 0),
            0u)
      << s.message;
  EXPECT_EQ(driver_.StartCount(), 0u);
  EXPECT_FALSE(fs::exists(TaskDir("a1")));  // nothing half-written
  // The event says it once, however often it is tried.
  ASSERT_TRUE(WaitFor([&] { return source_->opens() >= 6; }));
  int events = 0;
  auto waiting = StatusOf("a1");
  ASSERT_TRUE(waiting.has_value());
  for (const auto& e : waiting->events) events += e.type == "secret-error";
  EXPECT_EQ(events, 1);
  EXPECT_EQ(driver_.StartCount(), 0u);
  // Not a failure of the task: however many tries, no attempt is used (attempts is 1, mode
  // fail), and once the secret is there the task starts.
  source_->Set("db/password", kPassword);
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); })) << MessageOf("a1");
  EXPECT_EQ(driver_.StartCount(), 1u);
  EXPECT_EQ(StatusOf("a1")->tasks[0].restarts, 0);
  EXPECT_EQ(Slurp(TaskDir("a1") / "db_password"), kPassword);
}

TEST_F(AllocSecretsTest, ASecretSetInTheStoreWakesTheWaitingTask) {
  // A long back-off: only the watch on secrets/ can start it within the test.
  auto job = SecretJob("app");
  job.groups[0].restart.delay = 1h;
  job.groups[0].restart.max_delay = 1h;
  source_->Set("api/key", kApiKey);
  StartReconciler();
  Place(job, "a1");
  ASSERT_TRUE(WaitFor(
      [&] { return MessageOf("a1").find("secret db/password: not found") != std::string::npos; }));
  EXPECT_NE(MessageOf("a1").find("trying again in 3600.0s"), std::string::npos) << MessageOf("a1");
  source_->Set("db/password", kPassword);
  // What `berth secret set` writes (the fake source does not read it; the watch only sees it).
  ASSERT_TRUE(store_->Put(keys_.Secret("db/password"), "{\"sealed\":true}").ok());
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); })) << MessageOf("a1");
  EXPECT_EQ(Slurp(TaskDir("a1") / "db_password"), kPassword);
}

TEST_F(AllocSecretsTest, ASecretNotSealedToThisMachineSaysSo) {
  source_->Set("db/password", kPassword);
  source_->Fail("api/key", PermissionDenied("secret api/key: not sealed to machine m1"));
  StartReconciler();
  Place(SecretJob("app"), "a1");
  ASSERT_TRUE(WaitFor([&] {
    return MessageOf("a1").find("t: secret api/key: not sealed to machine m1; not started") == 0;
  })) << MessageOf("a1");
  EXPECT_EQ(driver_.StartCount(), 0u);
  // A source whose message forgets the path still gets it named.
  source_->Fail("api/key", Unavailable("the store cannot be reached"));
  ASSERT_TRUE(WaitFor([&] {
    return MessageOf("a1").find("t: secret api/key: the store cannot be reached") == 0;
  })) << MessageOf("a1");
  EXPECT_FALSE(fs::exists(TaskDir("a1")));
  std::string dump = StoreDump();
  EXPECT_EQ(dump.find(kPassword), std::string::npos);
  EXPECT_EQ(Log().find(kPassword), std::string::npos);
}

TEST_F(AllocSecretsTest, FilesGoWhenTheRunEndsAndWhenTheAllocationStops) {
  source_->Set("db/password", kPassword);
  source_->Set("api/key", kApiKey);
  StartReconciler();
  auto job = SecretJob("app");
  job.groups[0].restart.attempts = 3;
  Place(job, "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  ASSERT_TRUE(fs::exists(TaskDir("a1") / "db_password"));
  // A new value reaches the next run: the files are written afresh at each start.
  source_->Set("db/password", "second value");
  driver_.Exit("a1", 1);
  ASSERT_TRUE(WaitFor([&] { return driver_.StartCount() == 2 && driver_.RunningCount() == 1; }));
  ASSERT_TRUE(WaitFor([&] { return Slurp(TaskDir("a1") / "db_password") == "second value"; }));
  // Stopped: the task's directory and the allocation's are gone.
  ASSERT_TRUE(store_->Delete(keys_.Alloc("m1", "a1")).ok());
  ASSERT_TRUE(WaitFor([&] { return !StatusOf("a1").has_value(); }));
  EXPECT_FALSE(fs::exists(secrets_root_ / "a1"));
}

TEST_F(AllocSecretsTest, ACompletedTaskLeavesNoFiles) {
  source_->Set("db/password", kPassword);
  source_->Set("api/key", kApiKey);
  StartReconciler();
  auto job = SecretJob("once");
  job.type = spec::JobType::kBatch;
  Place(job, "a1");
  ASSERT_TRUE(WaitFor([&] { return driver_.RunningCount() == 1; }));
  ASSERT_TRUE(fs::exists(TaskDir("a1") / "db_password"));
  driver_.Exit("a1", 0);
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kComplete); }));
  EXPECT_FALSE(fs::exists(TaskDir("a1")));
}

TEST_F(AllocSecretsTest, LeftoversOfAllocationsNoLongerHereGoAtStart) {
  source_->Set("db/password", kPassword);
  source_->Set("api/key", kApiKey);
  // A previous agent left files of "gone" (not on this machine any more) and of "a1" (still is),
  // in the directory it had marked as its own.
  fs::create_directories(secrets_root_ / "gone" / "t");
  std::ofstream(secrets_root_ / ".berth-secrets-dir").flush();
  std::ofstream(secrets_root_ / "gone" / "t" / "db_password") << kPassword;
  Place(SecretJob("app"), "a1");
  driver::TaskHandle planted = driver_.Plant("a1", "t");
  fs::create_directories(TaskDir("a1"));
  std::ofstream(TaskDir("a1") / "db_password") << kPassword;
  StartReconciler();
  ASSERT_TRUE(WaitFor([&] { return !fs::exists(secrets_root_ / "gone"); }));
  // The re-adopted task keeps running on the files it has.
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); }));
  EXPECT_EQ(StatusOf("a1")->tasks[0].handle, planted.id);
  EXPECT_EQ(driver_.StartCount(), 0u);
  EXPECT_EQ(Slurp(TaskDir("a1") / "db_password"), kPassword);
}

TEST_F(AllocSecretsTest, ASecretsDirOnARealDiskRefusesFileSecretsOnly) {
  fs::path disk = fs::current_path() / ("berth-alloc-secrets-disk-" + TestName());
  if (OnTmpfs(fs::current_path())) GTEST_SKIP() << "the working directory is on tmpfs";
  source_->Set("db/password", kPassword);
  source_->Set("api/key", kApiKey);
  StartReconciler((disk / "secrets").string());
  Place(SecretJob("app"), "a1");
  auto env_only = SecretJob("envonly");
  env_only.groups[0].tasks[0].secrets = {{"api/key", "", "API_KEY", 0400}};
  env_only.groups[0].tasks[0].args.clear();
  Place(env_only, "a2");
  ASSERT_TRUE(WaitFor([&] {
    return MessageOf("a1").find("not tmpfs or ramfs: refusing to write secret files") !=
           std::string::npos;
  })) << MessageOf("a1");
  EXPECT_EQ(MessageOf("a1").find("t: secrets dir " + (disk / "secrets").string() + " is on "), 0u)
      << MessageOf("a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a2", RunState::kRunning); })) << MessageOf("a2");
  EXPECT_EQ(driver_.StartCount(), 1u);
  EXPECT_FALSE(fs::exists(disk / "secrets" / "a1"));
  reconciler_.reset();
  fs::remove_all(disk);
}

TEST_F(AllocSecretsTest, DockerTasksSeeTheirFilesAtRunSecrets) {
  source_->Set("db/password", kPassword);
  source_->Set("api/key", kApiKey);
  StartReconciler();
  Place(SecretJob("app", spec::DriverKind::kDocker), "a1");
  ASSERT_TRUE(WaitFor([&] { return StateIs("a1", RunState::kRunning); })) << MessageOf("a1");
  auto r = docker_.LastStart();
  EXPECT_EQ(r.secrets_dir, TaskDir("a1").string());  // the host side of the mount
  EXPECT_EQ(r.env.at("BERTH_SECRETS_DIR"), "/run/secrets");
  EXPECT_EQ(r.args[0], "--password-file=/run/secrets/db_password");
}

TEST_F(AllocSecretsTest, AnEnvValueWithANulByteIsRefused) {
  source_->Set("db/password", kPassword);
  source_->Set("api/key", std::string("ab\0cd", 5));
  StartReconciler();
  Place(SecretJob("app"), "a1");
  ASSERT_TRUE(WaitFor([&] {
    return MessageOf("a1").find("t: secret api/key: the value holds a NUL byte") == 0;
  })) << MessageOf("a1");
  EXPECT_EQ(driver_.StartCount(), 0u);
}

}  // namespace
}  // namespace berth::agent
