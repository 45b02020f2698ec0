// The engine's decisions, on hand-made cluster states: placement, loss, scaling, rolling
// updates and their deployments (success, failure, auto-revert), drains, system jobs, failed
// allocations and explanations. Pure: no store, no threads, an explicit clock.
#include "engine/reconciler.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "spec/job_json.h"

namespace berth::engine {
namespace {

using namespace std::chrono_literals;
using runtime::RunState;

constexpr int64_t kT0 = 1'700'000'000'000;

nlohmann::json MachineRecord(const std::string& id, const std::string& rack = "r1",
                             int64_t memory = 4LL << 30) {
  return {{"id", id},
          {"hostname", id},
          {"os", "Linux 6.1.0"},
          {"cpus", 2},
          {"memory_bytes", memory},
          {"meta", {{"rack", rack}}},
          {"resources", {{"cpu", 2000}, {"memory_bytes", memory}}}};
}

spec::Job MakeJob(const std::string& name, int count, int64_t version = 1) {
  spec::Job job;
  job.name = name;
  job.version = version;
  job.update.max_parallel = 1;
  job.update.min_healthy_time = 10s;
  job.update.healthy_deadline = 60s;
  spec::Group g;
  g.name = "g";
  g.count = count;
  spec::Task t;
  t.name = "t";
  t.driver = spec::DriverKind::kProcess;
  t.command = "/bin/true";
  t.resources.cpu = 100;
  t.resources.memory_bytes = 64LL << 20;
  g.tasks.push_back(t);
  job.groups.push_back(g);
  return job;
}

Deployment Dep(const std::string& job, int64_t version,
               DeploymentState state = DeploymentState::kRunning, int64_t stable = 0) {
  Deployment d;
  d.job = job;
  d.version = version;
  d.state = state;
  d.stable_version = stable;
  return d;
}

class ReconcileTest : public ::testing::Test {
 protected:
  void AddMachine(const std::string& id, const std::string& rack = "r1") {
    state_.machines.push_back({id, MachineRecord(id, rack), {}});
  }
  MachineState& Machine(const std::string& id) {
    for (auto& m : state_.machines) {
      if (m.id == id) return m;
    }
    throw std::runtime_error("no machine " + id);
  }
  void SetJob(const spec::Job& job, const std::string& status = "running") {
    JobState js;
    js.record.name = job.name;
    js.record.version = job.version;
    js.record.status = status;
    js.record.spec = spec::JobToJson(job);
    js.record.mod_revision = 100 + job.version;
    js.job = job;
    for (auto& existing : state_.jobs) {
      if (existing.job.name == job.name) {
        existing = js;
        return;
      }
    }
    state_.jobs.push_back(js);
  }
  // An allocation of `job` on `machine`, with a status in `state` (healthy when running).
  AllocState& AddAlloc(const spec::Job& job, const std::string& id, const std::string& machine,
                       int index, std::optional<RunState> state = RunState::kRunning,
                       int64_t created = kT0 - 100'000) {
    AllocState a;
    a.alloc.id = id;
    a.alloc.job = job.name;
    a.alloc.group = job.groups[0].name;
    a.alloc.index = index;
    a.alloc.machine = machine;
    a.alloc.job_version = job.version;
    a.alloc.spec = job;
    a.alloc.created_at_ms = created;
    a.key = "/berth/allocs/" + machine + "/" + id;
    a.mod_revision = 10;
    if (state) {
      runtime::AllocStatus st = runtime::AllocStatus::Pending(a.alloc);
      st.state = *state;
      st.updated_at_ms = created;
      a.status = st;
    }
    state_.allocs.push_back(a);
    return state_.allocs.back();
  }
  // Turns a planned placement into an allocation in the state, with a status.
  void Apply(const Plan& plan, std::optional<RunState> state, int64_t now) {
    std::set<std::string> stopped;
    for (const auto& s : plan.stop) stopped.insert(s.id);
    for (const auto& l : plan.lost) stopped.insert(l.status.id);
    std::vector<AllocState> kept;
    for (auto& a : state_.allocs) {
      if (!stopped.count(a.alloc.id)) kept.push_back(a);
    }
    state_.allocs = kept;
    for (const auto& p : plan.place) {
      AllocState a;
      a.alloc = p;
      a.key = "/berth/allocs/" + p.machine + "/" + p.id;
      a.mod_revision = 20;
      if (state) {
        runtime::AllocStatus st = runtime::AllocStatus::Pending(p);
        st.state = *state;
        st.updated_at_ms = now;
        a.status = st;
      }
      state_.allocs.push_back(a);
    }
    for (const auto& d : plan.deployments) state_.deployments[d.job] = d;
  }
  Plan Run(int64_t now = kT0) { return Reconcile(state_, options_, now); }
  std::map<std::string, int> PerMachine(const Plan& plan) {
    std::map<std::string, int> out;
    for (const auto& a : plan.place) ++out[a.machine];
    return out;
  }

