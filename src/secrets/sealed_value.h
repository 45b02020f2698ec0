// SealedValue: one secret value as it is stored, and the only code that seals and opens it.
//
// Format v1 (docs/secrets.md has it byte by byte): a header naming the path and version the
// value belongs to, the writer's Ed25519 public key and, per recipient, its X25519 public key
// with the data key sealed to it (crypto_box_seal); a 24-byte nonce; the plaintext encrypted
// with XChaCha20-Poly1305 under the data key, the whole header as associated data; and the
// writer's Ed25519 signature over everything before it. So a value opens only at the path and
// version it was sealed for, only for a recipient, and only if a trusted writer wrote it; any
// byte changed anywhere is an error, never a half-opened value.
//
// ParseSealed checks structure and limits only (it is what the fuzz target drives); OpenSealed
// does every check before any plaintext exists.
// Thread-safety: plain values and free functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "secrets/keys.h"
#include "secrets/secret_buffer.h"

namespace berth::secrets {

inline constexpr uint8_t kSealedFormatVersion = 1;
inline constexpr size_t kMaxSecretBytes = 256 << 10;  // plaintext
inline constexpr size_t kMaxRecipients = 4096;
inline constexpr size_t kMaxPathBytes = 256;

// Checks a secret path: 1-256 bytes of '/'-separated segments of [A-Za-z0-9._-], no "." or
// ".." segment, no empty segment, no leading or trailing '/'.
Status ValidateSecretPath(std::string_view path);

struct SealedRecipient {
  BoxPublic box{};
  std::string wrapped_key;  // crypto_box_seal of the 32-byte data key
};

struct SealedValue {
  uint8_t format = kSealedFormatVersion;
  std::string path;
  int64_t version = 0;
  SignPublic writer{};
  std::vector<SealedRecipient> recipients;
  std::string nonce;
  std::string ciphertext;  // plaintext size + 16 bytes of tag
  std::string signature;
  size_t signed_bytes = 0;  // how much of the encoding the signature covers
  size_t header_bytes = 0;  // how much of it is the associated data

  size_t plaintext_size() const;
  bool SealedTo(const BoxPublic& box) const;
};

// Encodings here are binary; the store and the API carry them as base64 (secret_store.h).
// Seals `plaintext` for `path` at `version` (>= 1) to every recipient (duplicates by key are
// sealed once), signed by `writer`. Fails on a bad path, an empty recipient list, or a value
// over kMaxSecretBytes.
Result<std::string> Seal(std::string_view plaintext, std::string_view path, int64_t version,
                         const std::vector<PublicKey>& recipients, const KeyPair& writer);

// Parses the encoding: structure and limits only, no cryptography. Errors say what is
// malformed ("truncated", "unknown format version 7", ...).
Result<SealedValue> ParseSealed(std::string_view encoded);

struct OpenExpectations {
  std::string_view path;  // where the value was read from
  int64_t version = 0;    // the stored key's version (0: do not check)
  std::vector<SignPublic> trusted_writers;
};

// Opens `encoded` with `reader`'s private key, after checking that it was sealed for
// `expect.path` (and version), that its writer is trusted and its signature holds, and that it
// is sealed to `reader`. kPermissionDenied: untrusted writer, or not sealed to the reader;
// kInvalidArgument: malformed, moved, replayed or tampered with. Errors never carry plaintext.
Result<SecretBuffer> OpenSealed(std::string_view encoded, const OpenExpectations& expect,
                                const KeyPair& reader);

// Checks everything OpenSealed checks that needs no private key (structure, path, version,
// trusted writer, signature): what the API server does before it stores a value.
Result<SealedValue> VerifySealed(std::string_view encoded, const OpenExpectations& expect);

}  // namespace berth::secrets
