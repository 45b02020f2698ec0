// In-process cluster: N agents (machine registry, local reconciler with a fake driver, engine)
// against one store, as separate machines would run them. Checks leadership, placement across
// machines, a machine's death (its lease runs out), a leader's death, fenced writes of a deposed
// leader, rolling updates and drains, end to end through the real components.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "agent/fake_driver.h"
#include "agent/local_reconciler.h"
#include "agent/machine_registry.h"
#include "engine/engine.h"
#include "jobs/job_registry.h"
#include "runtime/port_allocator.h"
#include "spec/job_json.h"
#include "store/embedded_store.h"

namespace berth::engine {
namespace {

using namespace std::chrono_literals;
using agent::testing::FakeDriver;

constexpr auto kTtl = std::chrono::seconds(2);

template <typename F>
bool WaitFor(F f, std::chrono::milliseconds limit = 30s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

spec::Job MakeJob(const std::string& name, int count) {
  spec::Job job;
  job.name = name;
  job.update.max_parallel = 1;
  job.update.min_healthy_time = 0ms;
  job.update.healthy_deadline = 60s;
  spec::Group g;
  g.name = "g";
  g.count = count;
  spec::Task t;
  t.name = "t";
  t.driver = spec::DriverKind::kProcess;
  t.command = "/bin/server";
  t.resources.cpu = 100;
  t.resources.memory_bytes = 16LL << 20;
  g.tasks.push_back(t);
  job.groups.push_back(g);
  return job;
}

// One machine: what `berth agent` runs, with a fake driver.
struct Node {
  Node(store::Store& store, const store::Keys& keys, std::string machine,
       const std::filesystem::path& root, std::chrono::milliseconds startup_grace = 0ms)
      : id(std::move(machine)) {
    agent::MachineInfo info;
    info.id = id;
    info.api_address = "127.0.0.1:1";
    info.hostname = id;
    info.os = "Linux 6.1.0";
    info.cpus = 2;
    info.memory_bytes = 4LL << 30;
    registry = std::make_unique<agent::MachineRegistry>(store, keys, info, kTtl);
    agent::LocalReconciler::Options o;
    o.machine_id = id;
    o.alloc_root = (root / id).string();
    o.poll_interval = 20ms;
    reconciler = std::make_unique<agent::LocalReconciler>(
        store, keys,
        std::map<spec::DriverKind, driver::Driver*>{{spec::DriverKind::kProcess, &driver},
                                                    {spec::DriverKind::kDocker, &docker}},
        ports, SystemClock::Shared(), o);
    Engine::Options eo;
    eo.machine_id = id;
    eo.leader_ttl = kTtl;
    eo.tick = 200ms;
    eo.startup_grace = startup_grace;
    eo.reconcile.reschedule_delay = 100ms;
    engine = std::make_unique<Engine>(store, keys, SystemClock::Shared(), eo);
  }
  void Start() {
    ASSERT_TRUE(registry->Start().ok());
    reconciler->Start();
    engine->Start();
  }
  // As `berth agent` on SIGTERM: the engine resigns, the machine's lease runs out.
  void StopAgent() { Halt(/*resign=*/true); }
  // As if the machine died: nothing is revoked or resigned; its leases run out.
  void Crash() { Halt(/*resign=*/false); }
  void Halt(bool resign) {
    engine->Stop(resign);
    reconciler->Stop();
    registry->Stop(/*revoke=*/false);
    dead = true;
  }

  std::string id;
  bool dead = false;
  FakeDriver driver;
  FakeDriver docker{"docker"};
  runtime::PortAllocator ports{{"127.0.0.1", 42000, 42999}};
  std::unique_ptr<agent::MachineRegistry> registry;
  std::unique_ptr<agent::LocalReconciler> reconciler;
  std::unique_ptr<Engine> engine;
};

class ClusterFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::EmbeddedOptions so;
    store_ = std::move(*store::EmbeddedStore::Open(so));
    root_ = std::filesystem::temp_directory_path() /
            ("berth-cluster-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(root_);
    registry_ = std::make_unique<jobs::JobRegistry>(*store_, keys_, SystemClock::Shared());
  }
  void TearDown() override {
    nodes_.clear();
    std::filesystem::remove_all(root_);
  }
  void StartNodes(int n) {
    for (int i = 1; i <= n; ++i) {
      nodes_.push_back(std::make_unique<Node>(*store_, keys_, "m" + std::to_string(i), root_));
      nodes_.back()->Start();
    }
    ASSERT_TRUE(WaitFor([&] { return Leaders() == 1; }));
  }
  int Leaders() {
    int n = 0;
    for (const auto& node : nodes_) n += !node->dead && node->engine->leading();
    return n;
  }
  Node* Leader() {
    for (const auto& node : nodes_) {
      if (!node->dead && node->engine->leading()) return node.get();
    }
    return nullptr;
  }
  // Allocations in the store, by machine.
  std::map<std::string, std::vector<runtime::Allocation>> Allocs() {
    std::map<std::string, std::vector<runtime::Allocation>> out;
    auto r = store_->Range(keys_.Allocs());
    for (const auto& kv : r->kvs) {
      auto a = runtime::Allocation::FromJson(nlohmann::json::parse(kv.value), kv.key);
      if (a.ok()) out[a->machine].push_back(*a);
    }
    return out;
  }
  int AllocCount() {
    int n = 0;
    for (const auto& [m, list] : Allocs()) n += static_cast<int>(list.size());
    return n;
  }
  // Tasks running on live machines.
  int Running() {
    int n = 0;
    for (const auto& node : nodes_) n += node->dead ? 0 : node->driver.RunningCount();
    return n;
  }
  std::optional<Deployment> DeploymentOf(const std::string& job) {
    auto kv = store_->Get(keys_.Deployment(job));
    if (!kv.ok() || !kv->has_value()) return std::nullopt;
    auto d = Deployment::FromJson(nlohmann::json::parse((*kv)->value));
    if (!d.ok()) return std::nullopt;
    return *d;
  }
  // No (job, group, index) has two allocations on live machines.
  bool NoDuplicates() {
    std::set<std::tuple<std::string, std::string, int>> seen;
    for (const auto& [m, list] : Allocs()) {
      for (const auto& a : list) {
        if (!seen.insert({a.job, a.group, a.index}).second) return false;
      }
    }
    return true;
  }

  std::unique_ptr<store::EmbeddedStore> store_;
  store::Keys keys_;
  std::filesystem::path root_;
  std::unique_ptr<jobs::JobRegistry> registry_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(ClusterFixtureTest, OneLeaderPlacesAcrossMachines) {
  StartNodes(3);
  auto leader = store_->Get(keys_.EngineLeader());
  ASSERT_TRUE(leader.ok() && leader->has_value());
  auto rec = LeaderRecord::FromJson(nlohmann::json::parse((*leader)->value));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->machine, Leader()->id);

  auto job = MakeJob("web", 6);
  job.groups[0].constraints.push_back({"", spec::ConstraintOperator::kDistinctHosts, ""});
  job.groups[0].count = 3;
  ASSERT_TRUE(registry_->Submit(job).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 3; }));
  auto allocs = Allocs();
  EXPECT_EQ(allocs.size(), 3u);  // distinct_hosts: one per machine
  for (const auto& [m, list] : allocs) EXPECT_EQ(list.size(), 1u) << m;
  ASSERT_TRUE(WaitFor([&] {
    auto d = DeploymentOf("web");
    return d && d->state == DeploymentState::kSuccessful;
  }));
  EXPECT_EQ(Leaders(), 1);
}

