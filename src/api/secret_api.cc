#include "api/secret_api.h"

#include <spdlog/spdlog.h>

#include <map>

#include "api/request_body.h"
#include "secrets/secret_store.h"

namespace berth::api {

using nlohmann::json;

namespace {

secrets::SecretStore Secrets(const ApiContext& ctx) {
  return secrets::SecretStore(*ctx.store, ctx.keys, ctx.clock);
}

// Names for keys: a recipient's name by its encryption key and by its signing key, so a
// listing can say who wrote a value and to whom it is sealed.
struct KeyNames {
  std::map<secrets::BoxPublic, std::string> by_box;
  std::map<secrets::SignPublic, std::string> by_sign;
};

KeyNames Names(const std::vector<secrets::Recipient>& recipients) {
  KeyNames n;
  for (const auto& r : recipients) {
    n.by_box[r.key.box] = r.key.name;
    n.by_sign[r.key.sign] = r.key.name;
  }
  return n;
}

template <typename Map, typename Key>
std::string NameOr(const Map& m, const Key& k) {
  auto it = m.find(k);
  if (it != m.end()) return it->second;
  std::string_view raw(reinterpret_cast<const char*>(k.data()), 6);
  return "unknown key " + secrets::Base64Encode(raw);
}

// What a listing says of one value: never the sealed bytes, only what the header tells.
json Describe(const secrets::StoredSecret& s, const KeyNames& names) {
  json j = {{"path", s.path}, {"version", s.version}, {"modify_index", s.mod_revision}};
  auto bytes = secrets::Base64Decode(s.sealed);
  auto parsed =
      bytes.ok() ? secrets::ParseSealed(*bytes) : Result<secrets::SealedValue>(bytes.status());
  if (!parsed.ok()) {
    j["error"] = parsed.status().message();
    return j;
  }
  j["size"] = parsed->plaintext_size();
  j["writer"] = NameOr(names.by_sign, parsed->writer);
  json to = json::array();
  for (const auto& r : parsed->recipients) to.push_back(NameOr(names.by_box, r.box));
  j["recipients"] = to;
  if (parsed->path != s.path || parsed->version != s.version) {
    j["error"] = "sealed for " + parsed->path + " version " + std::to_string(parsed->version) +
                 ": it will not open here";
  }
  return j;
}

HttpResponse ListSecrets(const ApiContext& ctx, const HttpRequest& req) {
  auto s = Secrets(ctx);
  std::string prefix = req.Query("prefix");
  auto list = s.List(prefix);
  if (!list.ok()) return ErrorResponse(list.status());
  auto recipients = s.Recipients();
  if (!recipients.ok()) return ErrorResponse(recipients.status());
  KeyNames names = Names(*recipients);
  json out = json::array();
  for (const auto& v : *list) out.push_back(Describe(v, names));
  return Json(out);
}

HttpResponse GetSecret(const ApiContext& ctx, const HttpRequest& req) {
  auto got = Secrets(ctx).Get(req.params.at("path"));
  if (!got.ok()) return ErrorResponse(got.status());
  return Json({{"path", got->path},
               {"version", got->version},
               {"modify_index", got->mod_revision},
               {"sealed", got->sealed}});
}

HttpResponse PutSecret(const ApiContext& ctx, const HttpRequest& req) {
  auto body = BodyObject(req, {"sealed"});
  if (!body.ok()) return ErrorResponse(body.status());
  std::string sealed;
  if (Status st = BodyString(*body, "sealed", &sealed); !st.ok()) return ErrorResponse(st);
  if (sealed.empty()) return ErrorResponse(InvalidArgument("request body: \"sealed\" is required"));
  const std::string& path = req.params.at("path");
  auto version = Secrets(ctx).Put(path, sealed);
  if (!version.ok()) return ErrorResponse(version.status());
  spdlog::info("secrets: {} stored {} version {}", req.caller.Describe(), path, *version);
  return Json({{"path", path}, {"version", *version}});
}

HttpResponse DeleteSecret(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& path = req.params.at("path");
  if (Status st = Secrets(ctx).Delete(path); !st.ok()) return ErrorResponse(st);
  spdlog::info("secrets: {} deleted {}", req.caller.Describe(), path);
  return Json({{"deleted", path}});
}

HttpResponse ListRecipients(const ApiContext& ctx) {
  auto all = Secrets(ctx).Recipients();
  if (!all.ok()) return ErrorResponse(all.status());
  json out = json::array();
  for (const auto& r : *all) {
    json j = r.ToJson();
    j["modify_index"] = r.mod_revision;
    out.push_back(j);
  }
  return Json(out);
}

HttpResponse PutRecipient(const ApiContext& ctx, const HttpRequest& req) {
  auto body = BodyObject(req, {"public_key", "writer"});
  if (!body.ok()) return ErrorResponse(body.status());
  std::string text;
  bool writer = false;
  if (Status st = BodyString(*body, "public_key", &text); !st.ok()) return ErrorResponse(st);
  if (Status st = BodyBool(*body, "writer", &writer); !st.ok()) return ErrorResponse(st);
  auto key = secrets::ParsePublicKey(text);
  if (!key.ok()) return ErrorResponse(key.status().Annotate("public_key"));
  secrets::Recipient r;
  r.key = std::move(key).value();
  r.key.name = req.params.at("name");
  r.kind = r.key.name.rfind("machine:", 0) == 0 ? "machine" : "operator";
  r.writer = writer;
  if (Status st = Secrets(ctx).PutRecipient(r); !st.ok()) return ErrorResponse(st);
  spdlog::info("secrets: {} set recipient {} (key {}{})", req.caller.Describe(), r.key.name,
               r.key.Fingerprint(), writer ? ", writer" : "");
  return Json(r.ToJson());
}

HttpResponse DeleteRecipient(const ApiContext& ctx, const HttpRequest& req) {
  const std::string& name = req.params.at("name");
  if (Status st = Secrets(ctx).DeleteRecipient(name); !st.ok()) return ErrorResponse(st);
  spdlog::info("secrets: {} removed recipient {}", req.caller.Describe(), name);
  return Json({{"deleted", name}});
}

}  // namespace

void RegisterSecretRoutes(HttpServer& server, const ApiContext& ctx) {
  using acl::Permission;
  server.Route("GET", "/v1/secrets", Permission::Secrets(),
               [ctx](const HttpRequest& r) { return ListSecrets(ctx, r); });
  server.Route("GET", "/v1/secrets/*path", Permission::Secrets(),
               [ctx](const HttpRequest& r) { return GetSecret(ctx, r); });
  server.Route("PUT", "/v1/secrets/*path", Permission::Secrets(),
               [ctx](const HttpRequest& r) { return PutSecret(ctx, r); });
  server.Route("DELETE", "/v1/secrets/*path", Permission::Secrets(),
               [ctx](const HttpRequest& r) { return DeleteSecret(ctx, r); });
  server.Route("GET", "/v1/secret-keys", Permission::Read(),
               [ctx](const HttpRequest&) { return ListRecipients(ctx); });
  server.Route("PUT", "/v1/secret-keys/:name", Permission::Secrets(),
               [ctx](const HttpRequest& r) { return PutRecipient(ctx, r); });
  server.Route("DELETE", "/v1/secret-keys/:name", Permission::Secrets(),
               [ctx](const HttpRequest& r) { return DeleteRecipient(ctx, r); });
}

}  // namespace berth::api
