#include "cli/acl_commands.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <iostream>
#include <memory>

#include "cli/output.h"

namespace berth::cli {

using nlohmann::json;

namespace {

struct Options {
  bool json = false;
  std::string name;
  std::string policy;
  std::string job_prefix;
  std::string accessor;
};

void PrintJson(const json& j) {
  std::cout << j.dump(2) << "\n";
}

// The secret alone on stdout; what it is on stderr.
void PrintNewToken(const json& t, const std::string& what) {
  std::cerr << what << " (accessor " << Str(t, "accessor") << ", policy " << Str(t, "policy")
            << (Str(t, "job_prefix", "").empty() ? "" : ", jobs " + Str(t, "job_prefix") + "*")
            << "). It is shown only now: keep it (e.g. export BERTH_TOKEN=...).\n";
  std::cout << Str(t, "token") << "\n";
}

int Bootstrap(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto res = c.CallJson("POST", "/v1/acl/bootstrap");
  if (!res.ok()) return ReportFailure(res.status());
  if (o.json) {
    PrintJson(*res);
  } else {
    PrintNewToken(*res, "ACL bootstrapped: the first admin token");
  }
  return 0;
}

int Create(const ApiClientOptions& api, const Options& o) {
  json body = {{"name", o.name}, {"policy", o.policy}};
  if (!o.job_prefix.empty()) body["job_prefix"] = o.job_prefix;
  ApiClient c(api);
  auto res = c.CallJson("POST", "/v1/acl/tokens", body.dump(), "application/json");
  if (!res.ok()) return ReportFailure(res.status());
  if (o.json) {
    PrintJson(*res);
  } else {
    PrintNewToken(*res, "token \"" + Str(*res, "name") + "\" created");
  }
  return 0;
}

int List(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto res = c.CallJson("GET", "/v1/acl/tokens");
  if (!res.ok()) return ReportFailure(res.status());
  if (o.json) {
    PrintJson(*res);
  } else if (!res->is_array() || res->empty()) {
    std::cout << "no tokens\n";
  } else {
    PrintTokenTable(*res, std::cout);
  }
  return 0;
}

int Revoke(const ApiClientOptions& api, const Options& o) {
  for (unsigned char ch : o.accessor) {
    if (!std::isalnum(ch)) {
      return ReportFailure(InvalidArgument("accessor \"" + o.accessor +
                                           "\": expected 16 hex digits (see berth acl token ls)"));
    }
  }
  ApiClient c(api);
  auto res = c.CallJson("DELETE", "/v1/acl/tokens/" + o.accessor);
  if (!res.ok()) return ReportFailure(res.status());
  if (o.json) {
    PrintJson(*res);
  } else {
    std::cout << "token " << Str(*res, "accessor") << " (\"" << Str(*res, "name")
              << "\") revoked\n";
  }
  return 0;
}

int Self(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto res = c.CallJson("GET", "/v1/acl/token/self");
  if (!res.ok()) return ReportFailure(res.status());
  if (o.json) {
    PrintJson(*res);
    return 0;
  }
  if (res->value("anonymous", false)) {
    std::cout << "no token needed: the agent runs in dev mode without --acl (policy admin)\n";
    return 0;
  }
  std::cout << "Accessor:    " << Str(*res, "accessor") << "\n"
            << "Name:        " << Str(*res, "name") << "\n"
            << "Policy:      " << Str(*res, "policy") << "\n";
  if (!Str(*res, "job_prefix", "").empty()) {
    std::cout << "Job prefix:  " << Str(*res, "job_prefix") << "\n";
  }
  return 0;
}

}  // namespace

void PrintTokenTable(const json& tokens, std::ostream& out) {
  Table t({"ACCESSOR", "NAME", "POLICY", "JOB_PREFIX", "CREATED"});
  for (const auto& tok : tokens) {
    std::string prefix = Str(tok, "job_prefix", "");
    t.Add({Str(tok, "accessor"), Str(tok, "name"), Str(tok, "policy"),
           prefix.empty() ? "-" : prefix, FormatTime(tok, "created_at_ms")});
  }
  t.Print(out);
}

void AddAclCommands(CLI::App& app, const ApiClientOptions& api, int& rc) {
  auto opts = std::make_shared<Options>();
  auto* acl = app.add_subcommand("acl", "API access: bootstrap, tokens and their policies");
  acl->require_subcommand(1);

  auto* boot = acl->add_subcommand(
      "bootstrap", "make the first admin token (once; prints it, and only this once)");
  boot->add_flag("--json", opts->json, "print JSON");
  boot->callback([opts, &api, &rc] { rc = Bootstrap(api, *opts); });

  auto* token = acl->add_subcommand("token", "make, list and revoke tokens");
  token->require_subcommand(1);
  auto* create = token->add_subcommand("create", "make a token (prints its secret once)");
  create->add_option("--name", opts->name, "what the token is for (e.g. ci, alice)")->required();
  create->add_option("--policy", opts->policy, "read | jobs | secrets | admin")
      ->required()
      ->check(CLI::IsMember({"read", "jobs", "secrets", "admin"}));
  create->add_option("--job-prefix", opts->job_prefix,
                     "with --policy jobs: only jobs whose name starts with this");
  create->add_flag("--json", opts->json, "print JSON");
  create->callback([opts, &api, &rc] { rc = Create(api, *opts); });

  auto* ls = token->add_subcommand("ls", "list tokens (accessors, names, policies; no secrets)");
  ls->add_flag("--json", opts->json, "print JSON");
  ls->callback([opts, &api, &rc] { rc = List(api, *opts); });

  auto* revoke = token->add_subcommand("revoke", "revoke a token: it stops working at once");
  revoke->add_option("ACCESSOR", opts->accessor, "the token's accessor (see acl token ls)")
      ->required();
  revoke->add_flag("--json", opts->json, "print JSON");
  revoke->callback([opts, &api, &rc] { rc = Revoke(api, *opts); });

  auto* self = token->add_subcommand("self", "show the token in use (--token or BERTH_TOKEN)");
  self->add_flag("--json", opts->json, "print JSON");
  self->callback([opts, &api, &rc] { rc = Self(api, *opts); });
}

}  // namespace berth::cli
