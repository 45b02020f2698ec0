#include "acl/token.h"

#include <fmt/format.h>
#include <sodium.h>

#include <cstdio>
#include <cstdlib>

namespace berth::acl {

using nlohmann::json;

namespace {

void InitSodium() {
  // sodium_init is idempotent and thread-safe; it fails only without an entropy source, and
  // then no token can be made safely.
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    std::fprintf(stderr, "berth: libsodium failed to initialise\n");
    std::abort();
  }
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Hex(const unsigned char* data, size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), data, n);
  out.pop_back();
  return out;
}

}  // namespace

Result<PresentedToken> ParseToken(std::string_view token) {
  InitSodium();
  constexpr size_t kSecretChars = 43;  // base64url of 32 bytes, no padding
  auto dot = token.find('.');
  if (dot == std::string_view::npos) {
    return InvalidArgument("malformed token: expected ACCESSOR.SECRET (as berth acl printed it)");
  }
  std::string_view accessor = token.substr(0, dot);
  std::string_view secret = token.substr(dot + 1);
  if (accessor.size() != kAccessorHexChars || !IsLowerHex(accessor)) {
    return InvalidArgument(fmt::format(
        "malformed token: the accessor (before the '.') must be {} lower-case hex digits",
        kAccessorHexChars));
  }
  PresentedToken out;
  out.accessor = std::string(accessor);
  size_t len = 0;
  if (secret.size() != kSecretChars ||
      sodium_base642bin(out.secret.data(), out.secret.size(), secret.data(), secret.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      len != kSecretBytes) {
    return InvalidArgument(fmt::format(
        "malformed token {}.…: the secret (after the '.') must be {} base64url characters",
        out.accessor, kSecretChars));
  }
  return out;
}

TokenHash HashSecret(const std::array<unsigned char, kSecretBytes>& secret) {
  InitSodium();
  TokenHash h{};
  crypto_generichash(h.data(), h.size(), secret.data(), secret.size(), nullptr, 0);
  return h;
}

bool HashesEqual(const TokenHash& a, const TokenHash& b) {
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

NewToken MakeToken(std::string name, Policy policy, std::string job_prefix, int64_t now_ms) {
  InitSodium();
  unsigned char accessor[kAccessorHexChars / 2];
  randombytes_buf(accessor, sizeof(accessor));
  std::array<unsigned char, kSecretBytes> secret{};
  randombytes_buf(secret.data(), secret.size());
  char b64[sodium_base64_ENCODED_LEN(kSecretBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof(b64), secret.data(), secret.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  NewToken t;
  t.record.accessor = Hex(accessor, sizeof(accessor));
  t.record.name = std::move(name);
  t.record.policy = policy;
  t.record.job_prefix = std::move(job_prefix);
  t.record.hash = HashSecret(secret);
  t.record.created_at_ms = now_ms;
  t.token = t.record.accessor + "." + b64;
  sodium_memzero(secret.data(), secret.size());
  sodium_memzero(b64, sizeof(b64));
  return t;
}

json TokenRecord::ToJson(bool with_hash) const {
  json j = {{"accessor", accessor},
            {"name", name},
            {"policy", std::string(PolicyName(policy))},
            {"job_prefix", job_prefix},
            {"created_at_ms", created_at_ms}};
  if (bootstrap) j["bootstrap"] = true;
  if (with_hash) j["hash"] = Hex(hash.data(), hash.size());
  return j;
}

Result<TokenRecord> TokenRecord::FromJson(const json& j, std::string_view key) {
  auto bad = [&](const std::string& what) {
    return InvalidArgument(fmt::format("token record {}: {}", std::string(key), what));
  };
  if (!j.is_object()) return bad("not a JSON object");
  TokenRecord r;
  for (const char* f : {"accessor", "name", "policy", "job_prefix", "hash"}) {
    if (!j.contains(f) || !j[f].is_string()) return bad(fmt::format("\"{}\" must be a string", f));
  }
  if (!j.contains("created_at_ms") || !j["created_at_ms"].is_number_integer()) {
    return bad("\"created_at_ms\" must be an integer");
  }
  r.accessor = j["accessor"].get<std::string>();
  r.name = j["name"].get<std::string>();
  auto policy = ParsePolicy(j["policy"].get<std::string>());
  if (!policy.ok()) return bad(policy.status().message());
  r.policy = *policy;
  r.job_prefix = j["job_prefix"].get<std::string>();
  r.created_at_ms = j["created_at_ms"].get<int64_t>();
  r.bootstrap = j.value("bootstrap", false);
  const std::string hex = j["hash"].get<std::string>();
  size_t len = 0;
  if (hex.size() != kHashBytes * 2 ||
      sodium_hex2bin(r.hash.data(), r.hash.size(), hex.data(), hex.size(), nullptr, &len,
                     nullptr) != 0 ||
      len != kHashBytes) {
    return bad(fmt::format("\"hash\" must be {} hex digits", kHashBytes * 2));
  }
  return r;
}

Caller TokenRecord::ToCaller() const {
  Caller c;
  c.accessor = accessor;
  c.name = name;
  c.policy = policy;
  c.job_prefix = policy == Policy::kJobs ? job_prefix : "";
  return c;
}

Status CheckTokenName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128;
  for (unsigned char c : name) ok = ok && c >= 0x20 && c != 0x7f;
  if (ok) return Status::Ok();
  return InvalidArgument("token name: 1 to 128 printable characters (no control characters)");
}

Status CheckJobPrefix(std::string_view prefix) {
  bool ok = prefix.size() <= 128;
  for (char c : prefix) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  if (ok) return Status::Ok();
  return InvalidArgument(fmt::format(
      "job prefix \"{}\": job names are lower-case letters, digits and '-' (at most 128)",
      std::string(prefix)));
}

}  // namespace berth::acl
