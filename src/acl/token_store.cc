#include "acl/token_store.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace berth::acl {

using nlohmann::json;

TokenStore::TokenStore(store::Store& store, store::Keys keys, ClockPtr clock, HashCompare compare)
    : store_(store),
      keys_(std::move(keys)),
      clock_(clock ? std::move(clock) : SystemClock::Shared()),
      compare_(std::move(compare)) {}

Result<NewToken> TokenStore::Bootstrap() {
  NewToken t = MakeToken("bootstrap", Policy::kAdmin, "", clock_->WallMillis());
  t.record.bootstrap = true;
  const std::string marker = keys_.AclBootstrap();
  json mark = {{"accessor", t.record.accessor}, {"created_at_ms", t.record.created_at_ms}};
  auto res = store_.Txn(
      {store::Compare::Absent(marker), store::Compare::Absent(keys_.AclToken(t.record.accessor))},
      {store::TxnOp::Put(marker, mark.dump()),
       store::TxnOp::Put(keys_.AclToken(t.record.accessor), t.record.ToJson(true).dump())});
  if (!res.ok()) return res.status().Annotate("ACL bootstrap");
  if (res->succeeded) return t;
  std::string when;
  if (auto kv = store_.Get(marker); kv.ok() && *kv) {
    json j = json::parse((*kv)->value, nullptr, false);
    if (j.is_object() && j.contains("accessor") && j["accessor"].is_string()) {
      when = fmt::format(" (its admin token has accessor {})", j["accessor"].get<std::string>());
    }
  }
  return FailedPrecondition(fmt::format(
      "the ACL is already bootstrapped{}; use an admin token to make more tokens. To bootstrap "
      "again (every admin token lost), delete the key {} in the store (etcdctl del {}) and run "
      "berth acl bootstrap again: existing tokens stay valid until revoked",
      when, marker, marker));
}

Result<NewToken> TokenStore::Create(const std::string& name, Policy policy,
                                    const std::string& job_prefix) {
  BERTH_RETURN_IF_ERROR(CheckTokenName(name));
  BERTH_RETURN_IF_ERROR(CheckJobPrefix(job_prefix));
  if (!job_prefix.empty() && policy != Policy::kJobs) {
    return InvalidArgument(fmt::format(
        "job_prefix limits a token of policy jobs; a {} token cannot have one (policy {} "
        "already reads every job)",
        PolicyName(policy), PolicyName(policy)));
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    NewToken t = MakeToken(name, policy, job_prefix, clock_->WallMillis());
    const std::string key = keys_.AclToken(t.record.accessor);
    auto res = store_.Txn({store::Compare::Absent(key)},
                          {store::TxnOp::Put(key, t.record.ToJson(true).dump())});
    if (!res.ok()) return res.status().Annotate("create token");
    if (res->succeeded) return t;
    // 64 random bits collided with an existing accessor: draw again.
  }
  return Internal("create token: three random accessors in a row already existed");
}

Result<std::vector<TokenRecord>> TokenStore::List() {
  auto kvs = store_.Range(keys_.AclTokens());
  if (!kvs.ok()) return kvs.status().Annotate("list tokens");
  std::vector<TokenRecord> out;
  for (const auto& kv : kvs->kvs) {
    auto r = TokenRecord::FromJson(json::parse(kv.value, nullptr, false), kv.key);
    if (!r.ok()) {
      spdlog::warn("acl: skipping unreadable token record: {}", r.status().message());
      continue;
    }
    out.push_back(std::move(*r));
  }
  return out;
}

Result<TokenRecord> TokenStore::Revoke(const std::string& accessor) {
  const std::string key = keys_.AclToken(accessor);
  auto kv = store_.Get(key);
  if (!kv.ok()) return kv.status().Annotate("get token");
  if (!*kv) return NotFound(fmt::format("token {} not found", accessor));
  TokenRecord rec;
  if (auto r = TokenRecord::FromJson(json::parse((*kv)->value, nullptr, false), key); r.ok()) {
    rec = std::move(*r);
  } else {
    rec.accessor = accessor;  // unreadable: still removed
    rec.name = "(unreadable record)";
  }
  auto del = store_.Delete(key);
  if (!del.ok()) return del.status().Annotate("delete token");
  if (*del == 0) return NotFound(fmt::format("token {} not found", accessor));
  return rec;
}

Result<bool> TokenStore::Bootstrapped() {
  auto kv = store_.Get(keys_.AclBootstrap());
  if (!kv.ok()) return kv.status().Annotate("get ACL bootstrap");
  return kv->has_value();
}

Result<Caller> TokenStore::Authenticate(std::string_view token) {
  auto presented = ParseToken(token);
  if (!presented.ok()) return Unauthenticated(presented.status().message());
  const std::string key = keys_.AclToken(presented->accessor);
  auto kv = store_.Get(key);
  // Wiped as soon as it has been hashed: the secret is not kept past this call.
  TokenHash hash = HashSecret(presented->secret);
  presented->secret.fill(0);
  if (!kv.ok()) return kv.status().Annotate("check token");
  const std::string refused =
      fmt::format("token {} is unknown, revoked, or its secret is wrong", presented->accessor);
  if (!*kv) return Unauthenticated(refused);
  auto rec = TokenRecord::FromJson(json::parse((*kv)->value, nullptr, false), key);
  if (!rec.ok()) {
    spdlog::warn("acl: {} (refusing the token)", rec.status().message());
    return Unauthenticated(refused);
  }
  if (!compare_(hash, rec->hash) || rec->accessor != presented->accessor) {
    return Unauthenticated(refused);
  }
  return rec->ToCaller();
}

}  // namespace berth::acl
