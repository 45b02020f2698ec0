// binpack, spread and random, and a custom strategy added through the registry.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "scheduler/scheduler.h"
#include "scheduler/test_util.h"

namespace berth::scheduler {
namespace {

using testing::AddTo;
using testing::Machine;
using testing::Request;

TEST(BinpackTest, PrefersTheFullestMachineThatFits) {
  MachineSet set;
  AddTo(set, Machine("empty", 4000, 4096));
  AddTo(set, Machine("half", 4000, 4096));
  AddTo(set, Machine("full", 4000, 4096));
  set.AddAllocation(1, "other", "g", 2000, 2048LL << 20);
  set.AddAllocation(2, "other", "g", 3900, 4000LL << 20);
  auto result = Place(Request("j", 1, 500, 512), set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 1U);
  EXPECT_EQ(result->placed[0].machine, "half");  // "full" lacks room
  EXPECT_DOUBLE_EQ(result->placed[0].score, UtilizationAfter(set.at(1), Request("j", 1, 0, 0)));
}

TEST(BinpackTest, FillsOneMachineBeforeTheNext) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024));
  AddTo(set, Machine("b", 1000, 1024));
  AddTo(set, Machine("c", 1000, 1024));
  auto result = Place(Request("j", 6, 500, 512), set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 6U);
  std::map<std::string, int> per_machine;
  for (const auto& p : result->placed) per_machine[p.machine]++;
  EXPECT_EQ(per_machine, (std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}}));
  // Each machine was filled before another was started: placements come in pairs.
  for (size_t i = 0; i < 6; i += 2)
    EXPECT_EQ(result->placed[i].machine, result->placed[i + 1].machine);
}

TEST(SpreadTest, EvensOutOverAnAttribute) {
  MachineSet set;
  // Zone z1 has three machines, z2 and z3 one each: spread still puts a third in each zone.
  AddTo(set, Machine("a1", 8000, 8192, {{"meta.zone", "z1"}}));
  AddTo(set, Machine("a2", 8000, 8192, {{"meta.zone", "z1"}}));
  AddTo(set, Machine("a3", 8000, 8192, {{"meta.zone", "z1"}}));
  AddTo(set, Machine("b1", 8000, 8192, {{"meta.zone", "z2"}}));
  AddTo(set, Machine("c1", 8000, 8192, {{"meta.zone", "z3"}}));
  PlacementRequest r = Request("j", 6);
  r.strategy = "spread";
  r.spread_attribute = "meta.zone";
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 6U);
  std::map<std::string, int> per_zone;
  for (const auto& p : result->placed) per_zone[*set.at(p.machine_index).AttrByName("meta.zone")]++;
  EXPECT_EQ(per_zone, (std::map<std::string, int>{{"z1", 2}, {"z2", 2}, {"z3", 2}}));
}

TEST(SpreadTest, CountsExistingInstancesOfTheJob) {
  MachineSet set;
  AddTo(set, Machine("a", 8000, 8192, {{"meta.zone", "z1"}}));
  AddTo(set, Machine("b", 8000, 8192, {{"meta.zone", "z2"}}));
  set.AddAllocation(0, "j", "g", 100, 64 << 20);
  set.AddAllocation(0, "j", "g", 100, 64 << 20);
  PlacementRequest r = Request("j", 2);
  r.strategy = "spread";
  r.spread_attribute = "meta.zone";
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 2U);
  EXPECT_EQ(result->placed[0].machine, "b");
  EXPECT_EQ(result->placed[1].machine, "b");
}

TEST(SpreadTest, OverMachinesByDefault) {
  MachineSet set;
  for (int i = 0; i < 4; ++i) AddTo(set, Machine("m" + std::to_string(i), 8000, 8192));
  PlacementRequest r = Request("j", 8);
  r.strategy = "spread";
  auto result = Place(r, set);
  ASSERT_TRUE(result.ok());
  std::map<std::string, int> per_machine;
  for (const auto& p : result->placed) per_machine[p.machine]++;
  ASSERT_EQ(per_machine.size(), 4U);
  for (const auto& [id, n] : per_machine) EXPECT_EQ(n, 2) << id;
}

