// `berth route ...`: the route table through the agent's API (GET/PUT/DELETE /v1/routes), and
// `route import-hipache`, which reads hipache's Redis (router/hipache_import.h) and writes each
// route through the API: the CLI never talks to the store. cli.cc adds them with one line:
//   AddRouteCommands(app, g.api, rc);
// Thread-safety: called once, from main, while building the command line.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "cli/api_client.h"

namespace CLI {
class App;
}

namespace berth::cli {

// Adds `route ls|add|rm|import-hipache` to `app`. `api` (address, token, TLS files) is read
// when a command runs (after parsing); the exit code is left in `rc`.
void AddRouteCommands(CLI::App& app, const ApiClientOptions& api, int& rc);

// The id `route add` gives a route without --id: "manual-" and 8 hex digits of a hash of the
// backend and path prefix, so adding the same route twice replaces it.
std::string DefaultRouteId(const std::string& backend, const std::string& path_prefix);

// The table `route ls` prints: HOST PATH BACKEND SOURCE ID (SOURCE is the publishing
// allocation, or "manual"), then a line for each route the router skips, saying why.
void PrintRouteTable(const nlohmann::json& routes, std::ostream& out);

}  // namespace berth::cli
