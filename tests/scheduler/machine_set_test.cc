#include "scheduler/machine_set.h"

#include <gtest/gtest.h>

#include "scheduler/test_util.h"

namespace berth::scheduler {
namespace {

using testing::AddTo;
using testing::Machine;

TEST(MachineViewTest, FromMachineRecord) {
  auto record = nlohmann::json::parse(R"({
    "id": "m1", "address": "10.0.0.1:4680", "hostname": "web-1", "os": "Linux 6.1.0-18-amd64",
    "cpus": 4, "memory_bytes": 8589934592, "meta": {"rack": "r1", "zone": "z2"},
    "version": "0.1.0", "started_at": 1, "eligible": true,
    "resources": {"cpu": 4000, "memory_bytes": 8589934592,
                  "used": {"cpu": 500, "memory_bytes": 1073741824, "allocs": 2, "ports": [8080, 80]},
                  "free": {"cpu": 3500, "memory_bytes": 7516192768}}})");
  auto m = MachineView::FromMachineRecord(record);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->id, "m1");
  EXPECT_TRUE(m->eligible);
  EXPECT_EQ(m->cpu_total, 4000);
  EXPECT_EQ(m->memory_total, 8589934592);
  EXPECT_EQ(m->cpu_used, 500);
  EXPECT_EQ(m->memory_used, 1073741824);
  EXPECT_EQ(m->allocs, 2);
  EXPECT_EQ(m->cpu_free(), 3500);
  auto attr = [&](const char* name) {
    const std::string* v = m->AttrByName(name);
    return v == nullptr ? std::string("<unset>") : *v;
  };
  EXPECT_EQ(attr("machine.id"), "m1");
  EXPECT_EQ(attr("hostname"), "web-1");
  EXPECT_EQ(attr("os.name"), "Linux");
  EXPECT_EQ(attr("kernel.version"), "6.1.0-18-amd64");
  EXPECT_EQ(attr("cpus"), "4");
  EXPECT_EQ(attr("memory"), "8589934592");
  EXPECT_EQ(attr("meta.rack"), "r1");
  EXPECT_EQ(attr("meta.zone"), "z2");
  EXPECT_EQ(attr("berth.version"), "0.1.0");
  EXPECT_EQ(attr("meta.nope"), "<unset>");

  MachineSet set;
  size_t i = AddTo(set, std::move(*m));
  EXPECT_TRUE(set.at(i).PortUsed(80));
  EXPECT_TRUE(set.at(i).PortUsed(8080));
  EXPECT_FALSE(set.at(i).PortUsed(81));
  AttrId rack = set.AttributeId("meta.rack");
  ASSERT_NE(rack, kNoId);
  ASSERT_NE(set.at(i).Attr(rack), nullptr);
  EXPECT_EQ(*set.at(i).Attr(rack), "r1");
  EXPECT_EQ(set.AttributeId("meta.unknown"), kNoId);
}

TEST(MachineViewTest, FromMachineRecordWithoutResourcesUsesCpusAndMemory) {
  auto m = MachineView::FromMachineRecord(
      nlohmann::json::parse(R"({"id": "m2", "cpus": 2, "memory_bytes": 1024})"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->cpu_total, 2000);
  EXPECT_EQ(m->memory_total, 1024);
  EXPECT_EQ(m->cpu_used, 0);
}

TEST(MachineViewTest, DrainedOrIneligibleRecords) {
  for (const char* text : {R"({"id": "m", "eligible": false})", R"({"id": "m", "drain": true})",
                           R"({"id": "m", "drained": true, "eligible": true})"}) {
    auto m = MachineView::FromMachineRecord(nlohmann::json::parse(text));
    ASSERT_TRUE(m.ok()) << text;
    EXPECT_FALSE(m->eligible) << text;
  }
}

TEST(MachineViewTest, MalformedRecordsAreErrorsNamingTheField) {
  struct Case {
    const char* json;
    const char* field;
  };
  for (const Case& c :
       {Case{R"([])", "expected an object"}, Case{R"({"cpus": 1})", "id"},
        Case{R"({"id": ""})", "id"}, Case{R"({"id": "m", "cpus": "4"})", "cpus"},
        Case{R"({"id": "m", "meta": {"rack": 1}})", "meta.rack"},
        Case{R"({"id": "m", "eligible": "yes"})", "eligible"},
        Case{R"({"id": "m", "resources": {"used": {"ports": [1.5]}}})", "resources.used.ports"},
        Case{R"({"id": "m", "resources": {"cpu": -1}})", "resources"}}) {
    auto m = MachineView::FromMachineRecord(nlohmann::json::parse(c.json));
    ASSERT_FALSE(m.ok()) << c.json;
    EXPECT_NE(m.status().message().find(c.field), std::string::npos) << m.status().ToString();
  }
}

TEST(MachineSetTest, AddRejectsDuplicateIds) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024));
  EXPECT_FALSE(set.Add(Machine("a", 1000, 1024)).ok());
  EXPECT_EQ(set.size(), 1U);
  EXPECT_EQ(set.Find("a"), std::optional<size_t>(0));
  EXPECT_EQ(set.Find("b"), std::nullopt);
}

