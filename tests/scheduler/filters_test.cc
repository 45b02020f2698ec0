// Every built-in filter, through Scheduler::Place: which machines it lets through and how it
// explains the ones it turns down.
#include <gtest/gtest.h>

#include <set>

#include "scheduler/scheduler.h"
#include "scheduler/test_util.h"

namespace berth::scheduler {
namespace {

using spec::ConstraintOperator;
using testing::AddTo;
using testing::C;
using testing::Machine;
using testing::Request;

// Machines (by id) that could take one instance of `r`: places it with an exhaustive scan on a
// fresh copy of the set for each machine pinned in turn.
std::vector<std::string> Feasible(const std::vector<MachineView>& machines,
                                  const PlacementRequest& r) {
  std::vector<std::string> out;
  for (const MachineView& candidate : machines) {
    MachineSet set;
    for (const MachineView& m : machines) {
      MachineView copy = m;
      copy.attr_ids.clear();
      copy.attr_values.clear();
      copy.key_counts.clear();
      AddTo(set, std::move(copy));
    }
    PlacementRequest pinned = r;
    pinned.count = 1;
    pinned.pin_machine = candidate.id;
    auto result = Place(pinned, set);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    if (result.ok() && result->ok()) out.push_back(candidate.id);
  }
  return out;
}

std::vector<MachineView> Fleet() {
  return {
      Machine("a", 4000, 8192,
              {{"os.name", "Linux"},
               {"kernel.version", "6.1.0-18-amd64"},
               {"meta.rack", "r1"},
               {"meta.features", "gpu, ssd,nvme"},
               {"hostname", "web-1"}}),
      Machine("b", 2000, 4096,
              {{"os.name", "Linux"},
               {"kernel.version", "5.10.0"},
               {"meta.rack", "r2"},
               {"meta.features", "ssd"},
               {"hostname", "web-2"}}),
      Machine("c", 1000, 2048,
              {{"os.name", "FreeBSD"}, {"kernel.version", "13.2-RELEASE"}, {"hostname", "db-1"}}),
  };
}

std::vector<std::string> WithConstraint(spec::Constraint c) {
  PlacementRequest r = Request("j", 1);
  r.constraints.push_back(std::move(c));
  return Feasible(Fleet(), r);
}

using Ids = std::vector<std::string>;

TEST(ConstraintFilterTest, Equal) {
  EXPECT_EQ(WithConstraint(C("os.name", ConstraintOperator::kEqual, "Linux")), (Ids{"a", "b"}));
  EXPECT_EQ(WithConstraint(C("meta.rack", ConstraintOperator::kEqual, "r2")), (Ids{"b"}));
  EXPECT_EQ(WithConstraint(C("meta.nope", ConstraintOperator::kEqual, "x")), (Ids{}));
}

TEST(ConstraintFilterTest, NotEqualHoldsWhenTheAttributeIsMissing) {
  EXPECT_EQ(WithConstraint(C("meta.rack", ConstraintOperator::kNotEqual, "r1")), (Ids{"b", "c"}));
}

TEST(ConstraintFilterTest, Regexp) {
  EXPECT_EQ(WithConstraint(C("hostname", ConstraintOperator::kRegexp, "^web-[0-9]+$")),
            (Ids{"a", "b"}));
  EXPECT_EQ(WithConstraint(C("hostname", ConstraintOperator::kRegexp, "db")), (Ids{"c"}));
  EXPECT_EQ(WithConstraint(C("meta.rack", ConstraintOperator::kRegexp, ".*")), (Ids{"a", "b"}));
}

TEST(ConstraintFilterTest, SetContains) {
  EXPECT_EQ(WithConstraint(C("meta.features", ConstraintOperator::kSetContains, "ssd")),
            (Ids{"a", "b"}));
  EXPECT_EQ(WithConstraint(C("meta.features", ConstraintOperator::kSetContains, "nvme, gpu")),
            (Ids{"a"}));
  EXPECT_EQ(WithConstraint(C("meta.features", ConstraintOperator::kSetContains, "ssd,tpu")),
            (Ids{}));
}

TEST(ConstraintFilterTest, Version) {
  EXPECT_EQ(WithConstraint(C("kernel.version", ConstraintOperator::kVersion, ">= 5.15")),
            (Ids{"a", "c"}));
  EXPECT_EQ(WithConstraint(C("kernel.version", ConstraintOperator::kVersion, ">= 5, < 6.2")),
            (Ids{"a", "b"}));
}

TEST(ConstraintFilterTest, IsSetAndIsNotSet) {
  EXPECT_EQ(WithConstraint(C("meta.rack", ConstraintOperator::kIsSet)), (Ids{"a", "b"}));
  EXPECT_EQ(WithConstraint(C("meta.rack", ConstraintOperator::kIsNotSet)), (Ids{"c"}));
}

TEST(ConstraintFilterTest, AttributeFirstSeenOnALaterMachine) {
  std::vector<MachineView> fleet = Fleet();
  fleet[2].attributes.push_back({"meta.gpu", "a100"});  // only the last machine has it
  PlacementRequest r = Request("j", 1);
  r.constraints = {C("meta.gpu", ConstraintOperator::kIsNotSet)};
  EXPECT_EQ(Feasible(fleet, r), (Ids{"a", "b"}));
  r.constraints = {C("meta.gpu", ConstraintOperator::kRegexp, "^a1")};
  EXPECT_EQ(Feasible(fleet, r), (Ids{"c"}));
  r.constraints = {C("meta.gpu", ConstraintOperator::kNotEqual, "a100")};
  EXPECT_EQ(Feasible(fleet, r), (Ids{"a", "b"}));
}

TEST(ConstraintFilterTest, EqualityOnARareValueVisitsOnlyItsMachines) {
  MachineSet set;
  for (int i = 0; i < 1000; ++i) {
    AddTo(set, Machine("m" + std::to_string(i), 1000, 1024,
                       {{"meta.rack", "r" + std::to_string(i % 100)}}));
  }
  PlacementRequest r = Request("j", 1);
  r.constraints = {C("meta.rack", ConstraintOperator::kEqual, "r7")};
  r.candidate_limit = -1;
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->ok());
  EXPECT_EQ(result->machines_visited, 10);
  EXPECT_EQ(*set.at(result->placed[0].machine_index).AttrByName("meta.rack"), "r7");
  r.cpu = 5000;
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->failure.ToString(),
            "0 of 1000 machines: 990 did not match meta.rack == r7, 10 lacked cpu");
}