TEST_F(ClusterFixtureTest, DeadMachinesWorkMovesToTheOthers) {
  StartNodes(3);
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 6)).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 6; }));
  // The busiest machine that does not lead dies.
  Node* victim = nullptr;
  for (const auto& node : nodes_) {
    if (node.get() == Leader()) continue;
    if (!victim || node->driver.RunningCount() > victim->driver.RunningCount()) {
      victim = node.get();
    }
  }
  ASSERT_NE(victim, nullptr);
  int moved = victim->driver.RunningCount();
  ASSERT_GT(moved, 0);
  victim->Crash();
  ASSERT_TRUE(WaitFor([&] { return Allocs().count(victim->id) == 0 && Running() == 6; }))
      << "running " << Running();
  EXPECT_TRUE(NoDuplicates());
  EXPECT_EQ(AllocCount(), 6);
  // The lost allocations say so.
  int lost = 0;
  auto statuses = store_->Range(keys_.Status());
  ASSERT_TRUE(statuses.ok());
  for (const auto& kv : statuses->kvs) {
    auto j = nlohmann::json::parse(kv.value);
    lost += j.value("state", "") == "lost";
  }
  EXPECT_EQ(lost, moved);
}

TEST_F(ClusterFixtureTest, LeaderDeathHandsOverWithoutDoublePlacement) {
  StartNodes(3);
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 4)).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 4; }));
  Node* old = Leader();
  old->Crash();
  ASSERT_TRUE(WaitFor([&] { return Leaders() == 1; }));
  EXPECT_NE(Leader(), old);
  ASSERT_TRUE(WaitFor([&] { return Allocs().count(old->id) == 0 && Running() == 4; }));
  EXPECT_TRUE(NoDuplicates());
  // The new leader goes on placing.
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 5)).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 5; }));
  EXPECT_TRUE(NoDuplicates());
}

