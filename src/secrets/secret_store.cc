#include "secrets/secret_store.h"

#include <algorithm>

namespace berth::secrets {

using nlohmann::json;

Status ValidateRecipientName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128;
  for (unsigned char c : name) {
    ok = ok && (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@');
  }
  if (!ok) {
    return InvalidArgument("recipient name '" + std::string(name.substr(0, 64)) +
                           "' is not 1-128 of [A-Za-z0-9._:@-]");
  }
  return Status::Ok();
}

json Recipient::ToJson() const {
  return {{"name", key.name},           {"kind", kind},
          {"public_key", key.ToText()}, {"fingerprint", key.Fingerprint()},
          {"writer", writer},           {"added_at_ms", added_at_ms}};
}

Result<Recipient> Recipient::FromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("a recipient record is not a JSON object");
  Recipient r;
  auto pk = j.find("public_key");
  if (pk == j.end() || !pk->is_string()) {
    return InvalidArgument("a recipient record has no public_key string");
  }
  BERTH_ASSIGN_OR_RETURN(r.key, ParsePublicKey(pk->get<std::string>()));
  if (auto n = j.find("name"); n != j.end() && n->is_string()) r.key.name = n->get<std::string>();
  if (auto k = j.find("kind"); k != j.end() && k->is_string()) r.kind = k->get<std::string>();
  if (r.kind != "machine" && r.kind != "operator") {
    return InvalidArgument("recipient " + r.key.name + " has unknown kind '" + r.kind + "'");
  }
  if (auto w = j.find("writer"); w != j.end() && w->is_boolean()) r.writer = w->get<bool>();
  if (auto a = j.find("added_at_ms"); a != j.end() && a->is_number_integer()) {
    r.added_at_ms = a->get<int64_t>();
  }
  return r;
}

SecretStore::SecretStore(store::Store& store, store::Keys keys, ClockPtr clock)
    : store_(store),
      keys_(std::move(keys)),
      clock_(clock ? std::move(clock) : SystemClock::Shared()) {}

Result<std::vector<Recipient>> SecretStore::Recipients() {
  BERTH_ASSIGN_OR_RETURN(auto range, store_.Range(keys_.SecretKeys()));
  std::vector<Recipient> out;
  for (const auto& kv : range.kvs) {
    // A record that does not parse is skipped, not fatal: it seals to nobody and trusts nobody.
    auto r = Recipient::FromJson(json::parse(kv.value, nullptr, false));
    if (!r.ok()) continue;
    r->key.name = kv.key.substr(keys_.SecretKeys().size());
    r->mod_revision = kv.mod_revision;
    out.push_back(std::move(r).value());
  }
  return out;
}

Result<std::vector<SignPublic>> SecretStore::TrustedWriters() {
  BERTH_ASSIGN_OR_RETURN(auto all, Recipients());
  std::vector<SignPublic> out;
  for (const auto& r : all) {
    if (r.writer) out.push_back(r.key.sign);
  }
  return out;
}

Status SecretStore::PutRecipient(Recipient recipient) {
  BERTH_RETURN_IF_ERROR(ValidateRecipientName(recipient.key.name));
  if (recipient.kind != "machine" && recipient.kind != "operator") {
    return InvalidArgument("recipient kind must be machine or operator, not '" + recipient.kind +
                           "'");
  }
  recipient.added_at_ms = clock_->WallMillis();
  auto put = store_.Put(keys_.SecretKey(recipient.key.name), recipient.ToJson().dump());
  return put.ok() ? Status::Ok() : put.status();
}

Status SecretStore::DeleteRecipient(const std::string& name) {
  BERTH_RETURN_IF_ERROR(ValidateRecipientName(name));
  BERTH_ASSIGN_OR_RETURN(auto n, store_.Delete(keys_.SecretKey(name)));
  if (n == 0) return NotFound("no recipient named " + name);
  return Status::Ok();
}

Result<StoredSecret> SecretStore::Get(const std::string& path) {
  BERTH_RETURN_IF_ERROR(ValidateSecretPath(path));
  BERTH_ASSIGN_OR_RETURN(auto kv, store_.Get(keys_.Secret(path)));
  if (!kv) return NotFound("no secret at " + path);
  return StoredSecret{path, kv->value, kv->version, kv->mod_revision};
}

Result<std::vector<StoredSecret>> SecretStore::List(const std::string& prefix) {
  BERTH_ASSIGN_OR_RETURN(auto range, store_.Range(keys_.Secrets() + prefix));
  std::vector<StoredSecret> out;
  for (auto& kv : range.kvs) {
    out.push_back(
        {kv.key.substr(keys_.Secrets().size()), std::move(kv.value), kv.version, kv.mod_revision});
  }
  return out;
}

Result<int64_t> SecretStore::Put(const std::string& path, const std::string& sealed_base64) {
  BERTH_RETURN_IF_ERROR(ValidateSecretPath(path));
  auto bytes = Base64Decode(sealed_base64);
  if (!bytes.ok()) return InvalidArgument("secret " + path + ": the sealed value is not base64");
  BERTH_ASSIGN_OR_RETURN(auto writers, TrustedWriters());
  BERTH_ASSIGN_OR_RETURN(auto v, VerifySealed(*bytes, {path, 0, writers}));
  const std::string key = keys_.Secret(path);
  BERTH_ASSIGN_OR_RETURN(auto txn, store_.Txn({store::Compare::VersionEquals(key, v.version - 1)},
                                              {store::TxnOp::Put(key, sealed_base64)}));
  if (!txn.succeeded) {
    auto now = store_.Get(key);
    int64_t current = now.ok() && *now ? (*now)->version : 0;
    return FailedPrecondition("secret " + path + " is at version " + std::to_string(current) +
                              ", so the value sealed as version " + std::to_string(v.version) +
                              " does not follow it (changed meanwhile? read it and seal again)");
  }
  return v.version;
}

Status SecretStore::Delete(const std::string& path) {
  BERTH_RETURN_IF_ERROR(ValidateSecretPath(path));
  BERTH_ASSIGN_OR_RETURN(auto n, store_.Delete(keys_.Secret(path)));
  if (n == 0) return NotFound("no secret at " + path);
  return Status::Ok();
}

StoreSecretSource::StoreSecretSource(store::Store& store, store::Keys keys, KeyPair key,
                                     std::vector<SignPublic> pinned_writers)
    : secrets_(store, std::move(keys)),
      key_(std::move(key)),
      pinned_writers_(std::move(pinned_writers)) {}

Result<SecretBuffer> StoreSecretSource::Open(const std::string& path) {
  auto stored = secrets_.Get(path);
  if (!stored.ok()) {
    if (stored.status().code() == Code::kNotFound) return stored.status();
    return stored.status().Annotate("secret " + path);
  }
  std::vector<SignPublic> writers = pinned_writers_;
  if (writers.empty()) {
    auto w = secrets_.TrustedWriters();
    if (!w.ok()) return w.status().Annotate("secret " + path + ": reading the trusted writers");
    writers = std::move(w).value();
  }
  auto bytes = Base64Decode(stored->sealed);
  if (!bytes.ok()) return InvalidArgument("secret " + path + ": the stored value is not base64");
  return OpenSealed(*bytes, {path, stored->version, std::move(writers)}, key_);
}

}  // namespace berth::secrets
