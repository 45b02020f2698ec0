// Secret keys: the key pairs that seal, open and sign secret values (docs/secrets.md).
//
// A KeyPair is an X25519 pair (values are sealed to its public half and opened with its
// private half) and an Ed25519 pair (a writer signs every value it seals; readers check the
// signature against the keys they trust). Its public half, PublicKey, travels as one line of
// text: "berth-pub-v1 <name> <x25519 base64> <ed25519 base64>".
//
// Private key files are created 0600 with O_EXCL, and LoadKeyPair refuses a file that group or
// others may read (crypt's keys sat wherever gpg left them). An operator's key may be locked
// with a passphrase (Argon2id, then XSalsa20-Poly1305); a machine key is not, since the agent
// starts unattended, and is protected by its mode and the machine.
// Thread-safety: plain values and free functions; safe from any thread.
#pragma once

#include <sodium.h>

#include <array>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::secrets {

using BoxPublic = std::array<unsigned char, crypto_box_PUBLICKEYBYTES>;
using SignPublic = std::array<unsigned char, crypto_sign_PUBLICKEYBYTES>;

struct PublicKey {
  std::string name;  // who it is: "alice", "machine:m1"; not part of the key's identity
  BoxPublic box{};
  SignPublic sign{};

  // 16 hex characters naming the key pair (BLAKE2b of both public keys): what errors and
  // listings show.
  std::string Fingerprint() const;
  // "berth-pub-v1 <name> <box> <sign>"
  std::string ToText() const;
  bool SameKey(const PublicKey& o) const { return box == o.box && sign == o.sign; }
};

// Parses one public-key line (surrounding whitespace is ignored). Errors name what is wrong.
Result<PublicKey> ParsePublicKey(std::string_view text);

// A whole key pair. The private halves are wiped when it is destroyed; it cannot be copied.
class KeyPair {
 public:
  // A fresh random key pair named `name`.
  static KeyPair Generate(std::string name);
  // The key pair derived from a 32-byte seed: the same seed, the same keys (fuzzers, tests).
  static KeyPair FromSeed(std::string name, const unsigned char (&seed)[32]);
  KeyPair(KeyPair&& o) noexcept;
  KeyPair& operator=(KeyPair&& o) noexcept;
  KeyPair(const KeyPair&) = delete;
  KeyPair& operator=(const KeyPair&) = delete;
  ~KeyPair();

  const PublicKey& public_key() const { return pub_; }
  const unsigned char* box_secret() const { return box_sk_.data(); }
  const unsigned char* sign_secret() const { return sign_sk_.data(); }

  // The private key file's text; with a non-empty passphrase the private halves are encrypted
  // under a key derived from it (Argon2id, libsodium's "interactive" limits).
  Result<std::string> ToFileText(std::string_view passphrase = {}) const;
  // Parses a private key file's text; `passphrase` opens a locked one (a locked file without
  // one, or with a wrong one, is kPermissionDenied saying so). `source` names the file.
  static Result<KeyPair> FromFileText(std::string_view text, std::string_view passphrase,
                                      std::string_view source);

 private:
  KeyPair() = default;
  void Wipe();

  PublicKey pub_;
  std::array<unsigned char, crypto_box_SECRETKEYBYTES> box_sk_{};
  std::array<unsigned char, crypto_sign_SECRETKEYBYTES> sign_sk_{};
};

// Writes `key` to `path` (0600, created exclusively: an existing file is kAlreadyExists, never
// overwritten) and its public line to `path`.pub (0644).
Status WriteKeyFiles(const KeyPair& key, const std::string& path, std::string_view passphrase = {});
// Reads a private key file; refuses (kPermissionDenied) one that group or others may read or
// that is not a regular file.
Result<KeyPair> LoadKeyPair(const std::string& path, std::string_view passphrase = {});

// Initialises libsodium once (thread-safe; aborts if it cannot, as nothing here is safe then).
// Every entry point of this folder calls it.
void EnsureSodium();

// Standard base64 of `data` and back (decoding rejects anything else, kInvalidArgument).
std::string Base64Encode(std::string_view data);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace berth::secrets
