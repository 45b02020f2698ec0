// Place() as a whole: usage across instances, the request builder, sampling on big sets.
#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include "scheduler/test_util.h"

namespace berth::scheduler {
namespace {

using spec::ConstraintOperator;
using testing::AddTo;
using testing::C;
using testing::Machine;
using testing::Request;

TEST(PlaceTest, LaterInstancesSeeEarlierOnes) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024));
  AddTo(set, Machine("b", 1000, 1024));
  auto result = Place(Request("j", 5, 400, 100), set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->placed.size(), 4U);  // two per machine by cpu
  EXPECT_EQ(result->unplaced, 1);
  EXPECT_FALSE(result->ok());
  EXPECT_EQ(result->failure.ToString(), "0 of 2 machines: 2 lacked cpu");
  EXPECT_EQ(set.at(0).cpu_used + set.at(1).cpu_used, 1600);
  EXPECT_EQ(set.at(0).memory_used + set.at(1).memory_used, 400LL << 20);
  EXPECT_EQ(set.at(0).CountOf(set.JobKey("j")), 2);
  EXPECT_EQ(set.at(1).CountOf(set.GroupKey("j", "g")), 2);

  // A second request sees the first one's usage.
  auto second = Place(Request("k", 1, 200, 100), set);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->ok());
  EXPECT_EQ(set.at(second->placed[0].machine_index).cpu_used, 1000);
}

TEST(PlaceTest, ZeroCountAndNegativeCount) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024));
  auto zero = Place(Request("j", 0), set);
  ASSERT_TRUE(zero.ok());
  EXPECT_TRUE(zero->ok());
  EXPECT_TRUE(zero->placed.empty());
  EXPECT_FALSE(Place(Request("j", -1), set).ok());
}

TEST(PlaceTest, AHugeCountStopsAtTheFirstInstanceThatFitsNowhere) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024));
  AddTo(set, Machine("b", 1000, 1024));
  PlacementRequest r = Request("j", 1'000'000'000);
  r.distinct_hosts = true;
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->placed.size(), 2U);
  EXPECT_EQ(result->unplaced, 1'000'000'000 - 2);
  EXPECT_EQ(result->machines_visited, 2 + 2 + 2);
}

TEST(PlaceTest, SamplesOnBigSetsButFindsTheRareFit) {
  MachineSet set;
  for (int i = 0; i < 5000; ++i) {
    AddTo(set, Machine("m" + std::to_string(i), 1000, 1024,
                       {{"meta.rack", i == 4321 ? "special" : "common"}}));
  }
  EXPECT_EQ(DefaultCandidateLimit(set.size()), 16);
  PlacementRequest r = Request("j", 1);
  r.constraints = {C("meta.rack", ConstraintOperator::kEqual, "special")};
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->ok());
  EXPECT_EQ(result->placed[0].machine, "m4321");

  // Unconstrained: an instance visits about `limit` machines, not all 5000.
  auto sampled = Place(Request("k", 10), set);
  ASSERT_TRUE(sampled.ok());
  EXPECT_TRUE(sampled->ok());
  EXPECT_EQ(sampled->machines_visited, 10 * 16);

  PlacementRequest all = Request("l", 1);
  all.candidate_limit = -1;
  auto exhaustive = Place(all, set);
  ASSERT_TRUE(exhaustive.ok());
  EXPECT_EQ(exhaustive->machines_visited, 5000);
}

TEST(PlaceTest, ExhaustiveBinpackFindsTheGlobalBest) {
  MachineSet set;
  for (int i = 0; i < 1000; ++i) AddTo(set, Machine("m" + std::to_string(i), 1000, 1024));
  set.AddAllocation(777, "other", "g", 900, 900LL << 20);
  PlacementRequest r = Request("j", 1, 100, 100);
  r.candidate_limit = -1;
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->ok());
  EXPECT_EQ(result->placed[0].machine, "m777");
}

TEST(PlaceTest, DefaultCandidateLimit) {
  EXPECT_EQ(DefaultCandidateLimit(0), 0);
  EXPECT_EQ(DefaultCandidateLimit(3), 3);
  EXPECT_EQ(DefaultCandidateLimit(100), 100);
  EXPECT_EQ(DefaultCandidateLimit(10000), 16);
  EXPECT_EQ(DefaultCandidateLimit(1 << 20), 21);
}

