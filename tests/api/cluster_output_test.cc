// The CLI's cluster views (cli/cluster_output.h). It lives here, beside the API tests whose JSON
// it prints, and runs in cli_test.
#include "cli/cluster_output.h"

#include <gtest/gtest.h>

#include <sstream>

namespace berth::cli {
namespace {

using nlohmann::json;

std::string Deployment(const json& job) {
  std::ostringstream out;
  PrintDeployment(job, out);
  return out.str();
}

TEST(ClusterOutputTest, DeploymentWithPlacementFailures) {
  json job = json::parse(R"({"name": "web", "deployment": {
    "job": "web", "version": 4, "state": "running", "message": "waiting for 2 healthy instances",
    "stable_version": 3, "reverted_from": 0, "started_at": 1700000000000,
    "updated_at": 1700000100000,
    "groups": {
      "frontend": {"desired": 3, "placed": 2, "healthy": 1, "unplaced": 1,
                   "explanation": "0 of 3 machines: 2 lacked memory, 1 is ineligible"},
      "worker": {"desired": 1, "placed": 1, "healthy": 1, "unplaced": 0, "explanation": ""}
    },
    "healthy_since": {}}})");
  EXPECT_EQ(Deployment(job),
            "Deployment:\n"
            "  Version:  4\n"
            "  State:    running\n"
            "  Message:  waiting for 2 healthy instances\n"
            "  Stable:   version 3\n"
            "  Updated:  2023-11-14 22:15:00 UTC\n"
            "\n"
            "  GROUP     DESIRED  PLACED  HEALTHY  UNPLACED\n"
            "  frontend  3        2       1        1\n"
            "  worker    1        1       1        0\n"
            "\n"
            "  Placement failures:\n"
            "    frontend: 0 of 3 machines: 2 lacked memory, 1 is ineligible\n");
}

TEST(ClusterOutputTest, DeploymentRevertedNoneOrUnreadable) {
  json job = {
      {"deployment",
       {{"version", 5}, {"state", "failed"}, {"reverted_from", 4}, {"groups", json::object()}}}};
  EXPECT_EQ(Deployment(job),
            "Deployment:\n"
            "  Version:  5 (reverts version 4)\n"
            "  State:    failed\n"
            "  Stable:   none yet\n"
            "  Updated:  -\n");
  EXPECT_EQ(Deployment(json{{"name", "web"}}),
            "Deployment: none (the cluster engine has not rolled this job out yet)\n");
  EXPECT_EQ(Deployment(json{{"deployment_error", "corrupt record at x"}}),
            "Deployment: unreadable (corrupt record at x)\n");
}

TEST(ClusterOutputTest, HistoryMarksStableAndDeployingVersions) {
  json versions = json::parse(R"([
    {"version": 1, "status": "running", "instances": 1, "submitted_at": 0, "stable": false},
    {"version": 2, "status": "running", "instances": 3, "submitted_at": 0, "stable": true},
    {"version": 3, "status": "running", "instances": 2, "submitted_at": 0, "stable": false,
     "deployment": "failed"},
    {"version": 4, "status": "stopped", "instances": 2, "submitted_at": 0}])");
  std::ostringstream out;
  PrintJobHistory(versions, out);
  EXPECT_EQ(out.str(),
            "VERSION  STATUS   INSTANCES  SUBMITTED  DEPLOYMENT\n"
            "1        running  1          -          -\n"
            "2        running  3          -          stable\n"
            "3        running  2          -          failed\n"
            "4        stopped  2          -          -\n");
  versions = json::parse(R"([{"version": 1, "status": "running", "instances": 1,
                               "stable": true, "deployment": "successful"}])");
  out.str("");
  PrintJobHistory(versions, out);
  EXPECT_NE(out.str().find("successful, stable"), std::string::npos) << out.str();
}

TEST(ClusterOutputTest, MachineTable) {
  json machines = json::parse(R"([
    {"id": "m1", "address": "10.0.0.1:4680", "status": "ready", "cpus": 4,
     "memory_bytes": 8589934592, "meta": {"rack": "r1"}, "eligible": true, "drain": false,
     "allocations": 3, "leader": true},
    {"id": "m2", "address": "10.0.0.2:4680", "status": "ready", "cpus": 2,
     "memory_bytes": 1073741824, "eligible": false, "drain": true, "allocations": 0,
     "leader": false},
    {"id": "m3", "status": "down", "eligible": true, "drain": false, "allocations": 1,
     "leader": false}])");
  std::ostringstream out;
  PrintMachineTable(machines, out);
  EXPECT_EQ(out.str(),
            "ID   ADDRESS        STATUS  ELIGIBLE  DRAIN  ALLOCS  CPUS  MEMORY   META\n"
            "m1*  10.0.0.1:4680  ready   yes       no     3       4     8.0 GiB  rack=r1\n"
            "m2   10.0.0.2:4680  ready   no        yes    0       2     1.0 GiB  -\n"
            "m3   -              down    yes       no     1       -     -        -\n"
            "* the engine leader\n");
  out.str("");
  machines[0]["leader"] = false;
  PrintMachineTable(machines, out);
  EXPECT_EQ(out.str().find('*'), std::string::npos) << out.str();
}

}  // namespace
}  // namespace berth::cli
