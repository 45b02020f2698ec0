#include "spec/job_parser.h"

#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace berth::spec {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Every field of the format, each set to something other than its default.
constexpr char kFullJob[] = R"(name: web
type: service
priority: 70
datacenters: [dc1, dc2]
constraints:
  - attribute: meta.rack
    operator: "=="
    value: r1
  - operator: distinct_hosts
update: {max_parallel: 2, min_healthy_time: 15s, healthy_deadline: 10m, auto_revert: true}
placement: {strategy: spread, spread: meta.rack, conflicts: ["legacy-*", db]}
version: 7
groups:
  - name: frontend
    count: 2
    restart: {attempts: 5, interval: 10m, delay: 2s, max_delay: 2m, mode: fail}
    placement:
      machine_of: [cache]
    constraints:
      - {attribute: kernel.version, operator: version, value: ">= 5.10"}
    tasks:
      - name: server
        driver: docker
        image: busybox:latest
        command: /bin/httpd
        args: ["-f", "-p", "${BERTH_PORT_http}"]
        env: {GREETING: hello, PORT_COUNT: 2}
        workdir: /srv
        ports:
          - {name: http, to: 8080}
          - {name: admin, static: 9090}
        resources: {cpu: 250, memory: 64MiB}
        constraints:
          - {attribute: os.name, operator: "!=", value: windows}
          - {attribute: meta.ssd, operator: is_set}
        health:
          type: http
          port: http
          path: /healthz
          interval: 15s
          timeout: 3s
          healthy_threshold: 2
          unhealthy_threshold: 4
        route:
          hosts: [web.example.com, "*.web.example.com"]
          port: http
          path_prefix: /app
        volumes:
          - {source: data, target: /data, read_only: true}
          - {source: /var/log, target: /logs}
        kill_timeout: 30s
        labels: {team: a, com.example/tier: front}
        secrets:
          - {path: db/password, file: db_password}
          - {path: tls/web.example.com/key, file: web.key, mode: "0600", uid: 101, gid: 0}
          - {path: api/key, env: API_KEY}
      - name: worker
        driver: process
        command: /usr/bin/worker
        ports: [{name: metrics}]
        health: {type: command, command: [/bin/true, "--quiet"]}
  - name: batchy
    count: 0
    tasks:
      - name: once
        driver: process
        command: /bin/true
        health: {type: tcp, port: p1}
        ports: [{name: p1}, {name: p2}]
)";

