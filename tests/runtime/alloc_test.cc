#include "runtime/alloc.h"

#include <gtest/gtest.h>

namespace berth::runtime {
namespace {

Allocation Sample() {
  Allocation a;
  a.id = "web-g-0-abcd1234";
  a.job = "web";
  a.group = "g";
  a.machine = "m1";
  a.job_version = 4;
  a.created_at_ms = 1234;
  a.spec.name = "web";
  spec::Group g;
  g.name = "g";
  spec::Task t;
  t.name = "t";
  t.image = "busybox";
  g.tasks.push_back(t);
  a.spec.groups.push_back(g);
  return a;
}

TEST(AllocTest, AllocationRoundTrips) {
  Allocation a = Sample();
  auto back = Allocation::FromJson(a.ToJson(), "k");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, a);
  EXPECT_EQ(back->FindGroup()->name, "g");
}

TEST(AllocTest, AllocationErrorsNameTheField) {
  auto j = Sample().ToJson();
  j["index"] = "zero";
  auto r = Allocation::FromJson(j, "allocs/m1/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "allocs/m1/x: index: expected an integer");
  j = Sample().ToJson();
  j["group"] = "nope";
  EXPECT_NE(Allocation::FromJson(j, "k").status().message().find("\"nope\" is not a group"),
            std::string::npos);
  EXPECT_FALSE(Allocation::FromJson(nlohmann::json::array(), "k").ok());
  j = Sample().ToJson();
  j.erase("spec");
  EXPECT_EQ(Allocation::FromJson(j, "k").status().message(), "k: spec: missing");
}

TEST(AllocTest, StatusRoundTripsAndSummarizes) {
  AllocStatus s;
  s.id = "a";
  s.job = "web";
  s.group = "g";
  s.machine = "m1";
  TaskReport t1;
  t1.name = "t1";
  t1.state = RunState::kRunning;
  t1.ports = {{"http", 20001}};
  t1.health = "healthy";
  t1.exit_code = 3;
  TaskReport t2 = t1;
  t2.name = "t2";
  t2.health = "";
  s.tasks = {t1, t2};
  s.Summarize();
  EXPECT_EQ(s.state, RunState::kRunning);
  EXPECT_EQ(s.health, "healthy");
  s.tasks[1].state = RunState::kRestarting;
  s.Summarize();
  EXPECT_EQ(s.state, RunState::kRestarting);
  s.tasks[0].health = "unhealthy";
  s.tasks[1].state = RunState::kFailed;
  s.Summarize();
  EXPECT_EQ(s.state, RunState::kFailed);
  EXPECT_EQ(s.health, "unhealthy");
  for (int i = 0; i < 40; ++i) s.AddEvent({i, "t1", "x", std::to_string(i)});
  ASSERT_EQ(s.events.size(), AllocStatus::kMaxEvents);
  EXPECT_EQ(s.events.back().message, "39");
  auto back = AllocStatus::FromJson(s.ToJson(), "k");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
}

TEST(AllocTest, StatusCarriesSecretReferencesOnly) {
  Allocation a = Sample();
  a.spec.groups[0].tasks[0].secrets = {{"db/password", "db_password", "", 0600},
                                       {"api/key", "", "API_KEY", 0400},
                                       {"tls/key", "tls.key", "", 0400, 101, 102}};
  AllocStatus s = AllocStatus::Pending(a);
  ASSERT_EQ(s.tasks[0].secrets.size(), 3u);
  auto j = s.ToJson();
  EXPECT_EQ(j["tasks"][0]["secrets"][0],
            (nlohmann::json{{"path", "db/password"}, {"file", "db_password"}, {"mode", "0600"}}));
  EXPECT_EQ(j["tasks"][0]["secrets"][1], (nlohmann::json{{"path", "api/key"}, {"env", "API_KEY"}}));
  EXPECT_EQ(
      j["tasks"][0]["secrets"][2],
      (nlohmann::json{
          {"path", "tls/key"}, {"file", "tls.key"}, {"mode", "0400"}, {"uid", 101}, {"gid", 102}}));
  auto back = AllocStatus::FromJson(j, "k");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
  j["tasks"][0]["secrets"][0]["mode"] = "rw";
  EXPECT_EQ(AllocStatus::FromJson(j, "status/a").status().message(),
            "status/a: tasks[0].secrets[0].mode: expected an octal mode");
  j["tasks"][0]["secrets"][0]["mode"] = "0400";
  j["tasks"][0]["secrets"][2]["uid"] = -5;
  EXPECT_EQ(AllocStatus::FromJson(j, "status/a").status().message(),
            "status/a: tasks[0].secrets[2].uid: expected a uid or gid from 0 to 2147483646");
  // A task without secrets has no field at all (older records read the same).
  AllocStatus plain = AllocStatus::Pending(Sample());
  EXPECT_FALSE(plain.ToJson()["tasks"][0].contains("secrets"));
}

TEST(AllocTest, StatusErrorsNameTheField) {
  AllocStatus s;
  s.id = "a";
  s.tasks.push_back({});
  auto j = s.ToJson();
  j["tasks"][0]["state"] = "dancing";
  EXPECT_EQ(AllocStatus::FromJson(j, "status/a").status().message(),
            "status/a: tasks[0].state: unknown state \"dancing\"");
  j = s.ToJson();
  j["tasks"][0]["ports"] = {{"http", "x"}};
  EXPECT_EQ(AllocStatus::FromJson(j, "status/a").status().message(),
            "status/a: tasks[0].ports.http: expected an integer");
}

TEST(AllocTest, NewAllocIdsAreUniqueAndShort) {
  std::string a = NewAllocId("web", "g", 0);
  EXPECT_EQ(a.rfind("web-g-0-", 0), 0u);
  EXPECT_NE(a, NewAllocId("web", "g", 0));
  EXPECT_LE(NewAllocId(std::string(63, 'j'), std::string(63, 'g'), 12).size(), 63u);
}

}  // namespace
}  // namespace berth::runtime
