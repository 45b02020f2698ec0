#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "agent/agent.h"
#include "cli/acl_commands.h"
#include "cli/api_client.h"
#include "cli/cluster_output.h"
#include "cli/output.h"
#include "cli/route_commands.h"
#include "cli/secret_commands.h"
#include "common/version.h"
#include "router/router_cli.h"

namespace berth::cli {

using nlohmann::json;

namespace {

constexpr const char* kDefaultAddr = "127.0.0.1:4680";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int Fail(const Status& st) {
  return ReportFailure(st);
}

struct Globals {
  // --addr, --token, --cacert, --client-cert, --client-key (or BERTH_ADDR, BERTH_TOKEN, ...):
  // every command's ApiClient is made from these.
  ApiClientOptions api{.address = kDefaultAddr};
  bool json = false;
};

void PrintJson(const json& j) {
  std::cout << j.dump(2) << "\n";
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

Result<std::string> ReadFile(const std::string& path) {
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read job file " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int JobRun(const Globals& g, const std::string& file) {
  auto text = ReadFile(file);
  if (!text.ok()) return Fail(text.status());
  std::string name = file == "-" ? "stdin" : file;
  bool is_json = file.size() > 5 && file.substr(file.size() - 5) == ".json";
  ApiClient c(g.api);
  auto res =
      c.CallJson("POST", "/v1/jobs", *text, is_json ? "application/json" : "application/yaml",
                 {{"X-Berth-Filename", name}});
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
  } else if (res->value("changed", false)) {
    std::cout << "job " << Str(*res, "name") << ": version " << Str(*res, "version")
              << " submitted\n";
  } else {
    std::cout << "job " << Str(*res, "name") << ": unchanged (version " << Str(*res, "version")
              << ")\n";
  }
  return 0;
}

int JobLs(const Globals& g) {
  ApiClient c(g.api);
  auto res = c.CallJson("GET", "/v1/jobs");
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
    return 0;
  }
  if (res->empty()) {
    std::cout << "no jobs\n";
    return 0;
  }
  Table t({"NAME", "TYPE", "VERSION", "STATUS", "INSTANCES", "SUBMITTED"});
  for (const auto& j : *res) {
    t.Add({Str(j, "name"), Str(j, "type"), Str(j, "version"), Str(j, "status"), Str(j, "instances"),
           FormatTime(j, "submitted_at")});
  }
  t.Print(std::cout);
  return 0;
}

int JobStatus(const Globals& g, const std::string& name) {
  ApiClient c(g.api);
  auto res = c.CallJson("GET", "/v1/jobs/" + UrlEncode(name));
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
    return 0;
  }
  const json& j = *res;
  std::cout << "Name:       " << Str(j, "name") << "\n"
            << "Type:       " << Str(j, "type") << "\n"
            << "Version:    " << Str(j, "version") << "\n"
            << "Status:     " << Str(j, "status") << "\n"
            << "Submitted:  " << FormatTime(j, "submitted_at") << "\n\n";
  Table groups({"GROUP", "COUNT", "TASKS"});
  const json& spec = j.contains("spec") ? j["spec"] : json::object();
  if (spec.contains("groups") && spec["groups"].is_array()) {
    for (const auto& grp : spec["groups"]) {
      std::string tasks;
      if (grp.contains("tasks") && grp["tasks"].is_array()) {
        for (const auto& t : grp["tasks"]) {
          if (!tasks.empty()) tasks += ", ";
          tasks += Str(t, "name") + " (" + Str(t, "driver") + ")";
        }
      }
      groups.Add({Str(grp, "name"), Str(grp, "count", "1"), tasks});
    }
  }
  groups.Print(std::cout);
  if (spec.contains("groups") && spec["groups"].is_array()) {
    json tasks = json::array();
    for (const auto& grp : spec["groups"]) {
      if (!grp.contains("tasks") || !grp["tasks"].is_array()) continue;
      for (json t : grp["tasks"]) {
        t["name"] = Str(grp, "name") + "/" + Str(t, "name");
        tasks.push_back(std::move(t));
      }
    }
    PrintSecretRefs(tasks, std::cout);
  }
  std::cout << "\n";
  PrintDeployment(j, std::cout);
  const json& allocs = j.contains("allocations") ? j["allocations"] : json::array();
  std::cout << "\nAllocations:\n";
  if (!allocs.is_array() || allocs.empty()) {
    std::cout << "  none\n";
  } else {
    PrintAllocTable(allocs, NowMs(), /*with_job=*/false, std::cout);
  }
  return 0;
}