TEST(PlaceTest, SameInputsSamePlacements) {
  auto run = [] {
    MachineSet set;
    for (int i = 0; i < 500; ++i) AddTo(set, Machine("m" + std::to_string(i), 4000, 4096));
    Scheduler scheduler;
    std::vector<std::string> out;
    for (const char* job : {"a", "b", "c"}) {
      auto result = scheduler.Place(Request(job, 20), set);
      EXPECT_TRUE(result.ok());
      for (const auto& p : result->placed) out.push_back(p.machine);
    }
    return out;
  };
  EXPECT_EQ(run(), run());
}

spec::Job ExampleJob() {
  spec::Job job;
  job.name = "shop";
  job.constraints = {C("os.name", ConstraintOperator::kEqual, "Linux")};
  spec::Group web;
  web.name = "web";
  web.count = 3;
  web.constraints = {C("", ConstraintOperator::kDistinctHosts)};
  spec::Task server;
  server.name = "server";
  server.resources = {500, 256LL << 20};
  server.ports = {{"http", 0, 8080}, {"admin", 0, 0}};
  server.constraints = {C("meta.zone", ConstraintOperator::kRegexp, "^eu-")};
  spec::Task sidecar;
  sidecar.name = "sidecar";
  sidecar.resources = {100, 64LL << 20};
  sidecar.ports = {{"metrics", 0, 9100}};
  web.tasks = {server, sidecar};
  spec::Group db;
  db.name = "db";
  db.constraints = {C("machine.id", ConstraintOperator::kEqual, "m7")};
  db.tasks = {sidecar};
  job.groups = {web, db};
  return job;
}

TEST(RequestFromJobTest, SumsTasksAndGathersConstraints) {
  PlacementOptions options;
  options.strategy = "spread";
  options.spread_attribute = "meta.zone";
  options.conflict_jobs = {"legacy-*"};
  options.affinity_jobs = {"cache"};
  options.seed = 42;
  auto r = RequestFromJob(ExampleJob(), "web", -1, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->job, "shop");
  EXPECT_EQ(r->group, "web");
  EXPECT_EQ(r->count, 3);
  EXPECT_EQ(r->cpu, 600);
  EXPECT_EQ(r->memory_bytes, 320LL << 20);
  EXPECT_EQ(r->ports, (std::vector<int>{8080, 9100}));
  EXPECT_TRUE(r->distinct_hosts);
  EXPECT_EQ(r->constraints,
            (std::vector<spec::Constraint>{C("os.name", ConstraintOperator::kEqual, "Linux"),
                                           C("meta.zone", ConstraintOperator::kRegexp, "^eu-")}));
  EXPECT_TRUE(r->pin_machine.empty());
  EXPECT_EQ(r->strategy, "spread");
  EXPECT_EQ(r->spread_attribute, "meta.zone");
  EXPECT_EQ(r->conflict_jobs, (std::vector<std::string>{"legacy-*"}));
  EXPECT_EQ(r->affinity_jobs, (std::vector<std::string>{"cache"}));
  EXPECT_EQ(r->seed, 42U);
}

TEST(RequestFromJobTest, PlacementComesFromTheGroupsSpec) {
  spec::Job job = ExampleJob();
  job.groups[0].placement = {"spread", "meta.rack", {"cache"}, {"legacy-*", "db"}};
  auto r = RequestFromJob(job, "web");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->strategy, "spread");
  EXPECT_EQ(r->spread_attribute, "meta.rack");
  EXPECT_EQ(r->affinity_jobs, (std::vector<std::string>{"cache"}));
  EXPECT_EQ(r->conflict_jobs, (std::vector<std::string>{"legacy-*", "db"}));
  // The other group keeps the defaults.
  auto db = RequestFromJob(job, "db");
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db->strategy, "binpack");
  EXPECT_TRUE(db->spread_attribute.empty());
  EXPECT_TRUE(db->affinity_jobs.empty());
  EXPECT_TRUE(db->conflict_jobs.empty());

  // Options override only what they set.
  PlacementOptions options;
  options.strategy = "random";
  options.conflict_jobs = std::vector<std::string>{};
  options.candidate_limit = -1;
  r = RequestFromJob(job, "web", 1, options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->strategy, "random");
  EXPECT_EQ(r->spread_attribute, "meta.rack");
  EXPECT_EQ(r->affinity_jobs, (std::vector<std::string>{"cache"}));
  EXPECT_TRUE(r->conflict_jobs.empty());
  EXPECT_EQ(r->candidate_limit, -1);
}

