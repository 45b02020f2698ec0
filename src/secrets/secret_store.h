// SecretStore: sealed values and recipients in the store, and StoreSecretSource, the agent's
// way of opening them.
//
//   secrets/<path>       one sealed value (SealedValue's encoding, in base64); the key's store
//                        version is the value's version: a put must seal version n+1 over
//                        version n (a compare-and-swap), so an older value put back is refused
//                        when read (its sealed version no longer matches)
//   secret-keys/<name>   a recipient: {"name", "kind": "machine"|"operator", "public_key":
//                        "berth-pub-v1 ...", "fingerprint", "writer": bool, "added_at_ms"}
//
// Nothing here ever holds plaintext except StoreSecretSource::Open's result.
// Thread-safety: every method may be called from any thread (the store is thread-safe).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "secrets/keys.h"
#include "secrets/sealed_value.h"
#include "secrets/secret_source.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::secrets {

struct Recipient {
  PublicKey key;  // key.name is the recipient's name
  std::string kind = "operator";
  bool writer = false;
  int64_t added_at_ms = 0;
  int64_t mod_revision = 0;  // of its record (0 when not read from the store)

  nlohmann::json ToJson() const;
  static Result<Recipient> FromJson(const nlohmann::json& j);
};

// Checks a recipient name: 1-128 of [A-Za-z0-9._:@-]; "machine:" names are the agents'.
Status ValidateRecipientName(std::string_view name);

struct StoredSecret {
  std::string path;
  std::string sealed;  // base64 of the encoding
  int64_t version = 0;
  int64_t mod_revision = 0;
};

class SecretStore {
 public:
  SecretStore(store::Store& store, store::Keys keys, ClockPtr clock = nullptr);

  Result<std::vector<Recipient>> Recipients();
  // The signing keys of recipients marked as writers.
  Result<std::vector<SignPublic>> TrustedWriters();
  // Creates or replaces a recipient (stamping added_at_ms).
  Status PutRecipient(Recipient recipient);
  // kNotFound when there is no such recipient.
  Status DeleteRecipient(const std::string& name);

  // kNotFound when nothing is stored at `path`.
  Result<StoredSecret> Get(const std::string& path);
  // Every value under `prefix` ("" = all, "db/" = the db folder), in path order.
  Result<std::vector<StoredSecret>> List(const std::string& prefix);
  // Stores a sealed value after checking it (VerifySealed: well formed, sealed for `path`, by a
  // trusted writer, signature intact) and that it seals version n+1 over the stored version n.
  // kFailedPrecondition when the stored version moved meanwhile. Returns the stored version.
  Result<int64_t> Put(const std::string& path, const std::string& sealed_base64);
  // kNotFound when nothing is stored at `path`.
  Status Delete(const std::string& path);

  store::Store& store() { return store_; }
  const store::Keys& keys() const { return keys_; }

 private:
  store::Store& store_;
  store::Keys keys_;
  ClockPtr clock_;
};

// Opens values sealed to `key` (this machine's key). Writers are those of the store, or only
// `pinned_writers` when it is not empty.
class StoreSecretSource final : public SecretSource {
 public:
  StoreSecretSource(store::Store& store, store::Keys keys, KeyPair key,
                    std::vector<SignPublic> pinned_writers);
  Result<SecretBuffer> Open(const std::string& path) override;
  const PublicKey& public_key() const { return key_.public_key(); }

 private:
  SecretStore secrets_;
  const KeyPair key_;
  const std::vector<SignPublic> pinned_writers_;
};

}  // namespace berth::secrets
