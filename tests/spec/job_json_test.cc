#include "spec/job_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "spec/job_parser.h"

namespace berth::spec {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

Job FullJob() {
  Job job;
  job.name = "web";
  job.type = JobType::kSystem;
  job.priority = 80;
  job.datacenters = {"dc1", "dc2"};
  job.constraints = {{"meta.rack", ConstraintOperator::kEqual, "r1"},
                     {"", ConstraintOperator::kDistinctHosts, ""}};
  job.update = {3, milliseconds(1'500), milliseconds(90'000), true};
  job.version = 12;
  Group g;
  g.name = "frontend";
  g.count = 0;
  g.placement = {"spread", "meta.rack", {"cache", "queue"}, {"legacy-*"}};
  g.restart = {7, milliseconds(3'600'000), milliseconds(250), milliseconds(61'000),
               RestartMode::kFail};
  g.constraints = {{"kernel.version", ConstraintOperator::kVersion, ">= 5.10"}};
  Task t;
  t.name = "server";
  t.driver = DriverKind::kDocker;
  t.image = "busybox:latest";
  t.command = "/bin/httpd";
  t.args = {"-f", "", "${BERTH_PORT_http}"};
  t.env = {{"A", "1"}, {"EMPTY", ""}};
  t.workdir = "/srv";
  t.ports = {{"http", 8080, 0}, {"admin", 0, 9090}, {"both", 53, 5353}};
  t.resources = {4000, (int64_t{3} << 30) + 512};
  t.constraints = {{"meta.ssd", ConstraintOperator::kIsSet, ""},
                   {"os.name", ConstraintOperator::kRegexp, "^linux$"}};
  t.health = HealthCheck{HealthCheckType::kHttp, "http", "/healthz", {}, milliseconds(15'000),
                         milliseconds(1'001),    2,      5};
  t.route = Route{{"web.example.com", "*.web.example.com"}, "admin", "/app"};
  t.volumes = {{"data", "/data", true}, {"/var/log", "/logs", false}};
  t.kill_timeout = milliseconds(0);
  t.labels = {{"team", "a"}, {"com.example/tier", "front"}};
  t.secrets = {{"db/password", "db_password", "", 0400, 101, 102},
               {"tls/key", "key.pem", "", 0600},
               {"api/key", "", "API_KEY", 0400}};
  g.tasks.push_back(t);
  Task p;
  p.name = "worker";
  p.driver = DriverKind::kProcess;
  p.command = "/usr/bin/worker";
  p.ports = {{"metrics", 0, 0}};
  p.health =
      HealthCheck{HealthCheckType::kCommand, "", "", {"/bin/check", "--fast"}, milliseconds(5'000),
                  milliseconds(500),         1,  1};
  g.tasks.push_back(p);
  Task q;
  q.name = "tcp";
  q.driver = DriverKind::kProcess;
  q.command = "/bin/nc";
  q.ports = {{"p", 0, 0}};
  q.health = HealthCheck{HealthCheckType::kTcp, "p", "", {}, milliseconds(1'000),
                         milliseconds(1'000),   1,   3};
  g.tasks.push_back(q);
  job.groups.push_back(g);
  return job;
}

TEST(JobJsonTest, RoundTripIsExact) {
  Job job = FullJob();
  json j = JobToJson(job);
  Result<Job> back = JobFromJson(j);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << j.dump(2);
  EXPECT_EQ(*back, job);
}

TEST(JobJsonTest, RoundTripThroughTextAndTheJsonParser) {
  Job job = FullJob();
  std::string text = JobToJson(job).dump(2);
  Result<Job> back = ParseJobJson(text, "stored.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, job);
  // The stored form is a valid job file too: JSON is YAML.
  back = ParseJobYaml(text, "stored.yml");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, job);
}

TEST(JobJsonTest, ParsedYamlRoundTrips) {
  Result<Job> job = ParseJobYaml(R"(
name: web
groups:
  - name: g
    tasks:
      - {name: t, driver: docker, image: nginx, ports: [{name: http, to: 80}],
         health: {type: http}, route: {hosts: [a.example]}}
)",
                                 "web.yml");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  Result<Job> back = JobFromJson(JobToJson(*job));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *job);
}

TEST(JobJsonTest, CanonicalForm) {
  json j = JobToJson(FullJob());
  EXPECT_EQ(j["version"], 12);
  EXPECT_EQ(j["type"], "system");
  EXPECT_EQ(j["update"]["min_healthy_time"], "1500ms");
  EXPECT_EQ(j["update"]["healthy_deadline"], "90s");
  EXPECT_EQ(j["groups"][0]["restart"]["interval"], "1h");
  EXPECT_EQ(j["groups"][0]["restart"]["max_delay"], "61s");
  EXPECT_EQ(j["groups"][0]["placement"], (json{{"strategy", "spread"},
                                               {"spread", "meta.rack"},
                                               {"machine_of", {"cache", "queue"}},
                                               {"conflicts", {"legacy-*"}}}));
  const json& t = j["groups"][0]["tasks"][0];
  EXPECT_EQ(t["resources"]["memory"], "3221225984B");
  EXPECT_EQ(t["resources"]["cpu"], 4000);
  EXPECT_EQ(t["kill_timeout"], "0s");
  EXPECT_EQ(t["ports"][0], (json{{"name", "http"}, {"to", 8080}}));
  EXPECT_EQ(t["ports"][1], (json{{"name", "admin"}, {"static", 9090}}));
  EXPECT_EQ(t["constraints"][0], (json{{"attribute", "meta.ssd"}, {"operator", "is_set"}}));
  EXPECT_EQ(j["constraints"][1], (json{{"operator", "distinct_hosts"}}));
  const json& p = j["groups"][0]["tasks"][1];
  EXPECT_FALSE(p.contains("image"));
  EXPECT_FALSE(p["health"].contains("port"));
  EXPECT_FALSE(p["health"].contains("path"));
  EXPECT_EQ(p["health"]["command"], (json{"/bin/check", "--fast"}));
  EXPECT_FALSE(p.contains("route"));
  // Secrets: references only; the mode as an octal string (JSON has no octal numbers).
  // uid and gid only when set.
  EXPECT_EQ(t["secrets"][0], (json{{"path", "db/password"},
                                   {"file", "db_password"},
                                   {"mode", "0400"},
                                   {"uid", 101},
                                   {"gid", 102}}));
  EXPECT_EQ(t["secrets"][1], (json{{"path", "tls/key"}, {"file", "key.pem"}, {"mode", "0600"}}));
  EXPECT_EQ(t["secrets"][2], (json{{"path", "api/key"}, {"env", "API_KEY"}}));
  EXPECT_EQ(p["secrets"], json::array());

  Job defaults;
  defaults.name = "d";
  defaults.groups.push_back(Group{"g", 1, {}, {}, {}, {Task{}}});
  defaults.groups[0].tasks[0].name = "t";
  defaults.groups[0].tasks[0].image = "x";
  json d = JobToJson(defaults);
  EXPECT_EQ(d["groups"][0]["tasks"][0]["resources"]["memory"], "256MiB");
  EXPECT_EQ(d["update"]["healthy_deadline"], "5m");
  EXPECT_EQ(
      d["groups"][0]["placement"],
      (json{{"strategy", "binpack"}, {"machine_of", json::array()}, {"conflicts", json::array()}}));
  Result<Job> back = JobFromJson(d);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, defaults);
}

TEST(JobJsonTest, FromJsonValidatesWithPaths) {
  json j = JobToJson(FullJob());
  j["groups"][0]["tasks"][0]["resources"]["memory"] = "lots";
  Result<Job> r = JobFromJson(j, "jobs/web");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("jobs/web: groups[0].tasks[0].resources.memory: expected a size"));

  j = JobToJson(FullJob());
  j["groups"][0]["extra"] = 1;
  r = JobFromJson(j, "jobs/web");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("jobs/web: groups[0].extra: unknown field"));

  j = JobToJson(FullJob());
  j["priority"] = 1.5;
  r = JobFromJson(j, "jobs/web");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("priority: expected an integer"));

  j = JobToJson(FullJob());
  j["groups"][0]["count"] = "2";
  EXPECT_FALSE(JobFromJson(j).ok());

  EXPECT_FALSE(JobFromJson(json::array()).ok());
  EXPECT_FALSE(JobFromJson(json()).ok());
}

TEST(JobJsonTest, FromJsonBoundsDepthAndBadStrings) {
  json deep = json::array();
  for (int i = 0; i < 100; ++i) deep = json::array({deep});
  json j = {{"name", "web"}, {"groups", deep}};
  Result<Job> r = JobFromJson(j);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nesting too deep"));

  j = JobToJson(FullJob());
  j["name"] = "\xff";
  r = JobFromJson(j);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("invalid UTF-8"));
}

TEST(JobJsonTest, ValidateJob) {
  EXPECT_TRUE(ValidateJob(FullJob()).ok());
  Job bad = FullJob();
  bad.groups[0].tasks[0].resources.memory_bytes = 0;
  Status s = ValidateJob(bad, "compose.yml");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("compose.yml: groups[0].tasks[0].resources.memory"));
  Job odd = FullJob();
  odd.groups[0].tasks[2].health->path = "/";  // a tcp check has no path
  s = ValidateJob(odd);
  EXPECT_THAT(s.message(),
              HasSubstr("groups[0].tasks[2].health.path: only allowed in an http check"));
  // Spread without an attribute: the parser would fill in machine.id, so it is not canonical.
  Job spread = FullJob();
  spread.groups[0].placement.spread_attribute.clear();
  EXPECT_THAT(ValidateJob(spread).message(), HasSubstr("not in canonical form"));
  spread.groups[0].placement.spread_attribute = "machine.id";
  EXPECT_TRUE(ValidateJob(spread).ok());
  Job unknown = FullJob();
  unknown.groups[0].placement.strategy = "fastest";
  EXPECT_THAT(ValidateJob(unknown).message(),
              HasSubstr("groups[0].placement.strategy: unknown strategy \"fastest\""));
}

// A stored job written before placement existed still reads, with the defaults.
TEST(JobJsonTest, StoredJobWithoutPlacementReadsWithDefaults) {
  json j = JobToJson(FullJob());
  j["groups"][0].erase("placement");
  Result<Job> r = JobFromJson(j);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->groups[0].placement, Placement{});
}

}  // namespace
}  // namespace berth::spec