TEST(ConstraintFilterTest, AllConstraintsMustHold) {
  PlacementRequest r = Request("j", 1);
  r.constraints = {C("os.name", ConstraintOperator::kEqual, "Linux"),
                   C("meta.rack", ConstraintOperator::kNotEqual, "r1")};
  EXPECT_EQ(Feasible(Fleet(), r), (Ids{"b"}));
}

TEST(ConstraintFilterTest, BadRegexpOrVersionIsARequestError) {
  MachineSet set;
  for (MachineView& m : Fleet()) AddTo(set, std::move(m));
  PlacementRequest r = Request("j", 1);
  r.constraints = {C("hostname", ConstraintOperator::kRegexp, "([")};
  auto result = Place(r, set);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("regexp"), std::string::npos);
  r.constraints = {C("kernel.version", ConstraintOperator::kVersion, ">= banana")};
  EXPECT_FALSE(Place(r, set).ok());
}

TEST(ConstraintFilterTest, ExplanationNamesTheConstraint) {
  MachineSet set;
  for (MachineView& m : Fleet()) AddTo(set, std::move(m));
  PlacementRequest r = Request("j", 1);
  r.constraints = {C("meta.rack", ConstraintOperator::kEqual, "r9")};
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->failure.ToString(), "0 of 3 machines: 3 did not match meta.rack == r9");
  ASSERT_EQ(result->failure.rejections.size(), 1U);
  EXPECT_EQ(result->failure.rejections[0].filter, "constraints");
}

