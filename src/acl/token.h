// API tokens: "<accessor>.<secret>". The accessor (16 lower-case hex digits) is the token's
// public id: it names the record in the store (acl/tokens/<accessor>), shows in `berth acl
// token ls` and in logs. The secret (32 random bytes from libsodium, base64url without padding:
// 43 characters) is shown once, when the token is made, and never stored: the record keeps
// a BLAKE2b-256 hash of it (crypto_generichash), compared in constant time (sodium_memcmp).
// docs/acl.md and docs/store-layout.md describe the record.
// Thread-safety: plain values and functions; libsodium is initialised on first use.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "acl/policy.h"
#include "common/status.h"

namespace berth::acl {

constexpr size_t kAccessorHexChars = 16;
constexpr size_t kSecretBytes = 32;
constexpr size_t kHashBytes = 32;
using TokenHash = std::array<unsigned char, kHashBytes>;

// A token as a client presents it, split and decoded. The secret is kept only as long as the
// request that carried it.
struct PresentedToken {
  std::string accessor;
  std::array<unsigned char, kSecretBytes> secret{};
};

// Parses "<accessor>.<secret>". InvalidArgument naming what is wrong (never echoing the secret).
Result<PresentedToken> ParseToken(std::string_view token);

// The stored record of a token (acl/tokens/<accessor>).
struct TokenRecord {
  std::string accessor;
  std::string name;
  Policy policy = Policy::kRead;
  std::string job_prefix;  // only with policy jobs; "" = every job
  TokenHash hash{};
  int64_t created_at_ms = 0;
  bool bootstrap = false;  // the first admin token, made by POST /v1/acl/bootstrap

  // The stored form, with "hash" (hex); `with_hash` false for what the API shows.
  nlohmann::json ToJson(bool with_hash) const;
  // Strict: every field of the stored form must be there with its type; the error names it.
  static Result<TokenRecord> FromJson(const nlohmann::json& j, std::string_view key);
  Caller ToCaller() const;
};

// A freshly made token: the string to give the user once, and the record to store.
struct NewToken {
  std::string token;
  TokenRecord record;
};
NewToken MakeToken(std::string name, Policy policy, std::string job_prefix, int64_t now_ms);

TokenHash HashSecret(const std::array<unsigned char, kSecretBytes>& secret);
// Constant-time equality of two hashes (sodium_memcmp): how long it takes does not depend on
// where they differ.
bool HashesEqual(const TokenHash& a, const TokenHash& b);

// A token name: 1 to 128 printable characters (no control characters).
Status CheckTokenName(std::string_view name);
// A job prefix: up to 128 characters, the ones job names may hold.
Status CheckJobPrefix(std::string_view prefix);

}  // namespace berth::acl