int JobStop(const Globals& g, const std::string& name, bool purge) {
  ApiClient c(g.api);
  auto res = c.CallJson("DELETE", "/v1/jobs/" + UrlEncode(name) + (purge ? "?purge=true" : ""));
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
  } else if (purge) {
    std::cout << "job " << name << ": purged\n";
  } else {
    std::cout << "job " << name << ": stopped (version " << Str(*res, "version") << ")\n";
  }
  return 0;
}

int JobHistory(const Globals& g, const std::string& name) {
  ApiClient c(g.api);
  auto res = c.CallJson("GET", "/v1/jobs/" + UrlEncode(name) + "/versions");
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
    return 0;
  }
  PrintJobHistory(*res, std::cout);
  return 0;
}

int JobRevert(const Globals& g, const std::string& name, int64_t version) {
  ApiClient c(g.api);
  auto res = c.CallJson("POST", "/v1/jobs/" + UrlEncode(name) + "/revert",
                        json{{"version", version}}.dump(), "application/json");
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
  } else if (res->value("changed", false)) {
    std::cout << "job " << name << ": version " << Str(*res, "version")
              << " submitted (the spec of version " << version << ")\n";
  } else {
    std::cout << "job " << name << ": unchanged (version " << Str(*res, "version")
              << " already runs the spec of version " << version << ")\n";
  }
  return 0;
}

int MachineLs(const Globals& g) {
  ApiClient c(g.api);
  auto res = c.CallJson("GET", "/v1/machines");
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
    return 0;
  }
  if (res->empty()) {
    std::cout << "no machines\n";
    return 0;
  }
  PrintMachineTable(*res, std::cout);
  return 0;
}

// PUT /v1/machines/<id>/<setting> with `body`; prints `done` (or the JSON).
int MachineAdmin(const Globals& g, const std::string& id, const std::string& setting,
                 const json& body, const std::string& done) {
  ApiClient c(g.api);
  auto res = c.CallJson("PUT", "/v1/machines/" + UrlEncode(id) + "/" + setting, body.dump(),
                        "application/json");
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
  } else {
    std::cout << "machine " << id << ": " << done << "\n";
  }
  return 0;
}

int Events(const Globals& g, const std::string& index, const std::string& topic) {
  ApiClient c(g.api);
  std::string target = "/v1/events";
  std::string sep = "?";
  if (!index.empty()) {
    target += sep + "index=" + UrlEncode(index);
    sep = "&";
  }
  if (!topic.empty()) target += sep + "topic=" + UrlEncode(topic);
  Status st = c.Stream(target, [](std::string_view data) {
    std::cout << data << std::flush;
    return true;
  });
  if (!st.ok()) return Fail(st);
  return 0;
}

int AllocLs(const Globals& g, const std::string& job) {
  ApiClient c(g.api);
  auto res = c.CallJson("GET", "/v1/allocs" + (job.empty() ? "" : "?job=" + UrlEncode(job)));
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
    return 0;
  }
  if (!res->is_array() || res->empty()) {
    std::cout << (job.empty() ? "no allocations\n" : "no allocations of job " + job + "\n");
    return 0;
  }
  PrintAllocTable(*res, NowMs(), /*with_job=*/true, std::cout);
  return 0;
}

int AllocStatusCmd(const Globals& g, const std::string& id) {
  ApiClient c(g.api);
  auto res = c.CallJson("GET", "/v1/allocs/" + UrlEncode(id));
  if (!res.ok()) return Fail(res.status());
  if (g.json) {
    PrintJson(*res);
    return 0;
  }
  PrintAllocStatus(*res, NowMs(), std::cout);
  if (res->contains("tasks")) PrintSecretRefs((*res)["tasks"], std::cout);
  return 0;
}

struct LogsOptions {
  std::string task;
  bool follow = false;
  int64_t tail = -1;  // all
};

int Logs(const Globals& g, const std::string& alloc, const LogsOptions& o) {
  std::string target = "/v1/allocs/" + UrlEncode(alloc) + "/logs";
  std::string sep = "?";
  auto add = [&](const std::string& k, const std::string& v) {
    target += sep + k + "=" + UrlEncode(v);
    sep = "&";
  };
  if (!o.task.empty()) add("task", o.task);
  if (o.follow) add("follow", "1");
  if (o.tail >= 0) add("tail", std::to_string(o.tail));
  // No read timeout: a followed log may stay quiet for as long as it likes. A redirect to the
  // agent of the allocation's machine is followed once.
  ApiClient c(g.api);
  Status st = c.Stream(target, [](std::string_view data) {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    return static_cast<bool>(std::cout);
  });
  if (!st.ok()) return Fail(st);
  return 0;
}

