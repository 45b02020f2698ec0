// `berth acl ...`: API tokens through the agent's API (/v1/acl/...).
//   berth acl bootstrap                         the first admin token, printed once
//   berth acl token create --name N --policy read|jobs|secrets|admin [--job-prefix P]
//   berth acl token ls | revoke ACCESSOR | self
// A token's secret is printed once, alone on stdout (so `TOKEN=$(berth acl bootstrap)` works),
// with what it is on stderr; --json prints the whole answer instead. cli.cc adds them with one
// line: AddAclCommands(app, g.api, rc);
// Thread-safety: called once, from main, while building the command line.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>

#include "cli/api_client.h"

namespace CLI {
class App;
}

namespace berth::cli {

// Adds `acl bootstrap` and `acl token create|ls|revoke|self` to `app`. `api` is read when a
// command runs (after parsing); the exit code is left in `rc`.
void AddAclCommands(CLI::App& app, const ApiClientOptions& api, int& rc);

// The table `acl token ls` prints: ACCESSOR NAME POLICY JOB_PREFIX CREATED.
void PrintTokenTable(const nlohmann::json& tokens, std::ostream& out);

}  // namespace berth::cli