TEST(ResourcesFilterTest, CpuAndMemory) {
  EXPECT_EQ(Feasible(Fleet(), Request("j", 1, 1500, 64)), (Ids{"a", "b"}));
  EXPECT_EQ(Feasible(Fleet(), Request("j", 1, 100, 3000)), (Ids{"a", "b"}));
  EXPECT_EQ(Feasible(Fleet(), Request("j", 1, 100, 5000)), (Ids{"a"}));
  EXPECT_EQ(Feasible(Fleet(), Request("j", 1, 4000, 8192)), (Ids{"a"}));  // exactly full
  EXPECT_EQ(Feasible(Fleet(), Request("j", 1, 4001, 64)), (Ids{}));
}

TEST(ResourcesFilterTest, CountsUsedResources) {
  std::vector<MachineView> fleet = Fleet();
  fleet[0].cpu_used = 3000;
  EXPECT_EQ(Feasible(fleet, Request("j", 1, 1500, 64)), (Ids{"b"}));
}

TEST(PortsFilterTest, StaticPortsInUse) {
  std::vector<MachineView> fleet = Fleet();
  fleet[0].used_ports = {80};
  fleet[1].used_ports = {443, 8080};
  PlacementRequest r = Request("j", 1);
  r.ports = {80};
  EXPECT_EQ(Feasible(fleet, r), (Ids{"b", "c"}));
  r.ports = {80, 443};
  EXPECT_EQ(Feasible(fleet, r), (Ids{"c"}));
}

TEST(PortsFilterTest, InstancesOfOneRequestTakeTheirPorts) {
  MachineSet set;
  AddTo(set, Machine("a", 4000, 4096));
  AddTo(set, Machine("b", 4000, 4096));
  PlacementRequest r = Request("web", 3);
  r.ports = {80};
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->placed.size(), 2U);
  EXPECT_EQ(result->unplaced, 1);
  EXPECT_EQ(result->failure.ToString(), "0 of 2 machines: 2 had port 80 in use");
}

TEST(EligibilityFilterTest, IneligibleMachinesTakeNothing) {
  std::vector<MachineView> fleet = Fleet();
  fleet[1].eligible = false;
  EXPECT_EQ(Feasible(fleet, Request("j", 1)), (Ids{"a", "c"}));
}

TEST(PinFilterTest, OnlyThePinnedMachine) {
  MachineSet set;
  for (MachineView& m : Fleet()) AddTo(set, std::move(m));
  PlacementRequest r = Request("j", 3);
  r.pin_machine = "b";
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 3U);
  for (const auto& p : result->placed) EXPECT_EQ(p.machine, "b");

  r.pin_machine = "nowhere";
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->unplaced, 3);
  EXPECT_EQ(result->failure.ToString(), "0 of 3 machines: 3 are not the pinned machine nowhere");

  r.pin_machine = "c";
  r.cpu = 5000;
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->failure.ToString(),
            "0 of 3 machines: 2 are not the pinned machine c, 1 lacked cpu");
}

TEST(DistinctHostsFilterTest, CountBeyondTheMachines) {
  MachineSet set;
  for (MachineView& m : Fleet()) AddTo(set, std::move(m));
  PlacementRequest r = Request("j", 5);
  r.distinct_hosts = true;
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 3U);
  std::set<std::string> ids;
  for (const auto& p : result->placed) ids.insert(p.machine);
  EXPECT_EQ(ids.size(), 3U);
  EXPECT_EQ(result->unplaced, 2);
  EXPECT_EQ(result->failure.ToString(), "0 of 3 machines: 3 already run an instance of j/g");
}

TEST(DistinctHostsFilterTest, AsAConstraintAndPerGroup) {
  MachineSet set;
  AddTo(set, Machine("a", 4000, 4096));
  AddTo(set, Machine("b", 4000, 4096));
  set.AddAllocation(0, "j", "other", 100, 1 << 20);  // another group of the job: no matter
  set.AddAllocation(1, "j", "g", 100, 1 << 20);      // this group: b is taken
  PlacementRequest r = Request("j", 2);
  r.constraints.push_back(C("", ConstraintOperator::kDistinctHosts));
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 1U);
  EXPECT_EQ(result->placed[0].machine, "a");
  EXPECT_EQ(result->failure.ToString(), "0 of 2 machines: 2 already run an instance of j/g");
}

