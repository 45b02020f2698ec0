// SecretSource: the seam through which an agent opens the secrets its tasks need.
//
// The real implementation (StoreSecretSource in secret_store.h) reads the sealed value at
// secrets/<path> from the store, checks its writer's signature against the trusted writers,
// and opens it with this machine's private key. Tests use a fake.
// Thread-safety: Open may be called from any thread concurrently.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "secrets/secret_buffer.h"

namespace berth::secrets {

class SecretSource {
 public:
  virtual ~SecretSource() = default;
  // The current plaintext at `path` ("db/password": no leading '/', no "..", no empty segment).
  // Errors name the path and say why, never the value:
  //   kNotFound          nothing is stored at the path
  //   kPermissionDenied  the value is not sealed to this machine, or its writer is not trusted
  //   kInvalidArgument   the stored value is malformed, tampered with, or of an unknown format
  //   kUnavailable       the store cannot be reached
  virtual Result<SecretBuffer> Open(const std::string& path) = 0;
};
using SecretSourcePtr = std::shared_ptr<SecretSource>;

}  // namespace berth::secrets