  ClusterState state_;
  ReconcileOptions options_;
};

TEST_F(ReconcileTest, PlacesEveryInstanceWithDistinctIndexes) {
  AddMachine("m1");
  AddMachine("m2");
  AddMachine("m3");
  SetJob(MakeJob("web", 3));
  Plan plan = Run();
  ASSERT_EQ(plan.place.size(), 3u);
  std::set<int> indexes;
  for (const auto& a : plan.place) {
    indexes.insert(a.index);
    EXPECT_EQ(a.job, "web");
    EXPECT_EQ(a.job_version, 1);
    EXPECT_EQ(a.created_at_ms, kT0);
  }
  EXPECT_EQ(indexes, (std::set<int>{0, 1, 2}));
  ASSERT_EQ(plan.deployments.size(), 1u);
  EXPECT_EQ(plan.deployments[0].groups.at("g").desired, 3);
  EXPECT_EQ(plan.deployments[0].groups.at("g").placed, 3);
  EXPECT_TRUE(plan.stop.empty());
}

TEST_F(ReconcileTest, NothingToDoWhenEverythingRuns) {
  AddMachine("m1");
  auto job = MakeJob("web", 2);
  SetJob(job);
  AddAlloc(job, "a0", "m1", 0);
  AddAlloc(job, "a1", "m1", 1);
  Plan first = Run();
  EXPECT_TRUE(first.place.empty());
  EXPECT_TRUE(first.stop.empty());
  Apply(first, std::nullopt, kT0);
  // Healthy for min_healthy_time: the deployment succeeds; then nothing changes.
  Plan second = Run(kT0 + 11'000);
  ASSERT_EQ(second.deployments.size(), 1u);
  EXPECT_EQ(second.deployments[0].state, DeploymentState::kSuccessful);
  EXPECT_EQ(second.deployments[0].stable_version, 1);
  Apply(second, std::nullopt, kT0 + 11'000);
  EXPECT_TRUE(Run(kT0 + 12'000).empty());
}

TEST_F(ReconcileTest, LostMachineIsReplacedElsewhere) {
  AddMachine("m1");
  AddMachine("m2");
  auto job = MakeJob("web", 2);
  SetJob(job);
  AddAlloc(job, "a0", "m1", 0);
  AddAlloc(job, "a1", "dead", 1);
  Plan plan = Run();
  ASSERT_EQ(plan.lost.size(), 1u);
  EXPECT_EQ(plan.lost[0].key, "/berth/allocs/dead/a1");
  EXPECT_EQ(plan.lost[0].status.state, RunState::kLost);
  EXPECT_NE(plan.lost[0].status.message.find("dead"), std::string::npos);
  ASSERT_EQ(plan.place.size(), 1u);
  EXPECT_EQ(plan.place[0].index, 1);
  EXPECT_NE(plan.place[0].machine, "dead");
}

TEST_F(ReconcileTest, MachineInGraceKeepsItsAllocations) {
  AddMachine("m1");
  auto job = MakeJob("web", 2);
  SetJob(job);
  AddAlloc(job, "a0", "m1", 0);
  AddAlloc(job, "a1", "m2", 1);
  state_.grace_machines.insert("m2");
  Plan plan = Run();
  EXPECT_TRUE(plan.lost.empty());
  EXPECT_TRUE(plan.place.empty());
  EXPECT_TRUE(plan.stop.empty());
}

TEST_F(ReconcileTest, ScalesDownFromTheTopAndStopsStoppedAndPurgedJobs) {
  AddMachine("m1");
  auto web = MakeJob("web", 1, 2);
  SetJob(web);
  AddAlloc(web, "a0", "m1", 0);
  AddAlloc(web, "a1", "m1", 1);
  auto db = MakeJob("db", 1);
  SetJob(db, "stopped");
  AddAlloc(db, "d0", "m1", 0);
  auto gone = MakeJob("gone", 1);
  AddAlloc(gone, "g0", "m1", 0);
  state_.deployments["gone"] = Dep("gone", 1);
  Plan plan = Run();
  std::map<std::string, std::string> stops;
  for (const auto& s : plan.stop) stops[s.id] = s.reason;
  EXPECT_EQ(stops.size(), 3u);
  EXPECT_EQ(stops["a1"], "count lowered to 1");
  EXPECT_EQ(stops["d0"], "job stopped");
  EXPECT_EQ(stops["g0"], "job purged");
  EXPECT_EQ(plan.delete_deployments, std::vector<std::string>{"gone"});
  state_.deployments["db"] = Dep("db", 1);
  Plan again = Run();
  std::string db_message;
  for (const auto& d : again.deployments) {
    if (d.job == "db") db_message = d.message;
  }
  EXPECT_EQ(db_message, "the job was stopped");
  EXPECT_TRUE(plan.place.empty());
}

// A task's secrets are part of the task: adding, removing or retargeting one makes the
// running instances out of date (a rolling update), like any other task change.
TEST_F(ReconcileTest, ASecretsChangeRollsTheInstancesOver) {
  AddMachine("m1");
  auto v1 = MakeJob("web", 1, 1);
  v1.groups[0].tasks[0].secrets = {{"db/password", "db_password", "", 0400}};
  AddAlloc(v1, "a0", "m1", 0);
  state_.deployments["web"] = Dep("web", 1, DeploymentState::kSuccessful, 1);
  for (auto change : {+[](spec::SecretRef& s) { s.file = "password"; },
                      +[](spec::SecretRef& s) { s.mode = 0600; },
                      +[](spec::SecretRef& s) { s.path = "db/other"; }}) {
    auto v2 = MakeJob("web", 1, 2);
    v2.groups[0].tasks[0].secrets = v1.groups[0].tasks[0].secrets;
    change(v2.groups[0].tasks[0].secrets[0]);
    SetJob(v2);
    Plan p = Run(kT0);
    ASSERT_EQ(p.place.size(), 1u);
    EXPECT_EQ(p.place[0].job_version, 2);
    EXPECT_EQ(p.place[0].spec.groups[0].tasks[0].secrets, v2.groups[0].tasks[0].secrets);
  }
  // The same references in a new version: nothing to replace.
  auto v3 = MakeJob("web", 1, 3);
  v3.groups[0].tasks[0].secrets = v1.groups[0].tasks[0].secrets;
  SetJob(v3);
  EXPECT_TRUE(Run(kT0).place.empty());
}

TEST_F(ReconcileTest, RollingUpdateReplacesOneAtATimeAfterMinHealthyTime) {
  AddMachine("m1");
  AddMachine("m2");
  auto v1 = MakeJob("web", 2, 1);
  AddAlloc(v1, "a0", "m1", 0);
  AddAlloc(v1, "a1", "m2", 1);
  state_.deployments["web"] = Dep("web", 1, DeploymentState::kSuccessful, 1);
  auto v2 = MakeJob("web", 2, 2);
  v2.groups[0].tasks[0].env["V"] = "2";
  SetJob(v2);

  int64_t now = kT0;
  Plan p1 = Run(now);
  ASSERT_EQ(p1.place.size(), 1u);  // max_parallel 1: one new beside the old
  EXPECT_TRUE(p1.stop.empty());
  EXPECT_EQ(p1.place[0].index, 0);
  EXPECT_EQ(p1.place[0].job_version, 2);
  ASSERT_EQ(p1.deployments.size(), 1u);
  EXPECT_EQ(p1.deployments[0].version, 2);
  EXPECT_EQ(p1.deployments[0].state, DeploymentState::kRunning);
  EXPECT_EQ(p1.deployments[0].stable_version, 1);
  Apply(p1, RunState::kRunning, now);

  // Healthy, but not yet for min_healthy_time: nothing moves.
  now += 1'000;
  Plan p2 = Run(now);
  EXPECT_TRUE(p2.place.empty());
  EXPECT_TRUE(p2.stop.empty());
  Apply(p2, RunState::kRunning, now);

  now += 10'000;
  Plan p3 = Run(now);
  ASSERT_EQ(p3.stop.size(), 1u);
  EXPECT_EQ(p3.stop[0].id, "a0");
  ASSERT_EQ(p3.place.size(), 1u);
  EXPECT_EQ(p3.place[0].index, 1);
  Apply(p3, RunState::kRunning, now);
  // The engine starts the min_healthy_time clock when it first sees the allocation healthy.
  now += 1'000;
  Apply(Run(now), RunState::kRunning, now);

  now += 10'000;
  Plan p4 = Run(now);
  ASSERT_EQ(p4.stop.size(), 1u);
  EXPECT_EQ(p4.stop[0].id, "a1");
  EXPECT_TRUE(p4.place.empty());
  ASSERT_EQ(p4.deployments.size(), 1u);
  EXPECT_EQ(p4.deployments[0].state, DeploymentState::kSuccessful);
  EXPECT_EQ(p4.deployments[0].stable_version, 2);
}

TEST_F(ReconcileTest, CountChangeScalesWithoutReplacing) {
  AddMachine("m1");
  auto v1 = MakeJob("web", 2, 1);
  AddAlloc(v1, "a0", "m1", 0);
  AddAlloc(v1, "a1", "m1", 1);
  auto v2 = MakeJob("web", 3, 2);
  v2.groups[0].placement.strategy = "spread";
  SetJob(v2);
  Plan plan = Run();
  EXPECT_TRUE(plan.stop.empty());
  ASSERT_EQ(plan.place.size(), 1u);
  EXPECT_EQ(plan.place[0].index, 2);
}

TEST_F(ReconcileTest, FailedDeploymentRevertsToTheStableVersion) {
  AddMachine("m1");
  auto v1 = MakeJob("web", 1, 1);
  AddAlloc(v1, "a0", "m1", 0);
  state_.deployments["web"] = Dep("web", 1, DeploymentState::kSuccessful, 1);
  auto v2 = MakeJob("web", 1, 2);
  v2.groups[0].tasks[0].command = "/bin/false";
  v2.update.auto_revert = true;
  SetJob(v2);
  Plan p1 = Run(kT0);
  ASSERT_EQ(p1.place.size(), 1u);
  Apply(p1, RunState::kFailed, kT0);
  Plan p2 = Run(kT0 + 1'000);
  ASSERT_EQ(p2.deployments.size(), 1u);
  EXPECT_EQ(p2.deployments[0].state, DeploymentState::kFailed);
  EXPECT_NE(p2.deployments[0].message.find("failed"), std::string::npos);
  ASSERT_EQ(p2.reverts.size(), 1u);
  EXPECT_EQ(p2.reverts[0].from_version, 2);
  EXPECT_EQ(p2.reverts[0].to_version, 1);
  EXPECT_EQ(p2.reverts[0].job_mod_revision, 102);
  // The old version keeps running through it all.
  for (const auto& s : p2.stop) EXPECT_NE(s.id, "a0");
}

TEST_F(ReconcileTest, UnhealthyPastTheDeadlineFailsWithoutRevertWhenNotAsked) {
  AddMachine("m1");
  auto v1 = MakeJob("web", 1, 1);
  AddAlloc(v1, "a0", "m1", 0);
  state_.deployments["web"] = Dep("web", 1, DeploymentState::kSuccessful, 1);
  auto v2 = MakeJob("web", 1, 2);
  v2.groups[0].tasks[0].env["X"] = "y";
  SetJob(v2);
  Plan p1 = Run(kT0);
  Apply(p1, RunState::kPending, kT0);
  Plan p2 = Run(kT0 + 61'000);
  ASSERT_EQ(p2.deployments.size(), 1u);
  EXPECT_EQ(p2.deployments[0].state, DeploymentState::kFailed);
  EXPECT_NE(p2.deployments[0].message.find("not healthy within 1m"), std::string::npos)
      << p2.deployments[0].message;
  EXPECT_TRUE(p2.reverts.empty());
}

TEST_F(ReconcileTest, DrainMigratesThenStops) {
  AddMachine("m1");
  AddMachine("m2");
  auto job = MakeJob("web", 1);
  SetJob(job);
  AddAlloc(job, "a0", "m2", 0);
  Machine("m2").admin.drain = true;
  Plan p1 = Run(kT0);
  ASSERT_EQ(p1.place.size(), 1u);
  EXPECT_EQ(p1.place[0].machine, "m1");
  EXPECT_TRUE(p1.stop.empty());  // the old one runs until its replacement is healthy
  Apply(p1, RunState::kRunning, kT0);
  Run(kT0 + 1'000);
  Apply(Run(kT0 + 1'000), RunState::kRunning, kT0 + 1'000);
  Plan p3 = Run(kT0 + 12'000);
  ASSERT_EQ(p3.stop.size(), 1u);
  EXPECT_EQ(p3.stop[0].id, "a0");
}

TEST_F(ReconcileTest, IneligibleMachineKeepsItsWorkButTakesNoNewWork) {
  AddMachine("m1");
  AddMachine("m2");
  Machine("m2").admin.eligible = false;
  auto job = MakeJob("web", 3);
  SetJob(job);
  AddAlloc(job, "a0", "m2", 0);
  Plan plan = Run();
  EXPECT_TRUE(plan.stop.empty());
  ASSERT_EQ(plan.place.size(), 2u);
  for (const auto& a : plan.place) EXPECT_EQ(a.machine, "m1");
}

TEST_F(ReconcileTest, UnplaceableInstancesAreExplained) {
  AddMachine("m1");
  AddMachine("m2");
  Machine("m2").admin.eligible = false;
  auto job = MakeJob("big", 2);
  job.groups[0].tasks[0].resources.memory_bytes = 3LL << 30;  // one fits on m1
  SetJob(job);
  Plan plan = Run();
  ASSERT_EQ(plan.place.size(), 1u);
  ASSERT_EQ(plan.deployments.size(), 1u);
  const auto& g = plan.deployments[0].groups.at("g");
  EXPECT_EQ(g.unplaced, 1);
  EXPECT_NE(g.explanation.find("0 of 2 machines"), std::string::npos) << g.explanation;
  EXPECT_NE(g.explanation.find("memory"), std::string::npos) << g.explanation;
  EXPECT_NE(g.explanation.find("ineligible"), std::string::npos) << g.explanation;
  EXPECT_NE(plan.deployments[0].message.find("cannot be placed"), std::string::npos);
}

TEST_F(ReconcileTest, SystemJobRunsOnEveryMachineThatTakesWork) {
  AddMachine("m1", "r1");
  AddMachine("m2", "r2");
  AddMachine("m3", "r1");
  Machine("m3").admin.eligible = false;
  auto job = MakeJob("agent", 1);
  job.type = spec::JobType::kSystem;
  SetJob(job);
  Plan p1 = Run();
  auto per = PerMachine(p1);
  EXPECT_EQ(per, (std::map<std::string, int>{{"m1", 1}, {"m2", 1}}));
  Apply(p1, RunState::kRunning, kT0);
  // A machine that joins later gets one too.
  AddMachine("m4", "r2");
  Plan p2 = Run(kT0 + 1'000);
  EXPECT_EQ(PerMachine(p2), (std::map<std::string, int>{{"m4", 1}}));
  // A machine its constraints exclude is not counted as unplaced.
  job.version = 2;
  job.constraints.push_back({"meta.rack", spec::ConstraintOperator::kEqual, "r2"});
  SetJob(job);
  Apply(p2, RunState::kRunning, kT0 + 1'000);
  Plan p3 = Run(kT0 + 2'000);
  ASSERT_EQ(p3.deployments.size(), 1u);
  EXPECT_EQ(p3.deployments[0].groups.at("g").unplaced, 0);
}

TEST_F(ReconcileTest, DrainingMachineStopsSystemAllocations) {
  AddMachine("m1");
  auto job = MakeJob("agent", 1);
  job.type = spec::JobType::kSystem;
  SetJob(job);
  AddAlloc(job, "s1", "m1", 0);
  Machine("m1").admin.drain = true;
  Plan plan = Run();
  ASSERT_EQ(plan.stop.size(), 1u);
  EXPECT_EQ(plan.stop[0].reason, "machine draining");
  EXPECT_TRUE(plan.place.empty());
}

TEST_F(ReconcileTest, FailedAllocationMovesToAnotherMachineAfterTheDelay) {
  AddMachine("m1");
  AddMachine("m2");
  auto job = MakeJob("web", 1);
  SetJob(job);
  AddAlloc(job, "a0", "m1", 0, RunState::kFailed, kT0);
  EXPECT_TRUE(Run(kT0 + 1'000).place.empty());
  Plan plan = Run(kT0 + 6'000);
  ASSERT_EQ(plan.stop.size(), 1u);
  EXPECT_EQ(plan.stop[0].id, "a0");
  ASSERT_EQ(plan.place.size(), 1u);
  EXPECT_EQ(plan.place[0].index, 0);
  EXPECT_EQ(plan.place[0].machine, "m2");
}

TEST_F(ReconcileTest, FailedAllocationWithNowhereElseToGoStaysFailed) {
  AddMachine("m1");
  auto job = MakeJob("web", 1);
  SetJob(job);
  AddAlloc(job, "a0", "m1", 0, RunState::kFailed, kT0);
  Plan plan = Run(kT0 + 60'000);
  EXPECT_TRUE(plan.stop.empty());
  EXPECT_TRUE(plan.place.empty());
}

TEST_F(ReconcileTest, DuplicateIndexKeepsTheHealthyOne) {
  AddMachine("m1");
  AddMachine("m2");
  auto job = MakeJob("web", 1);
  SetJob(job);
  AddAlloc(job, "young", "m1", 0, RunState::kPending, kT0 - 1'000);
  AddAlloc(job, "old", "m2", 0, RunState::kRunning, kT0 - 5'000);
  Plan plan = Run();
  ASSERT_EQ(plan.stop.size(), 1u);
  EXPECT_EQ(plan.stop[0].id, "young");
}

TEST_F(ReconcileTest, CorruptJobLeavesItsAllocationsAlone) {
  AddMachine("m1");
  auto job = MakeJob("web", 1);
  AddAlloc(job, "a0", "m1", 0);
  state_.unreadable_jobs.insert("web");
  state_.deployments["web"] = Dep("web", 1);
  Plan plan = Run();
  EXPECT_TRUE(plan.stop.empty());
  EXPECT_TRUE(plan.delete_deployments.empty());
}

TEST_F(ReconcileTest, OldStatusesOfDeadMachinesAreCollected) {
  AddMachine("m1");
  state_.orphan_statuses.push_back({"/berth/status/x", "x", "dead", "lost", kT0 - 4'000'000});
  state_.orphan_statuses.push_back({"/berth/status/y", "y", "dead", "lost", kT0 - 1'000});
  state_.orphan_statuses.push_back({"/berth/status/z", "z", "m1", "stopped", kT0 - 4'000'000});
  Plan plan = Run();
  EXPECT_EQ(plan.delete_statuses, std::vector<std::string>{"/berth/status/x"});
}

TEST(DeploymentRecordTest, RoundTripsAndRejectsBadFields) {
  Deployment d = Dep("web", 3, DeploymentState::kFailed, 2);
  d.message = "m";
  d.started_at_ms = 5;
  d.updated_at_ms = 6;
  d.groups["g"] = {3, 2, 1, 1, "0 of 3 machines: 3 lacked memory"};
  d.healthy_since_ms["a"] = 7;
  auto back = Deployment::FromJson(d.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, d);
  auto j = d.ToJson();
  j["state"] = "weird";
  EXPECT_NE(Deployment::FromJson(j).status().message().find("weird"), std::string::npos);
  j = d.ToJson();
  j["groups"]["g"]["placed"] = "two";
  EXPECT_NE(Deployment::FromJson(j).status().message().find("placed"), std::string::npos);
  EXPECT_FALSE(Deployment::FromJson(nlohmann::json::array()).ok());

  MachineAdmin a;
  a.eligible = false;
  a.drain = true;
  a.updated_at_ms = 9;
  EXPECT_EQ(*MachineAdmin::FromJson(a.ToJson()), a);
  EXPECT_FALSE(MachineAdmin::FromJson({{"drain", "yes"}}).ok());
  LeaderRecord l{"m1", "127.0.0.1:1", 3};
  EXPECT_EQ(*LeaderRecord::FromJson(l.ToJson()), l);
  EXPECT_FALSE(LeaderRecord::FromJson({{"address", "x"}}).ok());
}

}  // namespace
}  // namespace berth::engine