TEST(JobParserTest, ParsesEveryField) {
  Result<Job> r = ParseJobYaml(kFullJob, "full.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Job& job = *r;
  EXPECT_EQ(job.name, "web");
  EXPECT_EQ(job.type, JobType::kService);
  EXPECT_EQ(job.priority, 70);
  EXPECT_EQ(job.datacenters, (std::vector<std::string>{"dc1", "dc2"}));
  ASSERT_EQ(job.constraints.size(), 2u);
  EXPECT_EQ(job.constraints[0], (Constraint{"meta.rack", ConstraintOperator::kEqual, "r1"}));
  EXPECT_EQ(job.constraints[1], (Constraint{"", ConstraintOperator::kDistinctHosts, ""}));
  EXPECT_EQ(job.update.max_parallel, 2);
  EXPECT_EQ(job.update.min_healthy_time, milliseconds(15'000));
  EXPECT_EQ(job.update.healthy_deadline, milliseconds(600'000));
  EXPECT_TRUE(job.update.auto_revert);
  EXPECT_EQ(job.version, 7);
  ASSERT_EQ(job.groups.size(), 2u);

  const Group& g = job.groups[0];
  EXPECT_EQ(g.name, "frontend");
  EXPECT_EQ(g.count, 2);
  EXPECT_EQ(g.restart.attempts, 5);
  EXPECT_EQ(g.restart.interval, milliseconds(600'000));
  EXPECT_EQ(g.restart.delay, milliseconds(2'000));
  EXPECT_EQ(g.restart.max_delay, milliseconds(120'000));
  EXPECT_EQ(g.restart.mode, RestartMode::kFail);
  ASSERT_EQ(g.constraints.size(), 1u);
  EXPECT_EQ(g.constraints[0],
            (Constraint{"kernel.version", ConstraintOperator::kVersion, ">= 5.10"}));
  EXPECT_EQ(g.placement, (Placement{"spread", "meta.rack", {"cache"}, {"legacy-*", "db"}}));
  ASSERT_EQ(g.tasks.size(), 2u);

  const Task& t = g.tasks[0];
  EXPECT_EQ(t.name, "server");
  EXPECT_EQ(t.driver, DriverKind::kDocker);
  EXPECT_EQ(t.image, "busybox:latest");
  EXPECT_EQ(t.command, "/bin/httpd");
  EXPECT_EQ(t.args, (std::vector<std::string>{"-f", "-p", "${BERTH_PORT_http}"}));
  EXPECT_EQ(t.env,
            (std::map<std::string, std::string>{{"GREETING", "hello"}, {"PORT_COUNT", "2"}}));
  EXPECT_EQ(t.workdir, "/srv");
  ASSERT_EQ(t.ports.size(), 2u);
  EXPECT_EQ(t.ports[0], (Port{"http", 8080, 0}));
  EXPECT_EQ(t.ports[1], (Port{"admin", 0, 9090}));
  EXPECT_EQ(t.resources.cpu, 250);
  EXPECT_EQ(t.resources.memory_bytes, 64 << 20);
  ASSERT_EQ(t.constraints.size(), 2u);
  EXPECT_EQ(t.constraints[1], (Constraint{"meta.ssd", ConstraintOperator::kIsSet, ""}));
  ASSERT_TRUE(t.health.has_value());
  EXPECT_EQ(t.health->type, HealthCheckType::kHttp);
  EXPECT_EQ(t.health->port, "http");
  EXPECT_EQ(t.health->path, "/healthz");
  EXPECT_EQ(t.health->interval, milliseconds(15'000));
  EXPECT_EQ(t.health->timeout, milliseconds(3'000));
  EXPECT_EQ(t.health->healthy_threshold, 2);
  EXPECT_EQ(t.health->unhealthy_threshold, 4);
  ASSERT_TRUE(t.route.has_value());
  EXPECT_EQ(t.route->hosts, (std::vector<std::string>{"web.example.com", "*.web.example.com"}));
  EXPECT_EQ(t.route->port, "http");
  EXPECT_EQ(t.route->path_prefix, "/app");
  ASSERT_EQ(t.volumes.size(), 2u);
  EXPECT_EQ(t.volumes[0], (Volume{"data", "/data", true}));
  EXPECT_EQ(t.volumes[1], (Volume{"/var/log", "/logs", false}));
  EXPECT_EQ(t.kill_timeout, milliseconds(30'000));
  EXPECT_EQ(t.labels,
            (std::map<std::string, std::string>{{"team", "a"}, {"com.example/tier", "front"}}));

  ASSERT_EQ(t.secrets.size(), 3u);
  EXPECT_EQ(t.secrets[0], (SecretRef{"db/password", "db_password", "", 0400}));
  EXPECT_EQ(t.secrets[1], (SecretRef{"tls/web.example.com/key", "web.key", "", 0600, 101, 0}));
  EXPECT_EQ(t.secrets[0].uid, -1);  // the agent's own unless named
  EXPECT_EQ(t.secrets[0].gid, -1);
  EXPECT_EQ(t.secrets[2], (SecretRef{"api/key", "", "API_KEY", 0400}));
  EXPECT_EQ(t.secrets[2].Target(), "env API_KEY");

  const Task& w = g.tasks[1];
  EXPECT_TRUE(w.secrets.empty());
  EXPECT_EQ(w.driver, DriverKind::kProcess);
  EXPECT_EQ(w.image, "");
  ASSERT_TRUE(w.health.has_value());
  EXPECT_EQ(w.health->type, HealthCheckType::kCommand);
  EXPECT_EQ(w.health->command, (std::vector<std::string>{"/bin/true", "--quiet"}));
  EXPECT_EQ(w.health->port, "");
  EXPECT_EQ(w.health->path, "");

  const Group& b = job.groups[1];
  EXPECT_EQ(b.count, 0);
  EXPECT_EQ(b.placement, (Placement{"spread", "meta.rack", {}, {"legacy-*", "db"}}));
  ASSERT_TRUE(b.tasks[0].health.has_value());
  EXPECT_EQ(b.tasks[0].health->type, HealthCheckType::kTcp);
  EXPECT_EQ(b.tasks[0].health->port, "p1");
  EXPECT_EQ(b.tasks[0].health->path, "");
}

TEST(JobParserTest, AppliesDefaults) {
  Result<Job> r = ParseJobYaml(R"(
name: tiny
groups:
  - name: g
    tasks:
      - name: t
        driver: docker
        image: busybox
        ports: [{name: http}]
        health: {type: http}
        route: {hosts: [tiny.local]}
)",
                               "tiny.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Job& job = *r;
  EXPECT_EQ(job.type, JobType::kService);
  EXPECT_EQ(job.priority, 50);
  EXPECT_TRUE(job.datacenters.empty());
  EXPECT_EQ(job.update, UpdatePolicy{});
  EXPECT_EQ(job.version, 0);
  const Group& g = job.groups[0];
  EXPECT_EQ(g.count, 1);
  EXPECT_EQ(g.restart, RestartPolicy{});
  EXPECT_EQ(g.placement, Placement{});
  EXPECT_EQ(g.placement.strategy, "binpack");
  const Task& t = g.tasks[0];
  EXPECT_EQ(t.resources, Resources{});
  EXPECT_EQ(t.resources.memory_bytes, 256 << 20);
  EXPECT_EQ(t.kill_timeout, milliseconds(10'000));
  // With a single port, health and route default to it.
  EXPECT_EQ(t.health->port, "http");
  EXPECT_EQ(t.health->path, "/");
  EXPECT_EQ(t.health->interval, milliseconds(10'000));
  EXPECT_EQ(t.route->port, "http");
  EXPECT_EQ(t.route->path_prefix, "/");
}

TEST(JobParserTest, RestartMaxDelayFollowsARaisedDelay) {
  Result<Job> r = ParseJobYaml(R"(
name: j
groups: [{name: g, restart: {delay: 5m}, tasks: [{name: t, driver: process, command: x}]}]
)",
                               "j.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->groups[0].restart.max_delay, milliseconds(300'000));
}

TEST(JobParserTest, NullMeansDefault) {
  Result<Job> r = ParseJobYaml(R"(
name: j
priority: ~
datacenters:
groups: [{name: g, tasks: [{name: t, driver: process, command: x, env: {A: ~}}]}]
)",
                               "j.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->priority, 50);
  EXPECT_EQ(r->groups[0].tasks[0].env.at("A"), "");
}

TEST(JobParserTest, AcceptsEveryJobTypeAndOperator) {
  for (const char* type : {"service", "batch", "system"}) {
    std::string yaml = std::string("name: j\ntype: ") + type +
                       "\ngroups: [{name: g, tasks: [{name: t, driver: process, command: x}]}]\n";
    Result<Job> r = ParseJobYaml(yaml, "j.yml");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(JobTypeName(r->type), type);
  }
  for (const char* op : {"==", "!=", "regexp", "set_contains", "version"}) {
    std::string yaml = std::string("name: j\nconstraints: [{attribute: a.b, operator: \"") + op +
                       "\", value: v}]\n"
                       "groups: [{name: g, tasks: [{name: t, driver: process, command: x}]}]\n";
    Result<Job> r = ParseJobYaml(yaml, "j.yml");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(ConstraintOperatorName(r->constraints[0].op), op);
  }
  Result<Job> r = ParseJobYaml(
      "name: j\nconstraints: [{attribute: a, operator: is_not_set}]\n"
      "groups: [{name: g, tasks: [{name: t, driver: process, command: x}]}]\n",
      "j.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->constraints[0].op, ConstraintOperator::kIsNotSet);
}

TEST(JobParserTest, SizesAndDurations) {
  EXPECT_EQ(ParseSize("512"), int64_t{512} << 20);
  EXPECT_EQ(ParseSize("512B"), 512);
  EXPECT_EQ(ParseSize("4KiB"), 4096);
  EXPECT_EQ(ParseSize("1GiB"), int64_t{1} << 30);
  EXPECT_EQ(ParseSize("2TiB"), int64_t{2} << 40);
  EXPECT_FALSE(ParseSize("lots"));
  EXPECT_FALSE(ParseSize("1GB"));
  EXPECT_FALSE(ParseSize("-1MiB"));
  EXPECT_FALSE(ParseSize(""));
  EXPECT_FALSE(ParseSize("99999999999999999999999MiB"));
  EXPECT_FALSE(ParseSize("2000TiB"));
  EXPECT_EQ(FormatSize(64 << 20), "64MiB");
  EXPECT_EQ(FormatSize(1000), "1000B");
  EXPECT_EQ(FormatSize(3 << 10), "3KiB");
  EXPECT_EQ(FormatSize(int64_t{1} << 40), "1TiB");

  EXPECT_EQ(ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(ParseDuration("10s"), milliseconds(10'000));
  EXPECT_EQ(ParseDuration("5m"), milliseconds(300'000));
  EXPECT_EQ(ParseDuration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(ParseDuration("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(ParseDuration("1m500ms"), milliseconds(60'500));
  EXPECT_EQ(ParseDuration("0"), milliseconds(0));
  EXPECT_FALSE(ParseDuration("10"));
  EXPECT_FALSE(ParseDuration("1d"));
  EXPECT_FALSE(ParseDuration("-1s"));
  EXPECT_FALSE(ParseDuration("1.5s"));
  EXPECT_FALSE(ParseDuration("s"));
  EXPECT_FALSE(ParseDuration(""));
  EXPECT_FALSE(ParseDuration("100001h"));
  EXPECT_FALSE(ParseDuration("99999999999999999999s"));
  EXPECT_EQ(FormatDuration(milliseconds(90'000)), "90s");
  EXPECT_EQ(FormatDuration(milliseconds(5'400'000)), "90m");
  EXPECT_EQ(FormatDuration(milliseconds(1'500)), "1500ms");
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0s");
  EXPECT_EQ(FormatDuration(milliseconds(7'200'000)), "2h");
}

TEST(JobParserTest, NameRule) {
  EXPECT_TRUE(IsValidName("web"));
  EXPECT_TRUE(IsValidName("0-a"));
  EXPECT_TRUE(IsValidName(std::string(63, 'a')));
  EXPECT_FALSE(IsValidName(std::string(64, 'a')));
  EXPECT_FALSE(IsValidName(""));
  EXPECT_FALSE(IsValidName("-web"));
  EXPECT_FALSE(IsValidName("Web"));
  EXPECT_FALSE(IsValidName("we_b"));
}

// A group's placement block replaces the job-level one key by key.
TEST(JobParserTest, GroupPlacementOverridesTheJobsKeyByKey) {
  Result<Job> r = ParseJobYaml(R"(
name: shop
placement:
  strategy: spread
  spread: meta.rack
  machine_of: [cache]
  conflicts: ["legacy-*"]
groups:
  - name: inherits
    tasks: [{name: t, driver: process, command: x}]
  - name: own-lists
    placement: {machine_of: [], conflicts: [db, "shop"]}
    tasks: [{name: t, driver: process, command: x}]
  - name: binpacked
    placement: {strategy: binpack}
    tasks: [{name: t, driver: process, command: x}]
  - name: spread-again
    placement: {strategy: spread}
    tasks: [{name: t, driver: process, command: x}]
  - name: other-attribute
    placement: {spread: meta.zone}
    tasks: [{name: t, driver: process, command: x}]
  - name: nulls
    placement: {strategy: null, conflicts: null}
    tasks: [{name: t, driver: process, command: x}]
)",
                               "shop.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Placement job_level{"spread", "meta.rack", {"cache"}, {"legacy-*"}};
  EXPECT_EQ(r->groups[0].placement, job_level);
  EXPECT_EQ(r->groups[1].placement, (Placement{"spread", "meta.rack", {}, {"db", "shop"}}));
  // Another strategy drops the inherited spread attribute; spread again keeps it.
  EXPECT_EQ(r->groups[2].placement, (Placement{"binpack", "", {"cache"}, {"legacy-*"}}));
  EXPECT_EQ(r->groups[3].placement, job_level);
  EXPECT_EQ(r->groups[4].placement, (Placement{"spread", "meta.zone", {"cache"}, {"legacy-*"}}));
  EXPECT_EQ(r->groups[5].placement, job_level);
}

TEST(JobParserTest, SpreadDefaultsToMachineId) {
  Result<Job> r = ParseJobYaml(R"(
name: web
groups:
  - name: g
    placement: {strategy: spread}
    tasks: [{name: t, driver: process, command: x}]
  - name: h
    placement: {strategy: random, conflicts: ["*"]}
    tasks: [{name: t, driver: process, command: x}]
)",
                               "web.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->groups[0].placement, (Placement{"spread", "machine.id", {}, {}}));
  EXPECT_EQ(r->groups[1].placement, (Placement{"random", "", {}, {"*"}}));
}

// A minimal valid job: each error case below breaks exactly one thing in it.
constexpr char kBase[] = R"(name: web
groups:
  - name: g
    tasks:
      - name: t
        driver: docker
        image: busybox
)";

struct ErrorCase {
  std::string yaml;
  std::string location;  // "file:line:col: path"
  std::string message;
};

void PrintTo(const ErrorCase& c, std::ostream* os) {
  *os << c.location;
}

class JobParserErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(JobParserErrorTest, NamesFileLineAndField) {
  const ErrorCase& c = GetParam();
  Result<Job> r = ParseJobYaml(c.yaml, "web.yml");
  ASSERT_FALSE(r.ok()) << c.yaml;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(c.location));
  EXPECT_THAT(r.status().message(), HasSubstr(c.message));
}

// Appends one task line to kBase (indented under the task).
std::string TaskWith(const std::string& lines) {
  return std::string(kBase) + lines;
}

const ErrorCase kErrorCases[] = {
    // Unknown fields, at every level.
    {"nmae: web\n", "web.yml:1:1: nmae", "unknown field (expected one of: name, type"},
    {"name: web\nupdate: {max_paralel: 1}\ngroups: []\n", "web.yml:2:10: update.max_paralel",
     "unknown field"},
    {"name: web\ngroups:\n  - name: g\n    cont: 2\n", "web.yml:4:5: groups[0].cont",
     "unknown field"},
    // Wrong types.
    {"- name\n", "web.yml:1:1", "expected a map, got a list"},
    {"name: [web]\n", "web.yml:1:7: name", "expected a string, got a list"},
    {"name: web\npriority: high\n", "web.yml:2:11: priority",
     "expected an integer from 1 to 100, got \"high\""},
    {"name: web\npriority: \"50\"\n", "web.yml:2:11: priority", "got the string \"50\""},
    {"name: web\ngroups: {name: g}\n", "web.yml:2:9: groups", "expected a list, got a map"},
    {"name: web\nupdate: {auto_revert: yes}\n", "web.yml:2:23: update.auto_revert",
     "expected true or false, got \"yes\""},
    // Missing required fields.
    {"type: batch\n", "web.yml:1:1: name", "required field is missing"},
    {"name: web\n", "web.yml:1:1: groups", "required field is missing"},
    {"name: web\ngroups:\n  - name: g\n", "web.yml:3:5: groups[0].tasks",
     "required field is missing"},
    {"name: web\ngroups:\n  - tasks: []\n", "web.yml:3:5: groups[0].name",
     "required field is missing"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n      - name: t\n",
     "web.yml:5:9: groups[0].tasks[0].driver", "required (docker or process)"},
    {"", "web.yml", "the document is empty"},
    // Bad values.
    {"name: Web\n", "web.yml:1:7: name", "expected a name of lower-case letters"},
    {"name: web\ntype: daemon\n", "web.yml:2:7: type",
     "expected one of service, batch, system, got \"daemon\""},
    {"name: web\npriority: 0\n", "web.yml:2:11: priority", "from 1 to 100"},
    {"name: web\ngroups: []\n", "web.yml:2:9: groups", "a job needs at least one group"},
    {"name: web\ngroups:\n  - name: g\n    count: -1\n", "web.yml:4:12: groups[0].count",
     "expected an integer from 0 to 1000000, got \"-1\""},
    {"name: web\ndatacenters: [dc1, dc1]\n", "web.yml:2:20: datacenters[1]",
     "duplicate datacenter"},
    {"name: web\nupdate: {healthy_deadline: 1s}\n", "web.yml:2:28: update.healthy_deadline",
     "must be longer than min_healthy_time (10s)"},
    {"name: web\nconstraints: [{attribute: a, operator: \"=\", value: b}]\n",
     "web.yml:2:40: constraints[0].operator", "expected one of ==, !=, regexp"},
    {"name: web\nconstraints: [{attribute: a, operator: \"==\"}]\n",
     "web.yml:2:15: constraints[0].value", "required with operator =="},
    {"name: web\nconstraints: [{attribute: a, operator: is_set, value: x}]\n",
     "web.yml:2:55: constraints[0].value", "not allowed with operator is_set"},
    {"name: web\nconstraints: [{operator: \"!=\", value: x}]\n",
     "web.yml:2:15: constraints[0].attribute", "required field is missing"},
    {"name: web\nconstraints: [{attribute: a, operator: distinct_hosts}]\n",
     "web.yml:2:27: constraints[0].attribute", "not allowed with operator distinct_hosts"},
    {"name: web\ngroups:\n  - name: g\n    restart: {delay: 10s, max_delay: 1s}\n",
     "web.yml:4:38: groups[0].restart.max_delay", "must be at least delay (10s)"},
    {"name: web\ngroups:\n  - name: g\n    restart: {mode: retry}\n",
     "web.yml:4:21: groups[0].restart.mode", "expected one of delay, fail"},
    {"name: web\ngroups:\n  - name: g\n    restart: {interval: soon}\n",
     "web.yml:4:25: groups[0].restart.interval", "expected a duration like 500ms"},
    // Duplicates.
    {"name: web\ngroups:\n  - {name: g, tasks: [{name: t, driver: process, command: x}]}\n"
     "  - {name: g, tasks: [{name: t, driver: process, command: x}]}\n",
     "web.yml:4:12: groups[1].name", "duplicate group name \"g\""},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n      - {name: t, driver: process, command: x}\n"
     "      - {name: t, driver: process, command: y}\n",
     "web.yml:6:16: groups[0].tasks[1].name", "duplicate task name \"t\""},
    {"name: web\nname: web2\n", "web.yml:2:1: name", "duplicate key"},
    // Task-level checks.
    {"name: web\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        driver: docker\n",
     "web.yml:5:9: groups[0].tasks[0].image", "required for the docker driver"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        driver: process\n",
     "web.yml:5:9: groups[0].tasks[0].command", "required for the process driver"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        driver: vm\n",
     "web.yml:6:17: groups[0].tasks[0].driver", "expected one of docker, process"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n"
     "      - {name: t, driver: process, command: x, image: busybox}\n",
     "web.yml:5:55: groups[0].tasks[0].image", "not allowed with the process driver"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n"
     "      - {name: t, driver: process, command: x, ports: [{name: a, to: 80}]}\n",
     "web.yml:5:70: groups[0].tasks[0].ports[0].to", "not allowed with the process driver"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n"
     "      - {name: t, driver: process, command: x, volumes: [{source: a, target: /a}]}\n",
     "web.yml:5:57: groups[0].tasks[0].volumes", "only supported by the docker driver"},
    {TaskWith("        resources: {memory: lots}\n"),
     "web.yml:8:29: groups[0].tasks[0].resources.memory",
     "expected a size like 256MiB (units B, KiB, MiB, GiB, TiB; a plain number is MiB), got "
     "\"lots\""},
    {TaskWith("        resources: {memory: 10KiB}\n"),
     "web.yml:8:29: groups[0].tasks[0].resources.memory", "must be at least 1MiB"},
    {TaskWith("        resources: {cpu: 0}\n"), "web.yml:8:26: groups[0].tasks[0].resources.cpu",
     "expected an integer from 1"},
    {TaskWith("        kill_timeout: 10\n"), "web.yml:8:23: groups[0].tasks[0].kill_timeout",
     "expected a duration like 500ms, 10s, 5m or 1h30m, got \"10\""},
    {TaskWith("        ports: [{name: http}, {name: http}]\n"),
     "web.yml:8:38: groups[0].tasks[0].ports[1].name", "duplicate port name \"http\""},
    {TaskWith("        ports: [{name: my-port}]\n"),
     "web.yml:8:24: groups[0].tasks[0].ports[0].name", "expected a port name"},
    {TaskWith("        ports: [{name: a, static: 70000}]\n"),
     "web.yml:8:35: groups[0].tasks[0].ports[0].static", "from 1 to 65535"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n"
     "      - {name: a, driver: process, command: x, ports: [{name: p, static: 80}]}\n"
     "      - {name: b, driver: process, command: x, ports: [{name: q, static: 80}]}\n",
     "web.yml:6:74: groups[0].tasks[1].ports[0].static", "host port 80 is already used"},
    {TaskWith("        ports: [{name: http}]\n        route: {hosts: [a.com], port: htp}\n"),
     "web.yml:9:39: groups[0].tasks[0].route.port",
     "names no port of the task (declared: http), got \"htp\""},
    {TaskWith("        health: {type: http, port: http}\n"),
     "web.yml:8:36: groups[0].tasks[0].health.port", "names no port of the task (declared: none)"},
    {TaskWith("        ports: [{name: a}, {name: b}]\n        health: {type: tcp}\n"),
     "web.yml:9:17: groups[0].tasks[0].health.port",
     "required when the task declares several ports"},
    {TaskWith("        route: {hosts: [a.com]}\n"), "web.yml:8:16: groups[0].tasks[0].route.port",
     "required, and the task declares no ports"},
    {TaskWith("        health: {type: grpc}\n"), "web.yml:8:24: groups[0].tasks[0].health.type",
     "expected one of http, tcp, command"},
    {TaskWith("        health: {type: command}\n"),
     "web.yml:8:17: groups[0].tasks[0].health.command", "required in a command check"},
    {TaskWith("        health: {type: command, command: [x], port: p}\n"),
     "web.yml:8:53: groups[0].tasks[0].health.port", "not allowed in a command check"},
    {TaskWith("        ports: [{name: p}]\n        health: {type: http, path: x}\n"),
     "web.yml:9:36: groups[0].tasks[0].health.path", "expected a path starting with '/'"},
    {TaskWith("        ports: [{name: p}]\n        health: {type: tcp, path: /}\n"),
     "web.yml:9:35: groups[0].tasks[0].health.path", "only allowed in an http check"},
    {TaskWith("        ports: [{name: p}]\n        route: {hosts: [Web.Example.com]}\n"),
     "web.yml:9:25: groups[0].tasks[0].route.hosts[0]", "expected a lower-case host name"},
    {TaskWith("        ports: [{name: p}]\n        route: {hosts: []}\n"),
     "web.yml:9:24: groups[0].tasks[0].route.hosts", "must not be empty"},
    {TaskWith("        ports: [{name: p}]\n        route: {hosts: [a.b], path_prefix: x}\n"),
     "web.yml:9:44: groups[0].tasks[0].route.path_prefix", "expected a path starting with '/'"},
    {TaskWith("        env: {1X: a}\n"), "web.yml:8:15: groups[0].tasks[0].env.1X",
     "expected an environment variable name"},
    {TaskWith("        env: {BERTH_PORT_http: 1}\n"),
     "web.yml:8:15: groups[0].tasks[0].env.BERTH_PORT_http", "BERTH_ variables are reserved"},
    {TaskWith("        env: {A: [1]}\n"), "web.yml:8:18: groups[0].tasks[0].env.A",
     "expected a string, got a list"},
    {TaskWith("        workdir: srv\n"), "web.yml:8:18: groups[0].tasks[0].workdir",
     "expected an absolute path"},
    {TaskWith("        volumes: [{source: data, target: data}]\n"),
     "web.yml:8:42: groups[0].tasks[0].volumes[0].target", "expected an absolute path"},
    {TaskWith("        volumes: [{source: \"a b\", target: /d}]\n"),
     "web.yml:8:28: groups[0].tasks[0].volumes[0].source", "expected a volume name"},
    {TaskWith("        volumes: [{source: a, target: /d}, {source: b, target: /d}]\n"),
     "web.yml:8:64: groups[0].tasks[0].volumes[1].target", "already mounted at /d"},
    {TaskWith("        labels: {\"a b\": x}\n"), "web.yml:8:18: groups[0].tasks[0].labels.a b",
     "expected a label key"},
    {TaskWith("        args: [a, {b: c}]\n"), "web.yml:8:19: groups[0].tasks[0].args[1]",
     "expected a string, got a map"},
    {"name: web\ngroups:\n  - name: g\n    tasks:\n"
     "      - {name: t, driver: docker, image: \"bad image\"}\n",
     "web.yml:5:42: groups[0].tasks[0].image", "expected an image reference"},
    // Placement.
    {"name: web\nplacement: {strategy: fastest}\n", "web.yml:2:23: placement.strategy",
     "unknown strategy \"fastest\" (expected one of binpack, spread, random)"},
    {"name: web\nplacement: {strategy: [spread]}\n", "web.yml:2:23: placement.strategy",
     "expected a string, got a list"},
    {"name: web\nplacement: {spread: meta.rack}\n", "web.yml:2:21: placement.spread",
     "only allowed with strategy spread (the strategy here is binpack)"},
    {"name: web\nplacement: {strategy: spread, spread: \"a b\"}\n",
     "web.yml:2:39: placement.spread", "expected an attribute such as meta.rack"},
    {"name: web\nplacement: {machine_of: [Cache]}\n", "web.yml:2:26: placement.machine_of[0]",
     "expected a job name of lower-case letters, digits and '-', got \"Cache\""},
    {"name: web\nplacement: {machine_of: [db, web]}\n", "web.yml:2:30: placement.machine_of[1]",
     "names this job itself"},
    {"name: web\nplacement: {machine_of: [db, db]}\n", "web.yml:2:30: placement.machine_of[1]",
     "duplicate job name"},
    {"name: web\nplacement: {machine_of: db}\n", "web.yml:2:25: placement.machine_of",
     "expected a list, got a scalar"},
    {"name: web\nplacement: {conflicts: [\"db_*\"]}\n", "web.yml:2:25: placement.conflicts[0]",
     "expected a job name or a pattern of lower-case letters, digits, '-' and '*'"},
    {"name: web\nplacement: {conflicts: [a, a]}\n", "web.yml:2:28: placement.conflicts[1]",
     "duplicate pattern"},
    {"name: web\nplacement: {stratgy: spread}\n", "web.yml:2:13: placement.stratgy",
     "unknown field (expected one of: strategy, spread, machine_of, conflicts)"},
    {"name: web\nplacement: spread\n", "web.yml:2:12: placement", "expected a map, got a scalar"},
    {"name: web\ngroups:\n  - name: g\n    placement: {spread: meta.rack}\n",
     "web.yml:4:25: groups[0].placement.spread",
     "only allowed with strategy spread (the strategy here is binpack)"},
    {"name: web\nplacement: {strategy: spread}\ngroups:\n  - name: g\n"
     "    placement: {strategy: random, spread: meta.rack}\n",
     "web.yml:5:43: groups[0].placement.spread", "(the strategy here is random)"},
    // YAML itself.
    {"name: [web\n", "web.yml:2:1", "YAML syntax error"},
    {"name: web\n  bad: indent\n", "web.yml:2:6", "YAML syntax error"},
    {"a: 1\n---\nb: 2\n", "web.yml:2:1", "expected one YAML document, found more"},
    {"name: web\n? [a]\n: b\n", "web.yml:2:3", "map keys must be plain strings"},
    {"&a [*a]\n", "web.yml:1:5", "an alias may not refer to an enclosing anchor"},
    {"name: web\ngroups: [*nowhere]\n", "web.yml:2:10",
     "YAML syntax error: the referenced anchor is not defined"},
};

INSTANTIATE_TEST_SUITE_P(Errors, JobParserErrorTest, ::testing::ValuesIn(kErrorCases));

// Each case adds a `secrets:` block (and maybe more) under kBase's task, from line 8.
const ErrorCase kSecretErrorCases[] = {
    {TaskWith("        secrets: {path: a, file: b}\n"), "web.yml:8:18: groups[0].tasks[0].secrets",
     "expected a list, got a map"},
    {TaskWith("        secrets: [{file: b}]\n"), "web.yml:8:19: groups[0].tasks[0].secrets[0].path",
     "required field is missing"},
    {TaskWith("        secrets: [{path: a}]\n"), "web.yml:8:19: groups[0].tasks[0].secrets[0].file",
     "required: where the secret goes (file, or env)"},
    {TaskWith("        secrets: [{path: a, file: b, env: B}]\n"),
     "web.yml:8:43: groups[0].tasks[0].secrets[0].env",
     "a secret goes to a file or to env, not both"},
    {TaskWith("        secrets: [{path: /db/password, file: b}]\n"),
     "web.yml:8:26: groups[0].tasks[0].secrets[0].path",
     "expected a relative secret path such as db/password"},
    {TaskWith("        secrets: [{path: db/../x, file: b}]\n"),
     "web.yml:8:26: groups[0].tasks[0].secrets[0].path", "got \"db/../x\""},
    {TaskWith("        secrets: [{path: db//x, file: b}]\n"),
     "web.yml:8:26: groups[0].tasks[0].secrets[0].path", "no empty"},
    {TaskWith("        secrets: [{path: db/, file: b}]\n"),
     "web.yml:8:26: groups[0].tasks[0].secrets[0].path", "got \"db/\""},
    {TaskWith("        secrets: [{path: \"\", file: b}]\n"),
     "web.yml:8:26: groups[0].tasks[0].secrets[0].path", "must not be empty"},
    {TaskWith("        secrets: [{path: a, file: x/y}]\n"),
     "web.yml:8:35: groups[0].tasks[0].secrets[0].file", "expected a file name"},
    {TaskWith("        secrets: [{path: a, file: ..}]\n"),
     "web.yml:8:35: groups[0].tasks[0].secrets[0].file", "got \"..\""},
    {TaskWith("        secrets: [{path: a, env: 1X}]\n"),
     "web.yml:8:34: groups[0].tasks[0].secrets[0].env", "expected an environment variable name"},
    {TaskWith("        secrets: [{path: a, env: BERTH_X}]\n"),
     "web.yml:8:34: groups[0].tasks[0].secrets[0].env", "BERTH_ variables are reserved"},
    {TaskWith("        env: {X: plain}\n        secrets: [{path: a, env: X}]\n"),
     "web.yml:9:34: groups[0].tasks[0].secrets[0].env", "X is already set in the task's env"},
    {TaskWith("        secrets: [{path: a, env: X, mode: \"0400\"}]\n"),
     "web.yml:8:43: groups[0].tasks[0].secrets[0].mode", "only allowed for a file secret"},
    {TaskWith("        secrets: [{path: a, file: b, mode: \"0644\"}]\n"),
     "web.yml:8:44: groups[0].tasks[0].secrets[0].mode",
     "expected an owner-only octal mode that lets the owner read"},
    {TaskWith("        secrets: [{path: a, file: b, mode: \"0200\"}]\n"),
     "web.yml:8:44: groups[0].tasks[0].secrets[0].mode", "got \"0200\""},
    {TaskWith("        secrets: [{path: a, file: b, mode: rw}]\n"),
     "web.yml:8:44: groups[0].tasks[0].secrets[0].mode", "got \"rw\""},
    {TaskWith("        secrets: [{path: a, file: b, owner: me}]\n"),
     "web.yml:8:38: groups[0].tasks[0].secrets[0].owner",
     "unknown field (expected one of: path, file, env, mode, uid, gid)"},
    {TaskWith("        secrets: [{path: a, env: X, uid: 1}]\n"),
     "web.yml:8:42: groups[0].tasks[0].secrets[0].uid", "only allowed for a file secret"},
    {TaskWith("        secrets: [{path: a, file: b, gid: -1}]\n"),
     "web.yml:8:43: groups[0].tasks[0].secrets[0].gid", "expected an integer from 0 to 2147483646"},
    {TaskWith("        secrets: [{path: a, file: b, uid: \"1000\"}]\n"),
     "web.yml:8:43: groups[0].tasks[0].secrets[0].uid", "got the string \"1000\""},
    {TaskWith("        secrets:\n          - {path: a, file: b}\n          - {path: c, file: b}\n"),
     "web.yml:10:29: groups[0].tasks[0].secrets[1].file",
     "another secret of this task already goes to file \"b\""},
    {TaskWith("        secrets:\n          - {path: a, env: K}\n          - {path: a, env: K}\n"),
     "web.yml:10:28: groups[0].tasks[0].secrets[1].env",
     "another secret of this task already goes to env K"},
    {TaskWith("        volumes: [{source: data, target: /run/secrets/x}]\n"
              "        secrets: [{path: a, file: b}]\n"),
     "web.yml:8:42: groups[0].tasks[0].volumes[0].target",
     "overlaps /run/secrets, where the task's secret files are mounted"},
};

INSTANTIATE_TEST_SUITE_P(SecretErrors, JobParserErrorTest, ::testing::ValuesIn(kSecretErrorCases));

TEST(JobParserTest, SecretsTargetsAndModes) {
  Result<Job> r = ParseJobYaml(TaskWith(R"(        volumes: [{source: run, target: /run}]
        secrets:
          - {path: db/password, file: db_password}
          - {path: db/password, env: DB_PASSWORD}
          - {path: a.b/c_d-e, file: x, mode: 600}
          - {path: k, file: y, mode: 0o700}
          - {path: k, file: z, mode: "0500"}
)"),
                               "web.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& s = r->groups[0].tasks[0].secrets;
  ASSERT_EQ(s.size(), 5u);
  // One path may go to several targets.
  EXPECT_EQ(s[0], (SecretRef{"db/password", "db_password", "", 0400}));
  EXPECT_EQ(s[1], (SecretRef{"db/password", "", "DB_PASSWORD", 0400}));
  EXPECT_EQ(s[2].mode, 0600);
  EXPECT_EQ(s[3].mode, 0700);
  EXPECT_EQ(s[4].mode, 0500);
  // Secrets work on the process driver too (files in its secrets dir).
  Result<Job> p = ParseJobYaml(R"(name: web
groups:
  - name: g
    tasks:
      - name: t
        driver: process
        command: /bin/true
        secrets: [{path: x, file: x}]
)",
                               "web.yml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->groups[0].tasks[0].secrets.size(), 1u);
}

TEST(JobParserTest, SecretPathRule) {
  for (const char* good : {"a", "db/password", "A/b.c/d_e-f", "x/y/z/1", "..a", "a.."}) {
    EXPECT_TRUE(IsValidSecretPath(good)) << good;
  }
  for (const char* bad :
       {"", "/a", "a/", "a//b", "..", "a/../b", "./a", "a/.", "a b", "a\\b", "a:b", "Ã©"}) {
    EXPECT_FALSE(IsValidSecretPath(bad)) << bad;
  }
  EXPECT_TRUE(IsValidSecretPath(std::string(200, 'a') + "/" + std::string(55, 'b')));
  EXPECT_FALSE(IsValidSecretPath(std::string(200, 'a') + "/" + std::string(56, 'b')));
  EXPECT_FALSE(IsValidSecretFileName(std::string(256, 'a')));
}

TEST(JobParserTest, RejectsOversizedInput) {
  std::string big = "name: web\n# " + std::string(2 << 20, 'x') + "\n";
  Result<Job> r = ParseJobYaml(big, "big.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_FALSE(ParseJobJson(big, "big.json").ok());
}

TEST(JobParserTest, SurvivesDeepNesting) {
  std::string deep(100'000, '[');
  Result<Job> r = ParseJobYaml(deep, "deep.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  std::string dashes;
  for (int i = 0; i < 5000; ++i) dashes += "- ";
  EXPECT_FALSE(ParseJobYaml(dashes + "x\n", "deep.yml").ok());
  EXPECT_FALSE(ParseJobJson(deep + std::string(100'000, ']'), "deep.json").ok());
}

TEST(JobParserTest, BoundsAliasExpansion) {
  // "Billion laughs": each level references the previous one ten times.
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + prev;
    for (int k = 1; k < 10; ++k) yaml += ", " + prev;
    yaml += "]\n";
  }
  Result<Job> r = ParseJobYaml(yaml, "bomb.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("too large"));
}

TEST(JobParserTest, BoundsAliasedText) {
  // Few nodes, but each alias would copy a 512 KiB string.
  std::string yaml = "a: &s \"" + std::string(512 << 10, 'x') + "\"\nb: [*s";
  for (int i = 0; i < 40; ++i) yaml += ", *s";
  yaml += "]\n";
  Result<Job> r = ParseJobYaml(yaml, "bomb.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("too large"));
}

// Found by fuzzing: yaml-cpp's LoadAll never returns on this input (it used to hang here).
TEST(JobParserTest, RegressionLoadAllLoop) {
  std::string text(",\0\0\0\0\0\0\0b\ngrogp, resourcms: {me y:rmolots}}\n", 44);
  EXPECT_FALSE(ParseJobYaml(text, "hang.yml").ok());
  EXPECT_FALSE(ParseJobJson(text, "hang.json").ok());
}

TEST(JobParserTest, AcceptsAnchorsWithinLimits) {
  Result<Job> r = ParseJobYaml(R"(
name: web
groups:
  - name: a
    tasks: &tasks
      - {name: t, driver: process, command: /bin/true, env: &env {A: "1"}}
  - name: b
    tasks: *tasks
)",
                               "anchors.yml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->groups[0].tasks, r->groups[1].tasks);
}

TEST(JobParserTest, MessagesStayOneLineAndShort) {
  std::string yaml = "name: web\n\"a\\nb" + std::string(900, 'k') + "\": 1\n";
  Result<Job> r = ParseJobYaml(yaml, "keys.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("keys.yml:2:1: a?bkkk"));
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  EXPECT_LT(r.status().message().size(), 500u);
}

TEST(JobParserTest, RejectsInvalidUtf8AndNul) {
  Result<Job> r = ParseJobYaml("name: \"w\\0eb\"\ngroups: []\n", "nul.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nul.yml:1:7: name: NUL characters"));
  r = ParseJobYaml("name: web\nlabels: \"\xff\"\n", "utf.yml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("invalid UTF-8"));
}

TEST(JobParserJsonTest, ParsesJsonWithPositions) {
  constexpr char kJson[] = R"({
  "name": "web",
  "groups": [
    {"name": "g", "count": 3, "tasks": [
      {"name": "t", "driver": "docker", "image": "busybox",
       "resources": {"memory": 128, "cpu": 10}}
    ]}
  ]
})";
  Result<Job> r = ParseJobJson(kJson, "web.json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->groups[0].count, 3);
  EXPECT_EQ(r->groups[0].tasks[0].resources.memory_bytes, 128 << 20);

  std::string bad = kJson;
  bad.replace(bad.find("128"), 3, "\"lots\"");
  r = ParseJobJson(bad, "web.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("web.json:6:32: groups[0].tasks[0].resources.memory: expected a size"));
}

TEST(JobParserJsonTest, StrictJson) {
  Result<Job> r = ParseJobJson("{\"name\": \"web\",\n \"groups\": [}", "web.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("web.json:2:13: invalid JSON: syntax error"));
  // YAML is not JSON.
  r = ParseJobJson("name: web\n", "web.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("invalid JSON"));
  r = ParseJobJson(R"({"name": "web", "name": "x"})", "web.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("duplicate key \"name\""));
  // JSON's string "2" is not the number 2.
  r = ParseJobJson(R"({"name": "web", "priority": "2"})", "web.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("web.json:1:29: priority: expected an integer"));
}

TEST(JobParserJsonTest, FallsBackWhenYamlDisagrees) {
  // yaml-cpp decodes a surrogate pair differently from JSON; the JSON reading wins, unpositioned.
  Result<Job> r = ParseJobJson(
      R"({"name": "web", "groups": [{"name": "g", "tasks": [{"name": "t", "driver": "process",
          "command": "/bin/echo", "args": ["\ud83d\ude00"]}]}]})",
      "web.json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->groups[0].tasks[0].args[0], "\xf0\x9f\x98\x80");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(JobParserTest, ExampleFilesParse) {
  for (const char* name : {"web.yml", "web-docker.yml"}) {
    std::string path = std::string(BERTH_SOURCE_DIR) + "/examples/" + name;
    std::string text = ReadFile(path);
    ASSERT_FALSE(text.empty()) << path;
    Result<Job> r = ParseJobYaml(text, name);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->name, "web");
    ASSERT_EQ(r->groups.size(), 1u);
    const Task& t = r->groups[0].tasks[0];
    ASSERT_TRUE(t.route.has_value());
    EXPECT_EQ(t.route->hosts, std::vector<std::string>{"web.berth.localhost"});
    ASSERT_TRUE(t.health.has_value());
    EXPECT_EQ(t.health->port, "http");
  }
}

}  // namespace
}  // namespace berth::spec