TEST(AffinityFilterTest, OnlyBesideTheJob) {
  MachineSet set;
  for (MachineView& m : Fleet()) AddTo(set, std::move(m));
  set.AddAllocation(2, "db", "main", 100, 1 << 20);
  PlacementRequest r = Request("app", 2);
  r.affinity_jobs = {"db"};
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 2U);
  EXPECT_EQ(result->placed[0].machine, "c");
  EXPECT_EQ(result->placed[1].machine, "c");

  r.affinity_jobs = {"db", "cache"};
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->unplaced, 2);
  EXPECT_EQ(result->failure.ToString(), "0 of 3 machines: 3 do not run job cache");

  set.AddAllocation(0, "cache", "main", 100, 1 << 20);
  set.AddAllocation(2, "cache", "main", 100, 1 << 20);
  r.count = 1;
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 1U);
  EXPECT_EQ(result->placed[0].machine, "c");
}

TEST(AntiAffinityFilterTest, NeverBesideTheJob) {
  std::vector<MachineView> fleet = Fleet();
  MachineSet set;
  for (MachineView& m : fleet) AddTo(set, std::move(m));
  set.AddAllocation(0, "db-main", "g", 100, 1 << 20);
  set.AddAllocation(1, "db-replica", "g", 100, 1 << 20);
  PlacementRequest r = Request("app", 2);
  r.conflict_jobs = {"db-main"};
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 2U);
  for (const auto& p : result->placed) EXPECT_NE(p.machine, "a");

  r.conflict_jobs = {"db-*"};
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 2U);
  for (const auto& p : result->placed) EXPECT_EQ(p.machine, "c");

  set.AddAllocation(2, "db-x", "g", 100, 1 << 20);
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->failure.ToString(), "0 of 3 machines: 3 run conflicting job db-*");

  r.conflict_jobs = {"never-seen"};
  result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->ok());
}

TEST(AntiAffinityFilterTest, ConflictingWithItselfSpreadsOnePerMachine) {
  MachineSet set;
  for (MachineView& m : Fleet()) AddTo(set, std::move(m));
  PlacementRequest r = Request("web", 4);
  r.conflict_jobs = {"web"};
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->placed.size(), 3U);
  EXPECT_EQ(result->unplaced, 1);
}

TEST(GlobTest, Match) {
  EXPECT_TRUE(GlobMatch("db-*", "db-main"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("*-main", "db-main"));
  EXPECT_TRUE(GlobMatch("a*b*c", "axxbyyc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "axxbyy"));
  EXPECT_FALSE(GlobMatch("db", "db-main"));
  EXPECT_TRUE(GlobMatch("db", "db"));
}

TEST(ExplanationTest, CountsEveryFilterAndPluralises) {
  MachineSet set;
  AddTo(set, Machine("a", 4000, 100));
  AddTo(set, Machine("b", 4000, 100));
  MachineView c = Machine("c", 4000, 8192);
  c.eligible = false;
  AddTo(set, std::move(c));
  auto result = Place(Request("j", 2, 100, 512), set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->unplaced, 2);
  EXPECT_TRUE(result->placed.empty());
  EXPECT_EQ(result->failure.machines, 3);
  EXPECT_EQ(result->failure.feasible, 0);
  EXPECT_EQ(result->failure.ToString(), "0 of 3 machines: 2 lacked memory, 1 is ineligible");
  ASSERT_EQ(result->failure.rejections.size(), 2U);
  EXPECT_EQ(result->failure.rejections[0], (Rejection{"resources", "lacked memory", 2}));
  EXPECT_EQ(result->failure.rejections[1], (Rejection{"eligibility", "is ineligible", 1}));
}

TEST(ExplanationTest, EmptySet) {
  MachineSet set;
  auto result = Place(Request("j", 1), set);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->unplaced, 1);
  EXPECT_EQ(result->failure.ToString(), "0 of 0 machines");
}

}  // namespace
}  // namespace berth::scheduler
