#include "api/acl_api.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "api/request_body.h"

namespace berth::api {

using nlohmann::json;

namespace {

// A response that carries a token's secret: no cache may keep it.
HttpResponse SecretJson(const json& body, int status) {
  HttpResponse r = Json(body, status);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

json NewTokenJson(const acl::NewToken& t) {
  json j = t.record.ToJson(/*with_hash=*/false);
  j["token"] = t.token;
  return j;
}

HttpResponse Bootstrap(acl::AccessControl& access, const HttpRequest& req) {
  auto t = access.tokens().Bootstrap();
  if (!t.ok()) return ErrorResponse(t.status());
  spdlog::warn("acl: bootstrapped from {}: admin token {} made", req.remote, t->record.accessor);
  return SecretJson(NewTokenJson(*t), 201);
}

HttpResponse ListTokens(acl::AccessControl& access) {
  auto list = access.tokens().List();
  if (!list.ok()) return ErrorResponse(list.status());
  json out = json::array();
  for (const auto& r : *list) out.push_back(r.ToJson(/*with_hash=*/false));
  return Json(out);
}

HttpResponse CreateToken(acl::AccessControl& access, const HttpRequest& req) {
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return ErrorResponse(InvalidArgument(
        "request body: expected a JSON object {\"name\": N, \"policy\": P[, \"job_prefix\": X]}"));
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "name" && key != "policy" && key != "job_prefix") {
      return ErrorResponse(InvalidArgument(fmt::format(
          "request body: unknown field \"{}\" (expected name, policy, job_prefix)", key)));
    }
    if (!value.is_string()) {
      return ErrorResponse(
          InvalidArgument(fmt::format("request body: \"{}\" must be a string", key)));
    }
  }
  if (!body.contains("name") || !body.contains("policy")) {
    return ErrorResponse(InvalidArgument(
        "request body: \"name\" and \"policy\" (read, jobs, secrets or admin) are required"));
  }
  auto policy = acl::ParsePolicy(body["policy"].get<std::string>());
  if (!policy.ok()) return ErrorResponse(policy.status());
  auto t = access.tokens().Create(body["name"].get<std::string>(), *policy,
                                  body.value("job_prefix", std::string()));
  if (!t.ok()) return ErrorResponse(t.status());
  spdlog::info("acl: {} made token {} (\"{}\", policy {})", req.caller.Describe(),
               t->record.accessor, t->record.name, acl::PolicyName(t->record.policy));
  return SecretJson(NewTokenJson(*t), 201);
}

HttpResponse RevokeToken(acl::AccessControl& access, const HttpRequest& req) {
  const std::string& accessor = req.params.at("accessor");
  bool hex = accessor.size() == acl::kAccessorHexChars;
  for (char c : accessor) hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!hex) {
    return ErrorResponse(InvalidArgument(
        fmt::format("accessor \"{}\": expected {} lower-case hex digits (see berth acl token ls)",
                    accessor, acl::kAccessorHexChars)));
  }
  auto rec = access.tokens().Revoke(accessor);
  if (!rec.ok()) return ErrorResponse(rec.status());
  spdlog::info("acl: {} revoked token {} (\"{}\")", req.caller.Describe(), rec->accessor,
               rec->name);
  json j = rec->ToJson(/*with_hash=*/false);
  j["revoked"] = true;
  return Json(j);
}

HttpResponse Self(const HttpRequest& req) {
  const acl::Caller& c = req.caller;
  return Json({{"accessor", c.accessor},
               {"name", c.name},
               {"policy", std::string(acl::PolicyName(c.policy))},
               {"job_prefix", c.job_prefix},
               {"anonymous", c.anonymous}});
}

}  // namespace

HttpServer::Authorizer MakeAuthorizer(acl::AccessControlPtr access) {
  return
      [access](HttpRequest& req, const acl::Permission& permission) -> std::optional<HttpResponse> {
        std::string job;
        if (!permission.job_param.empty()) {
          auto it = req.params.find(permission.job_param);
          if (it != req.params.end()) job = it->second;
        }
        acl::Verdict v = access->Check(req.Header("authorization"), req.remote, permission, job,
                                       req.method + " " + req.path);
        if (v.allowed()) {
          req.caller = std::move(v.caller);
          return std::nullopt;
        }
        if (v.rate_limited) {
          HttpResponse r = ErrorResponse(429, v.status.message());
          r.body = json{{"error", v.status.message()}, {"code", "rate limited"}}.dump();
          r.headers.emplace_back("Retry-After", std::to_string(v.retry_after.count()));
          return r;
        }
        HttpResponse r = ErrorResponse(v.status);
        if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"berth\"");
        return r;
      };
}

void RegisterAclRoutes(HttpServer& server, acl::AccessControlPtr access) {
  using acl::Permission;
  server.Route("POST", "/v1/acl/bootstrap", Permission::Public(),
               [access](const HttpRequest& r) { return Bootstrap(*access, r); });
  server.Route("GET", "/v1/acl/tokens", Permission::Admin(),
               [access](const HttpRequest&) { return ListTokens(*access); });
  server.Route("POST", "/v1/acl/tokens", Permission::Admin(),
               [access](const HttpRequest& r) { return CreateToken(*access, r); });
  server.Route("DELETE", "/v1/acl/tokens/:accessor", Permission::Admin(),
               [access](const HttpRequest& r) { return RevokeToken(*access, r); });
  server.Route("GET", "/v1/acl/token/self", Permission::AnyToken(),
               [](const HttpRequest& r) { return Self(r); });
}

}  // namespace berth::api
