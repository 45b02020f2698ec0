#include "cli/route_commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "cli/api_client.h"
#include "cli/output.h"
#include "router/hipache_import.h"

namespace berth::cli {

using nlohmann::json;

namespace {

// The same exit codes as every other command (docs/cli.md).
int Fail(const Status& st) {
  return ReportFailure(st);
}

std::string PathEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '*' || c == ':' ||
        c == '@' || c == '+') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string RouteTarget(const std::string& host, const std::string& id) {
  return "/v1/routes/" + PathEscape(host) + "/" + PathEscape(id);
}

std::string Source(const json& r) {
  return r.contains("alloc") && r["alloc"].is_string() ? r["alloc"].get<std::string>()
                                                       : std::string("manual");
}

struct Options {
  bool json = false;
  std::string host;
  std::string backend;
  std::string path = "/";
  std::string id;
  std::string redis_url;
  bool dry_run = false;
};

int RouteLs(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto res = c.CallJson("GET", "/v1/routes");
  if (!res.ok()) return Fail(res.status());
  if (o.json) {
    std::cout << res->dump(2) << "\n";
  } else if (!res->is_array() || res->empty()) {
    std::cout << "no routes\n";
  } else {
    PrintRouteTable(*res, std::cout);
  }
  return 0;
}

int RouteAdd(const ApiClientOptions& api, const Options& o) {
  std::string id = o.id.empty() ? DefaultRouteId(o.backend, o.path) : o.id;
  ApiClient c(api);
  auto res =
      c.CallJson("PUT", RouteTarget(o.host, id),
                 json{{"backend", o.backend}, {"path_prefix", o.path}}.dump(), "application/json");
  if (!res.ok()) return Fail(res.status());
  if (o.json) {
    std::cout << res->dump(2) << "\n";
    return 0;
  }
  std::cout << "route " << Str(*res, "host") << "/" << Str(*res, "id") << ": " << Str(*res, "host")
            << Str(*res, "path_prefix") << " -> " << Str(*res, "backend") << " added\n";
  return 0;
}

int RouteRm(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto res = c.CallJson("DELETE", RouteTarget(o.host, o.id));
  if (!res.ok()) return Fail(res.status());
  if (o.json) {
    std::cout << res->dump(2) << "\n";
    return 0;
  }
  std::cout << "route " << Str(*res, "host") << "/" << Str(*res, "id") << " removed\n";
  if (res->value("leased", false)) {
    std::cout << "note: an agent published it (allocation " << Source(*res)
              << "); it puts it back when it next writes its routes (a new machine lease, the "
                 "task turning healthy again): stop the job to take it out for good\n";
  }
  return 0;
}

// Reads hipache's frontends from Redis, then (unless a dry run) writes each route through the
// API and removes the hipache-<n> routes a shorter list no longer has.
int ImportHipache(const ApiClientOptions& api, const Options& o) {
  auto redis_addr = router::ParseRedisUrl(o.redis_url);
  if (!redis_addr.ok()) return Fail(redis_addr.status());
  auto redis = router::RedisClient::Connect(*redis_addr);
  if (!redis.ok()) return Fail(redis.status());
  auto frontends = router::ReadHipacheFrontends(**redis);
  if (!frontends.ok()) return Fail(frontends.status());
  router::ImportPlan plan = router::PlanHipacheImport(*frontends);

  auto describe = [](const router::ImportedRoute& r) {
    return r.host + "/" + r.id + " -> " + r.backend + " (" + r.frontend + ", \"" + r.identifier +
           "\")";
  };
  auto report_skipped = [&] {
    for (const auto& s : plan.skipped) {
      std::cout << "skipped " << s.frontend << (s.backend.empty() ? "" : " backend " + s.backend)
                << ": " << s.reason << "\n";
    }
  };
  if (o.dry_run) {
    for (const auto& r : plan.routes) std::cout << "would import " << describe(r) << "\n";
    report_skipped();
    std::cout << frontends->size() << " frontends: " << plan.routes.size() << " routes to import, "
              << plan.skipped.size() << " skipped (dry run: nothing "
              << "written)\n";
    return 0;
  }

  ApiClient c(api);
  // hipache-<n> routes already there, by host: those this import does not write again are stale.
  auto existing = c.CallJson("GET", "/v1/routes");
  if (!existing.ok()) return Fail(existing.status());
  std::map<std::string, std::set<std::string>> stale;
  std::set<std::string> hosts(plan.hosts.begin(), plan.hosts.end());
  for (const auto& r : *existing) {
    std::string host = Str(r, "host", "");
    std::string id = Str(r, "id", "");
    if (hosts.count(host) && id.rfind("hipache-", 0) == 0 && !r.value("leased", false)) {
      stale[host].insert(id);
    }
  }
  size_t written = 0;
  for (const auto& r : plan.routes) {
    auto res =
        c.CallJson("PUT", RouteTarget(r.host, r.id),
                   json{{"backend", r.backend}, {"path_prefix", "/"}}.dump(), "application/json");
    if (!res.ok()) {
      std::cout << written << " routes imported before the error\n";
      return Fail(res.status().Annotate("route " + r.host + "/" + r.id));
    }
    ++written;
    stale[r.host].erase(r.id);
    std::cout << "imported " << describe(r) << "\n";
  }
  size_t removed = 0;
  for (const auto& [host, ids] : stale) {
    for (const auto& id : ids) {
      auto res = c.CallJson("DELETE", RouteTarget(host, id));
      if (!res.ok() && res.status().code() != Code::kNotFound) {
        return Fail(res.status().Annotate("remove stale route " + host + "/" + id));
      }
      ++removed;
      std::cout << "removed " << host << "/" << id << " (no longer in hipache's list)\n";
    }
  }
  report_skipped();
  std::cout << frontends->size() << " frontends: " << written << " routes imported, "
            << plan.skipped.size() << " skipped, " << removed << " stale removed\n";
  return 0;
}

}  // namespace