TEST(MachineSetTest, AllocationsUpdateUsageCountsAndTheJobIndex) {
  MachineSet set;
  size_t a = AddTo(set, Machine("a", 1000, 1024));
  size_t b = AddTo(set, Machine("b", 1000, 1024));
  int ports[] = {443, 80};
  set.AddAllocation(a, "web", "front", 250, 100 << 20, ports);
  set.AddAllocation(a, "web", "front", 250, 100 << 20);
  set.AddAllocation(b, "web", "back", 100, 10 << 20);
  EXPECT_EQ(set.at(a).cpu_used, 500);
  EXPECT_EQ(set.at(a).memory_used, 200 << 20);
  EXPECT_EQ(set.at(a).allocs, 2);
  EXPECT_EQ(set.at(a).used_ports, (std::vector<int>{80, 443}));
  KeyId web = set.JobKey("web");
  KeyId front = set.GroupKey("web", "front");
  ASSERT_NE(web, kNoId);
  ASSERT_NE(front, kNoId);
  EXPECT_EQ(set.at(a).CountOf(web), 2);
  EXPECT_EQ(set.at(a).CountOf(front), 2);
  EXPECT_EQ(set.at(b).CountOf(front), 0);
  EXPECT_EQ(set.MachinesRunning(web).size(), 2U);
  EXPECT_EQ(set.MachinesRunning(front).size(), 1U);

  set.RemoveAllocation(a, "web", "front", 250, 100 << 20, ports);
  EXPECT_EQ(set.at(a).cpu_used, 250);
  EXPECT_TRUE(set.at(a).used_ports.empty());
  set.RemoveAllocation(a, "web", "front", 250, 100 << 20);
  EXPECT_EQ(set.at(a).CountOf(web), 0);
  EXPECT_EQ(set.MachinesRunning(web).size(), 1U);
  EXPECT_EQ(set.MachinesRunning(front).size(), 0U);
  set.RemoveAllocation(a, "web", "front", 250, 100 << 20);  // one too many: stays at zero
  EXPECT_EQ(set.at(a).cpu_used, 0);
  EXPECT_EQ(set.at(a).allocs, 0);
}

TEST(MachineSetTest, AttributeColumnsAndValueIndex) {
  MachineSet set;
  AddTo(set, Machine("a", 1000, 1024, {{"meta.rack", "r1"}}));
  AddTo(set, Machine("b", 1000, 1024, {{"meta.rack", "r2"}, {"meta.gpu", "yes"}}));
  AddTo(set, Machine("c", 1000, 1024, {{"meta.rack", "r1"}}));
  AttrId rack = set.AttributeId("meta.rack");
  AttrId gpu = set.AttributeId("meta.gpu");
  ASSERT_NE(gpu, kNoId);
  EXPECT_EQ(set.ValueCount(rack), 2U);
  uint32_t r1 = set.ValueId(rack, "r1");
  ASSERT_NE(r1, kNoId);
  EXPECT_EQ(set.ValueString(rack, r1), "r1");
  EXPECT_EQ(set.ValueId(rack, "r9"), kNoId);
  EXPECT_EQ(set.ValueId(kNoId, "r1"), kNoId);
  // meta.gpu first appeared on the second machine: the first has no value, nor the third.
  std::span<const uint32_t> col = set.Column(gpu);
  ASSERT_EQ(col.size(), 3U);
  EXPECT_EQ(col[0], kNoId);
  EXPECT_EQ(col[1], set.ValueId(gpu, "yes"));
  EXPECT_EQ(col[2], kNoId);
  EXPECT_EQ(set.Column(rack)[2], r1);
  EXPECT_TRUE(set.Column(kNoId).empty());
  EXPECT_EQ(std::vector<uint32_t>(set.MachinesWith(rack, "r1").begin(),
                                  set.MachinesWith(rack, "r1").end()),
            (std::vector<uint32_t>{0, 2}));
  EXPECT_TRUE(set.MachinesWith(rack, "r9").empty());
  // Adding a machine drops the value index; the next lookup sees the new machine.
  AddTo(set, Machine("d", 1000, 1024, {{"meta.rack", "r1"}}));
  EXPECT_EQ(set.MachinesWith(rack, "r1").size(), 3U);
  EXPECT_EQ(set.at(3).index, 3U);
}

TEST(MachineSetTest, OrderIsAPermutation) {
  MachineSet set;
  for (int i = 0; i < 50; ++i) AddTo(set, Machine("m" + std::to_string(i), 1000, 1024));
  std::vector<uint32_t> order(set.order().begin(), set.order().end());
  std::sort(order.begin(), order.end());
  for (uint32_t i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

}  // namespace
}  // namespace berth::scheduler
