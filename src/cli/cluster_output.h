// What the CLI prints for the cluster's state: a job's deployment (the engine's rollout of its
// current version, and why instances could not be placed), a job's version history with the
// stable version marked, and the machine table with each machine's admin settings. Like
// output.h, everything takes the API's JSON as it comes and tolerates missing fields.
// Thread-safety: plain functions.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>

namespace berth::cli {

// The "Deployment:" section of `berth job status`, from GET /v1/jobs/<name>: the deployment
// record's version, state, message and stable version, a table of its groups (desired, placed,
// healthy, unplaced) and each group's placement-failure explanation. Says so when the job has
// no deployment (the engine has not rolled it out yet) or its record is unreadable.
void PrintDeployment(const nlohmann::json& job, std::ostream& out);

// `berth job history`: VERSION, STATUS, INSTANCES, SUBMITTED, DEPLOYMENT (the state of the
// version being rolled out, "stable" for the newest version that rolled out successfully).
void PrintJobHistory(const nlohmann::json& versions, std::ostream& out);

// `berth machine ls`: ID (the engine leader marked '*'), ADDRESS, STATUS, ELIGIBLE, DRAIN,
// ALLOCS, CPUS, MEMORY, META, and a legend line for the mark when a machine leads.
void PrintMachineTable(const nlohmann::json& machines, std::ostream& out);

}  // namespace berth::cli