TEST(RequestFromJobTest, SpecPlacementSteersPlace) {
  MachineSet set;
  for (int i = 0; i < 4; ++i) {
    AddTo(set, Machine("m" + std::to_string(i), 4000, 4096,
                       {{"os.name", "Linux"}, {"meta.zone", "eu-west"}}));
  }
  set.AddAllocation(0, "cache", "main", 100, 1 << 20);
  set.AddAllocation(1, "cache", "main", 100, 1 << 20);
  set.AddAllocation(1, "legacy-db", "main", 100, 1 << 20);
  spec::Job job = ExampleJob();
  job.groups[0].constraints.clear();  // no distinct_hosts
  job.groups[0].tasks[0].ports.clear();
  job.groups[0].tasks[1].ports.clear();
  job.groups[0].placement.machine_of = {"cache"};
  job.groups[0].placement.conflicts = {"legacy-*"};
  auto r = RequestFromJob(job, "web", 3);
  ASSERT_TRUE(r.ok());
  auto result = Place(*r, set);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->placed.size(), 3U);
  for (const auto& p : result->placed) EXPECT_EQ(p.machine, "m0");
}

// fleet's idiom: a job that conflicts with its own name runs once per machine, across its
// groups and from its very first placement.
TEST(RequestFromJobTest, ConflictingWithItselfIsOnePerMachine) {
  MachineSet set;
  for (int i = 0; i < 3; ++i) {
    AddTo(set, Machine("m" + std::to_string(i), 8000, 8192, {{"os.name", "Linux"}}));
  }
  spec::Job job = ExampleJob();
  job.groups[0].constraints.clear();
  job.groups[0].tasks[0].ports.clear();
  job.groups[0].tasks[0].constraints.clear();
  job.groups[0].tasks[1].ports.clear();
  job.groups[0].placement.conflicts = {"sh*"};
  auto r = RequestFromJob(job, "web", 2);
  ASSERT_TRUE(r.ok());
  auto first = Place(*r, set);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->placed.size(), 2U);
  EXPECT_NE(first->placed[0].machine, first->placed[1].machine);
  // Another group of the same job finds one machine left.
  job.groups[1].constraints.clear();
  job.groups[1].tasks[0].ports.clear();
  job.groups[1].placement.conflicts = {"shop"};
  r = RequestFromJob(job, "db", 2);
  ASSERT_TRUE(r.ok());
  auto second = Place(*r, set);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->placed.size(), 1U);
  EXPECT_EQ(second->unplaced, 1);
  EXPECT_EQ(second->failure.ToString(), "0 of 3 machines: 3 run conflicting job shop");
}

TEST(RequestFromJobTest, MachineIdEqualityPins) {
  auto r = RequestFromJob(ExampleJob(), "db", 2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, 2);
  EXPECT_EQ(r->pin_machine, "m7");
  EXPECT_EQ(r->strategy, "binpack");
  EXPECT_FALSE(r->distinct_hosts);
  ASSERT_EQ(r->constraints.size(), 1U);  // the job's os.name only

  spec::Job twice = ExampleJob();
  twice.groups[1].tasks[0].constraints = {C("machine.id", ConstraintOperator::kEqual, "m8")};
  EXPECT_FALSE(RequestFromJob(twice, "db").ok());
  EXPECT_FALSE(RequestFromJob(ExampleJob(), "nope").ok());
}

TEST(RequestFromJobTest, EndToEnd) {
  MachineSet set;
  for (int i = 0; i < 4; ++i) {
    auto m = Machine("m" + std::to_string(i), 2000, 2048,
                     {{"os.name", "Linux"}, {"meta.zone", i < 3 ? "eu-west" : "us-east"}});
    AddTo(set, std::move(m));
  }
  auto r = RequestFromJob(ExampleJob(), "web", 4);
  ASSERT_TRUE(r.ok());
  auto result = Place(*r, set);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->placed.size(), 3U);  // distinct hosts in eu only
  EXPECT_EQ(result->unplaced, 1);
  EXPECT_EQ(result->failure.ToString(),
            "0 of 4 machines: 3 had port 8080 in use, 1 did not match meta.zone regexp ^eu-");
}

}  // namespace
}  // namespace berth::scheduler