int VersionCmd(const Globals& g, bool json_out) {
  json out = {{"client", Version()}};
  ApiClientOptions probe = g.api;
  probe.timeout = std::chrono::milliseconds(1500);
  ApiClient c(probe);
  auto res = c.CallJson("GET", "/v1/version");
  if (res.ok()) out["agent"] = Str(*res, "version");
  if (json_out) {
    PrintJson(out);
  } else {
    std::cout << "berth " << Version() << "\n";
    if (res.ok())
      std::cout << "agent at " << g.api.address << ": berth " << Str(*res, "version") << "\n";
  }
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"berth: one binary for a container cluster (store, scheduler, router, secrets)",
               "berth"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("berth ") + Version());
  Globals g;
  auto env = [](const char* name, std::string& into) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') into = v;
  };
  env("BERTH_ADDR", g.api.address);
  env("BERTH_TOKEN", g.api.token);
  env("BERTH_CACERT", g.api.ca_file);
  env("BERTH_CLIENT_CERT", g.api.client_cert_file);
  env("BERTH_CLIENT_KEY", g.api.client_key_file);
  app.add_option("--addr", g.api.address,
                 "agent API address HOST:PORT or https://HOST:PORT (env BERTH_ADDR)")
      ->capture_default_str();
  app.add_option("--token", g.api.token,
                 "API token ACCESSOR.SECRET (env BERTH_TOKEN; prefer the variable: a flag shows "
                 "in ps)");
  app.add_option("--cacert", g.api.ca_file,
                 "PEM CA bundle to verify an https:// agent (env BERTH_CACERT; default the "
                 "system's)");
  app.add_option("--client-cert", g.api.client_cert_file,
                 "PEM client certificate for agents that require one (env BERTH_CLIENT_CERT)");
  app.add_option("--client-key", g.api.client_key_file, "its private key (env BERTH_CLIENT_KEY)");
  int rc = 0;

  // berth agent
  agent::AgentOptions ao;
  std::vector<std::string> meta;
  int machine_ttl = 3;
  int engine_ttl = 3;
  auto* agent_cmd = app.add_subcommand("agent", "run the berth agent on this machine");
  agent_cmd->add_flag("--dev", ao.dev,
                      "embedded store, everything in one process, loopback only, no auth "
                      "(unless --acl)");
  agent_cmd->add_flag("--acl", ao.acl,
                      "with --dev: require API tokens too (always on without --dev)");
  agent_cmd
      ->add_option("--acl-max-failures", ao.acl_max_failures,
                   "failed authentications from one address within 10 s before it gets "
                   "429 (0: no limit)")
      ->capture_default_str();
  agent_cmd->add_option("--api-cert", ao.api_tls.cert_file,
                        "serve the API over TLS only, with this PEM certificate chain");
  agent_cmd->add_option("--api-key", ao.api_tls.key_file, "the API certificate's private key");
  agent_cmd->add_option("--api-client-ca", ao.api_tls.client_ca_file,
                        "require API clients to present a certificate signed by this PEM CA");
  agent_cmd->add_option("--store", ao.store_url,
                        "etcd://HOST:PORT[,HOST:PORT...] | embedded:DIR (default: embedded in "
                        "the data dir)");
  agent_cmd->add_option("--store-cacert", ao.store_tls.ca_file, "CA bundle for etcd TLS");
  agent_cmd->add_option("--store-cert", ao.store_tls.cert_file, "client certificate for etcd");
  agent_cmd->add_option("--store-key", ao.store_tls.key_file, "client key for etcd");
  agent_cmd->add_option("--data-dir", ao.data_dir,
                        "state directory (default /var/lib/berth; "
                        ".berth-dev with --dev)");
  agent_cmd->add_option("--api", ao.api_address, "API listen address ADDR:PORT")
      ->capture_default_str();
  agent_cmd->add_option("--machine-id", ao.machine_id, "this machine's id");
  agent_cmd->add_option("--meta", meta, "machine metadata key=value (repeatable)");
  agent_cmd->add_option("--machine-ttl", machine_ttl, "machine lease TTL in seconds")
      ->capture_default_str();
  agent_cmd
      ->add_option("--engine-ttl", engine_ttl,
                   "engine leader lease TTL in seconds (a dead leader is replaced within it)")
      ->capture_default_str();
  agent_cmd->add_option("--prefix", ao.key_prefix, "key prefix in the store")
      ->capture_default_str();
  std::string port_range = "20000-32000";
  agent_cmd->add_option("--publish-ip", ao.publish_ip,
                        "address tasks' host ports bind to (default 127.0.0.1 with --dev, "
                        "else 0.0.0.0)");
  agent_cmd->add_option("--port-range", port_range, "dynamic host ports LOW-HIGH")
      ->capture_default_str();
  agent_cmd->add_option("--docker-host", ao.docker_host,
                        "Docker Engine socket unix:///PATH (default $DOCKER_HOST, else "
                        "unix:///var/run/docker.sock)");
  agent_cmd->add_option("--router", ao.router_listen,
                        "also run the HTTP router on ADDR:PORT (routes from the store)");
  agent_cmd->add_option("--router-threads", ao.router_threads,
                        "router worker threads (default one per core)");
  agent_cmd->add_option("--secrets-dir", ao.secrets_dir,
                        "where task secret files go, on tmpfs (default "
                        "/run/berth/<machine-id>/secrets; a tmpfs is mounted there if needed)");
  agent_cmd->add_option("--secret-writers", ao.secret_writers_file,
                        "open only secrets signed by a key listed in FILE (one public key a line; "
                        "default: the writers registered in the store)");
  int task_poll_ms = 1000;
  agent_cmd->add_option("--task-poll-ms", task_poll_ms, "how often tasks are inspected (ms)")
      ->capture_default_str();
  agent_cmd->callback([&] {
    {
      int lo = 0;
      int hi = 0;
      char tail = 0;
      if (std::sscanf(port_range.c_str(), "%d-%d%c", &lo, &hi, &tail) != 2) {
        throw CLI::ValidationError("--port-range", "expected LOW-HIGH, got \"" + port_range + "\"");
      }
      ao.port_first = lo;
      ao.port_last = hi;
    }
    if (task_poll_ms < 10) throw CLI::ValidationError("--task-poll-ms", "at least 10");
    ao.task_poll_interval = std::chrono::milliseconds(task_poll_ms);
    for (const auto& kv : meta) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw CLI::ValidationError("--meta", "expected key=value, got \"" + kv + "\"");
      }
      ao.meta[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    if (machine_ttl < 2) throw CLI::ValidationError("--machine-ttl", "at least 2 seconds");
    if (engine_ttl < 2) throw CLI::ValidationError("--engine-ttl", "at least 2 seconds");
    ao.machine_ttl = std::chrono::seconds(machine_ttl);
    ao.engine_ttl = std::chrono::seconds(engine_ttl);
    rc = agent::RunAgent(ao, Version());
  });

  // berth job ...
  auto* job = app.add_subcommand("job", "submit, list, inspect and stop jobs");
  job->require_subcommand(1);
  auto add_json = [&](CLI::App* cmd) { cmd->add_flag("--json", g.json, "print JSON"); };
  std::string file;
  auto* run = job->add_subcommand("run", "submit a job file (YAML, or JSON by .json)");
  run->add_option("FILE", file, "job file, or - for stdin")->required();
  add_json(run);
  run->callback([&] { rc = JobRun(g, file); });
  auto* ls = job->add_subcommand("ls", "list jobs");
  add_json(ls);
  ls->callback([&] { rc = JobLs(g); });
  std::string name;
  auto* status = job->add_subcommand("status", "show a job and its allocations");
  status->add_option("NAME", name)->required();
  add_json(status);
  status->callback([&] { rc = JobStatus(g, name); });
  bool purge = false;
  auto* stop = job->add_subcommand("stop", "stop a job (--purge: delete it and its history)");
  stop->add_option("NAME", name)->required();
  stop->add_flag("--purge", purge, "delete the job and its history");
  add_json(stop);
  stop->callback([&] { rc = JobStop(g, name, purge); });
  auto* history = job->add_subcommand("history", "list a job's versions");
  history->add_option("NAME", name)->required();
  add_json(history);
  history->callback([&] { rc = JobHistory(g, name); });
  int64_t revert_version = 0;
  auto* revert =
      job->add_subcommand("revert", "submit an earlier version's spec again, as a new version");
  revert->add_option("NAME", name)->required();
  revert->add_option("VERSION", revert_version, "the version to go back to (see job history)")
      ->required()
      ->check(CLI::PositiveNumber);
  add_json(revert);
  revert->callback([&] { rc = JobRevert(g, name, revert_version); });

  // berth machine ...
  auto* machine = app.add_subcommand("machine", "machines in the cluster");
  machine->require_subcommand(1);
  auto* mls = machine->add_subcommand("ls", "list machines");
  add_json(mls);
  mls->callback([&] { rc = MachineLs(g); });
  std::string machine_id;
  bool cancel = false;
  auto* drain = machine->add_subcommand(
      "drain", "move a machine's allocations elsewhere and give it no new ones (--cancel: stop)");
  drain->add_option("ID", machine_id, "machine id")->required();
  drain->add_flag("--cancel", cancel, "stop draining (the machine takes new allocations again)");
  add_json(drain);
  drain->callback([&] {
    rc = MachineAdmin(g, machine_id, "drain", {{"enable", !cancel}},
                      cancel ? "no longer draining"
                             : "draining (no new allocations; its allocations move elsewhere)");
  });
  auto* eligible =
      machine->add_subcommand("eligible", "let a machine take new allocations (also ends a drain)");
  eligible->add_option("ID", machine_id, "machine id")->required();
  add_json(eligible);
  eligible->callback([&] {
    rc = MachineAdmin(g, machine_id, "eligibility", {{"eligible", true}, {"drain", false}},
                      "eligible (takes new allocations)");
  });
  auto* ineligible = machine->add_subcommand(
      "ineligible", "give a machine no new allocations (what it runs stays)");
  ineligible->add_option("ID", machine_id, "machine id")->required();
  add_json(ineligible);
  ineligible->callback([&] {
    rc = MachineAdmin(g, machine_id, "eligibility", {{"eligible", false}},
                      "ineligible (no new allocations; what it runs stays)");
  });

  // berth alloc ...
  auto* alloc = app.add_subcommand("alloc", "allocations: a job's task groups placed on machines");
  alloc->require_subcommand(1);
  std::string alloc_job;
  auto* als = alloc->add_subcommand("ls", "list allocations");
  als->add_option("--job", alloc_job, "only this job's allocations");
  add_json(als);
  als->callback([&] { rc = AllocLs(g, alloc_job); });
  std::string alloc_id;
  auto* astatus = alloc->add_subcommand("status", "show an allocation: tasks and recent events");
  astatus->add_option("ID", alloc_id, "allocation id, or a unique prefix of one")->required();
  add_json(astatus);
  astatus->callback([&] { rc = AllocStatusCmd(g, alloc_id); });

  // berth logs
  LogsOptions logs_opts;
  auto* logs = app.add_subcommand("logs", "print a task's output (stdout and stderr)");
  logs->add_option("ALLOC", alloc_id, "allocation id, or a unique prefix of one")->required();
  logs->add_option("--task", logs_opts.task, "the task (needed when the group has several)");
  logs->add_flag("-f,--follow", logs_opts.follow, "keep printing output as it comes");
  logs->add_option("--tail", logs_opts.tail, "only the last N lines")
      ->check(CLI::NonNegativeNumber);
  logs->callback([&] { rc = Logs(g, alloc_id, logs_opts); });

  // berth events
  std::string index;
  std::string topic;
  auto* events = app.add_subcommand("events", "stream cluster changes (one JSON per line)");
  events->add_option("--index", index, "start at this store revision");
  events->add_option("--topic", topic, "only this topic: jobs, machines, ...");
  events->callback([&] { rc = Events(g, index, topic); });

  // berth version
  bool version_json = false;
  // berth router
  router::AddRouterCommand(app, rc);
  // berth route ls|add|rm|import-hipache
  AddRouteCommands(app, g.api, rc);
  // berth acl bootstrap|token ...
  AddAclCommands(app, g.api, rc);
  AddSecretCommands(app, g.api, rc);

  auto* version = app.add_subcommand("version", "print the version");
  version->add_flag("--json", version_json, "print JSON");
  version->callback([&] { rc = VersionCmd(g, version_json); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "berth: " << e.what() << " (see berth --help)\n";
    return 2;
  }
  return rc;
}

}  // namespace berth::cli