TEST(RandomTest, SameSeedSameChoicesAndUsesManyMachines) {
  auto run = [](uint64_t seed) {
    MachineSet set;
    for (int i = 0; i < 20; ++i) AddTo(set, Machine("m" + std::to_string(i), 100000, 100000));
    PlacementRequest r = Request("j", 40);
    r.strategy = "random";
    r.seed = seed;
    auto result = Place(r, set);
    EXPECT_TRUE(result.ok());
    std::vector<std::string> ids;
    for (const auto& p : result->placed) ids.push_back(p.machine);
    return ids;
  };
  std::vector<std::string> a = run(7);
  EXPECT_EQ(a.size(), 40U);
  EXPECT_EQ(a, run(7));
  EXPECT_NE(a, run(8));
  std::set<std::string> distinct(a.begin(), a.end());
  EXPECT_GE(distinct.size(), 10U);
}

TEST(StrategyTest, UnknownStrategyIsAnError) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024));
  PlacementRequest r = Request("j", 1);
  r.strategy = "best";
  auto result = Place(r, set);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("unknown strategy"), std::string::npos);
}

// The example of docs/scheduler.md: prefer the machine with the fewest allocations.
class LeastAllocs final : public Strategy {
 public:
  double Score(const MachineView& m) override { return -static_cast<double>(m.allocs); }
};

TEST(StrategyTest, CustomStrategyThroughTheRegistry) {
  Registry registry = Registry::Builtin();
  registry.AddStrategy("least-allocs", [](const PlacementContext&) -> Result<StrategyPtr> {
    return StrategyPtr(std::make_unique<LeastAllocs>());
  });
  Scheduler scheduler(std::move(registry));
  MachineSet set;
  AddTo(set, Machine("busy", 8000, 8192));
  AddTo(set, Machine("idle", 8000, 8192));
  set.AddAllocation(0, "x", "g", 1, 1);
  set.AddAllocation(0, "y", "g", 1, 1);
  PlacementRequest r = Request("j", 3);
  r.strategy = "least-allocs";
  auto result = scheduler.Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 3U);
  EXPECT_EQ(result->placed[0].machine, "idle");
  EXPECT_EQ(result->placed[1].machine, "idle");
  // Then idle and busy both run 2: the third goes to either.
  EXPECT_EQ(set.at(0).allocs + set.at(1).allocs, 5);
}

// A custom filter: only machines whose id ends in an even digit.
class EvenFilter final : public Filter {
 public:
  std::vector<Reason> Reasons() const override { return {{"is odd", "are odd"}}; }
  uint32_t Check(const MachineView& m) override { return (m.id.back() - '0') % 2 == 0 ? 0 : 1; }
};

TEST(FilterRegistryTest, CustomFilterAndExplanation) {
  Registry registry = Registry::Builtin();
  registry.AddFilter("even", [](const PlacementContext&) -> Result<FilterPtr> {
    return FilterPtr(std::make_unique<EvenFilter>());
  });
  Scheduler scheduler(std::move(registry));
  MachineSet set;
  for (int i = 0; i < 4; ++i) AddTo(set, Machine("m" + std::to_string(i), 1000, 1024));
  PlacementRequest r = Request("j", 3, 1000, 64);
  auto result = scheduler.Place(r, set);
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->placed.size(), 2U);
  for (const auto& p : result->placed) EXPECT_TRUE(p.machine == "m0" || p.machine == "m2");
  EXPECT_EQ(result->failure.ToString(), "0 of 4 machines: 2 lacked cpu, 2 are odd");
  ASSERT_EQ(result->failure.rejections.size(), 2U);
  EXPECT_EQ(result->failure.rejections[1].filter, "even");

  Registry without = Registry::Builtin();
  EXPECT_TRUE(without.RemoveFilter("resources"));
  EXPECT_FALSE(without.RemoveFilter("resources"));
  Scheduler loose(std::move(without));
  auto again = loose.Place(r, set);  // no resources filter: anything fits
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->ok());
}

}  // namespace
}  // namespace berth::scheduler