// The whole cluster restarts, and one machine's record from its previous run expires after the
// new engine has listed it but before that machine registers again: it is coming back, not
// gone, so within the startup grace its allocations stay where they are.
TEST_F(ClusterFixtureTest, WholeClusterRestartKeepsAllocationsOfAMachineSlowToReturn) {
  StartNodes(2);
  auto job = MakeJob("web", 2);
  job.groups[0].constraints.push_back({"", spec::ConstraintOperator::kDistinctHosts, ""});
  ASSERT_TRUE(registry_->Submit(job).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 2 && Allocs().size() == 2; }));
  std::set<std::string> before;
  for (const auto& [m, list] : Allocs()) {
    for (const auto& a : list) before.insert(a.id);
  }
  for (auto& node : nodes_) node->StopAgent();
  nodes_.clear();

  // m1 comes back at once (its engine lists m2's old record, still alive); m2 only after that
  // record has expired.
  nodes_.push_back(std::make_unique<Node>(*store_, keys_, "m1", root_, 10s));
  nodes_.back()->Start();
  ASSERT_TRUE(WaitFor([&] { return Leaders() == 1; }));
  ASSERT_TRUE(WaitFor([&] {
    auto kv = store_->Get(keys_.Machine("m2"));
    return kv.ok() && !kv->has_value();
  }));
  std::this_thread::sleep_for(1s);  // a few engine passes with m2 absent
  nodes_.push_back(std::make_unique<Node>(*store_, keys_, "m2", root_, 10s));
  nodes_.back()->Start();
  ASSERT_TRUE(WaitFor([&] { return Running() == 2; }));
  std::set<std::string> after;
  for (const auto& [m, list] : Allocs()) {
    for (const auto& a : list) after.insert(a.id);
  }
  EXPECT_EQ(after, before);
  EXPECT_TRUE(NoDuplicates());
}

TEST_F(ClusterFixtureTest, DeposedLeadersWritesAreFenced) {
  StartNodes(2);
  Node* first = Leader();
  ASSERT_NE(first, nullptr);
  int64_t old_term = 0;
  {
    auto kv = store_->Get(keys_.EngineLeader());
    old_term = (*kv)->create_revision;
  }
  first->engine->Stop(/*resign=*/true);  // hands over at once
  first->dead = true;
  ASSERT_TRUE(WaitFor([&] { return Leaders() == 1; }));
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 2)).ok());
  ASSERT_TRUE(WaitFor([&] { return AllocCount() == 2; }));
  // Nobody leads any more (the leader's key stays until its lease runs out), and there is work
  // to do: the old leader, woken late, plans it against its old term, and every write is
  // refused.
  Node* second = Leader();
  ASSERT_NE(second, nullptr);
  ASSERT_NE(second, first);
  second->engine->Stop(/*resign=*/false);
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 3)).ok());
  Engine::Options eo;
  eo.machine_id = "late";
  Engine late(*store_, keys_, SystemClock::Shared(), eo);
  auto plan = late.RunOnce(old_term);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(AllocCount(), 2);
  EXPECT_TRUE(NoDuplicates());
}

TEST_F(ClusterFixtureTest, RollingUpdateReplacesEveryInstance) {
  StartNodes(2);
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 3)).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 3; }));
  auto v2 = MakeJob("web", 3);
  v2.groups[0].tasks[0].env["V"] = "2";
  ASSERT_TRUE(registry_->Submit(v2).ok());
  ASSERT_TRUE(WaitFor([&] {
    auto d = DeploymentOf("web");
    return d && d->version == 2 && d->state == DeploymentState::kSuccessful;
  }));
  ASSERT_TRUE(WaitFor([&] { return Running() == 3; }));
  for (const auto& [m, list] : Allocs()) {
    for (const auto& a : list) EXPECT_EQ(a.job_version, 2);
  }
  EXPECT_EQ(DeploymentOf("web")->stable_version, 2);
}

TEST_F(ClusterFixtureTest, DrainMovesWorkOffAndEligibleTakesItAgain) {
  StartNodes(2);
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 4)).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 4; }));
  MachineAdmin drain;
  drain.drain = true;
  ASSERT_TRUE(store_->Put(keys_.MachineAdmin("m2"), drain.ToJson().dump()).ok());
  ASSERT_TRUE(WaitFor([&] { return Allocs().count("m2") == 0 && Running() == 4; }));
  EXPECT_EQ(nodes_[1]->driver.RunningCount(), 0);
  EXPECT_EQ(nodes_[0]->driver.RunningCount(), 4);
  ASSERT_TRUE(store_->Delete(keys_.MachineAdmin("m2")).ok());
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 6)).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 6; }));
}

TEST_F(ClusterFixtureTest, SystemJobReachesMachinesThatJoinLater) {
  StartNodes(2);
  auto job = MakeJob("sys", 1);
  job.type = spec::JobType::kSystem;
  ASSERT_TRUE(registry_->Submit(job).ok());
  ASSERT_TRUE(WaitFor([&] { return Running() == 2; }));
  nodes_.push_back(std::make_unique<Node>(*store_, keys_, "m3", root_));
  nodes_.back()->Start();
  ASSERT_TRUE(WaitFor([&] { return nodes_.back()->driver.RunningCount() == 1; }));
  EXPECT_EQ(Running(), 3);
}

}  // namespace
}  // namespace berth::engine
