#include "cli/output.h"

#include <gtest/gtest.h>

#include <sstream>

namespace berth::cli {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'100'000;  // 2023-11-14 22:15:00 UTC

json Running() {
  return json::parse(R"({
    "id": "web-frontend-0-aaaa1111", "job": "web", "group": "frontend", "index": 0,
    "machine": "m1", "job_version": 3, "state": "running", "health": "healthy",
    "message": "", "desired": "run", "updated_at_ms": 1700000090000,
    "machine_api": "10.0.0.1:4680",
    "tasks": [
      {"name": "server", "driver": "process", "state": "running", "handle": "4242:99",
       "pid": 4242, "ports": {"http": 20001, "admin": 20002}, "health": "healthy",
       "health_message": "", "exit_code": 1, "restarts": 2, "started_at_ms": 1700000040000,
       "finished_at_ms": 0, "message": "started"},
      {"name": "proxy", "driver": "docker", "state": "restarting",
       "handle": "0123456789abcdef0123", "pid": 0, "ports": {}, "health": "unhealthy",
       "health_message": "connection refused", "exit_code": null, "restarts": 3,
       "started_at_ms": 0, "finished_at_ms": 0, "message": ""}
    ],
    "events": [
      {"time_ms": 1700000040000, "task": "server", "type": "started", "message": "pid 4242"},
      {"time_ms": 1700000050000, "task": "", "type": "placed", "message": ""}
    ]})");
}

TEST(OutputTest, FormatAge) {
  EXPECT_EQ(FormatAge(kNow, 0), "-");
  EXPECT_EQ(FormatAge(kNow, kNow - 5'000), "5s");
  EXPECT_EQ(FormatAge(kNow, kNow + 5'000), "0s");  // clocks disagree: never negative
  EXPECT_EQ(FormatAge(kNow, kNow - 10 * 60'000), "10m");
  EXPECT_EQ(FormatAge(kNow, kNow - 5 * 3'600'000), "5h");
  EXPECT_EQ(FormatAge(kNow, kNow - 3 * 86'400'000), "3d");
}

TEST(OutputTest, AllocTable) {
  json pending = {{"id", "web-frontend-1-bbbb2222"},
                  {"job", "web"},
                  {"group", "frontend"},
                  {"index", 1},
                  {"machine", "m2"},
                  {"state", "pending"},
                  {"desired", "run"},
                  {"health", ""},
                  {"tasks", json::array()},
                  {"updated_at_ms", 0}};
  std::ostringstream out;
  PrintAllocTable(json::array({Running(), pending}), kNow, /*with_job=*/true, out);
  EXPECT_EQ(out.str(),
            "ID                       JOB  GROUP        MACHINE  STATE    DESIRED  HEALTH   "
            "RESTARTS  UPDATED\n"
            "web-frontend-0-aaaa1111  web  frontend[0]  m1       running  run      healthy  "
            "5         10s\n"
            "web-frontend-1-bbbb2222  web  frontend[1]  m2       pending  run      -        "
            "0         -\n");
  EXPECT_EQ(TotalRestarts(Running()), 5);

  std::ostringstream no_job;
  PrintAllocTable(json::array({Running()}), kNow, /*with_job=*/false, no_job);
  EXPECT_EQ(no_job.str().rfind("ID                       GROUP", 0), 0u) << no_job.str();
}

TEST(OutputTest, AllocStatus) {
  std::ostringstream out;
  PrintAllocStatus(Running(), kNow, out);
  std::string s = out.str();
  EXPECT_NE(s.find("ID:        web-frontend-0-aaaa1111\n"), std::string::npos) << s;
  EXPECT_NE(s.find("Job:       web (version 3)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("Machine:   m1 (agent 10.0.0.1:4680)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("State:     running (desired: run)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("Updated:   2023-11-14 22:14:50 UTC (10s ago)\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("Message:"), std::string::npos) << s;  // empty: not shown
  // The task table: pid for a process, a short container id for docker, ports, health.
  EXPECT_NE(s.find("NAME    DRIVER   STATE       PID/CONTAINER  PORTS                   HEALTH"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("server  process  running     4242           admin=20002,http=20001  healthy"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("proxy   docker   restarting  0123456789ab   -"), std::string::npos) << s;
  EXPECT_NE(s.find("unhealthy (connection refused)"), std::string::npos) << s;
  EXPECT_NE(s.find("Recent events:\n"), std::string::npos) << s;
  EXPECT_NE(s.find("2023-11-14 22:14:00 UTC  server  started  pid 4242"), std::string::npos) << s;
  EXPECT_NE(s.find("2023-11-14 22:14:10 UTC  -       placed\n"), std::string::npos) << s;
}

TEST(OutputTest, AllocStatusToleratesMissingFields) {
  std::ostringstream out;
  PrintAllocStatus(json{{"id", "x"}, {"machine_api", ""}}, kNow, out);
  std::string s = out.str();
  EXPECT_NE(s.find("Machine:   - (not registered)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("Tasks:\n  none reported\n"), std::string::npos) << s;
  EXPECT_NE(s.find("Recent events:\n  none\n"), std::string::npos) << s;
  std::ostringstream junk;
  PrintAllocTable(json::array({json("not an object")}), kNow, true, junk);  // no throw
}

TEST(OutputTest, SecretRefs) {
  std::ostringstream out;
  PrintSecretRefs(json::parse(R"([
    {"name": "api", "driver": "docker", "secrets": [
      {"path": "db/password", "file": "db_password", "mode": "0400"},
      {"path": "api/key", "env": "API_KEY"}]},
    {"name": "worker", "driver": "process", "secrets": [
      {"path": "tls/key", "file": "key.pem", "mode": "0600"}]},
    {"name": "plain", "driver": "process"}])"),
                  out);
  EXPECT_EQ(out.str(),
            "\nSecrets:\n"
            "TASK    PATH         TARGET\n"
            "api     db/password  file /run/secrets/db_password (0400)\n"
            "api     api/key      env API_KEY\n"
            "worker  tls/key      file $BERTH_SECRETS_DIR/key.pem (0600)\n");
  std::ostringstream none;
  PrintSecretRefs(json::parse(R"([{"name": "plain", "secrets": []}])"), none);
  PrintSecretRefs(json("junk"), none);
  EXPECT_EQ(none.str(), "");
}

}  // namespace
}  // namespace berth::cli
