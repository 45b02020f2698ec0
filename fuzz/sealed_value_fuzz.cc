// Fuzz target for what berth reads of secrets from the store, the API and files: sealed values
// (ParseSealed, then OpenSealed with a fixed reader and trusted writer, so inputs built from the
// seed corpus reach the signature, the wrapped key and the ciphertext), private key files
// (KeyPair::FromFileText) and public key lines (ParsePublicKey). The first byte picks which.
// Arbitrary bytes must never crash, hang or leak, and an accepted public key line must
// round-trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "secrets/keys.h"
#include "secrets/sealed_value.h"

namespace {

using berth::secrets::KeyPair;

const KeyPair& Reader() {
  static const unsigned char seed[32] = {1};
  static const KeyPair k = KeyPair::FromSeed("machine:fuzz", seed);
  return k;
}
const KeyPair& Writer() {
  static const unsigned char seed[32] = {2};
  static const KeyPair k = KeyPair::FromSeed("writer", seed);
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto parsed = berth::secrets::ParseSealed(in);
      if (!parsed.ok()) return 0;
      berth::secrets::OpenExpectations e{
          parsed->path, parsed->version, {Writer().public_key().sign}};
      auto open = berth::secrets::OpenSealed(in, e, Reader());
      if (open.ok()) (void)open->size();
      break;
    }
    case 1: {
      auto k = KeyPair::FromFileText(in, "", "fuzz");
      if (k.ok()) (void)k->public_key().ToText();
      break;
    }
    default: {
      auto k = berth::secrets::ParsePublicKey(in);
      if (k.ok()) {
        auto back = berth::secrets::ParsePublicKey(k->ToText());
        if (!back.ok() || !back->SameKey(*k) || back->name != k->name) std::abort();
      }
      break;
    }
  }
  return 0;
}