std::string DefaultRouteId(const std::string& backend, const std::string& path_prefix) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (char c : backend + "\n" + path_prefix) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", static_cast<unsigned>(h >> 32));
  return std::string("manual-") + buf;
}

void PrintRouteTable(const json& routes, std::ostream& out) {
  Table t({"HOST", "PATH", "BACKEND", "SOURCE", "ID"});
  std::vector<std::string> invalid;
  for (const auto& r : routes) {
    t.Add({Str(r, "host"), Str(r, "path_prefix", "/"), Str(r, "backend"), Source(r), Str(r, "id")});
    if (r.contains("error")) {
      invalid.push_back(Str(r, "host") + "/" + Str(r, "id") + ": " + Str(r, "error"));
    }
  }
  t.Print(out);
  for (const auto& line : invalid) out << "skipped by the router: " << line << "\n";
}

void AddRouteCommands(CLI::App& app, const ApiClientOptions& api, int& rc) {
  auto opts = std::make_shared<Options>();
  Options& o = *opts;
  auto* route = app.add_subcommand("route", "the router's route table: list, add, remove, import");
  route->require_subcommand(1);

  auto* ls = route->add_subcommand("ls", "list routes (agents' and manual ones)");
  ls->add_flag("--json", o.json, "print JSON");
  ls->callback([opts, &api, &rc] { rc = RouteLs(api, *opts); });

  auto* add = route->add_subcommand(
      "add", "route a host (and path) to a backend berth does not run; it stays until removed");
  add->add_option("HOST", o.host, "app.example.com, *.example.com or *")->required();
  add->add_option("BACKEND", o.backend, "http://IP:PORT")->required();
  add->add_option("--path", o.path, "path prefix")->capture_default_str();
  add->add_option("--id", o.id, "route id (default manual-<hash of backend and path>)");
  add->add_flag("--json", o.json, "print JSON");
  add->callback([opts, &api, &rc] { rc = RouteAdd(api, *opts); });

  auto* rm = route->add_subcommand("rm", "remove a route (see route ls for ids)");
  rm->add_option("HOST", o.host)->required();
  rm->add_option("ID", o.id)->required();
  rm->add_flag("--json", o.json, "print JSON");
  rm->callback([opts, &api, &rc] { rc = RouteRm(api, *opts); });

  auto* imp = route->add_subcommand(
      "import-hipache", "import hipache's frontend:<host> lists from its Redis as routes");
  imp->add_option("REDIS", o.redis_url, "redis://[:PASSWORD@]HOST[:PORT][/DB]")->required();
  imp->add_flag("--dry-run", o.dry_run, "print what would be imported; write nothing");
  imp->callback([opts, &api, &rc] { rc = ImportHipache(api, *opts); });
}

}  // namespace berth::cli
