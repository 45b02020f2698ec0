// Machine secrets: the agent's side of `berth secret`.
//
// Every agent has a machine key pair (X25519 for opening values sealed to it, Ed25519 unused
// for now) in <data-dir>/keys/machine.key, created 0600 on first start and refused when
// group or others can read it. Its public half is registered as the recipient
// "machine:<machine-id>" (secret-keys/machine:<id>, not leased: a machine that is down stays a
// recipient until an operator removes it). The returned SecretSource opens values sealed to
// this machine whose writer is trusted: a recipient marked as a writer, or, when
// `trusted_writers_file` is given, only a key listed in that file (one public key per line).
// Thread-safety: SetUpMachineSecrets once at start; the source is thread-safe.
#pragma once

#include <string>

#include "common/status.h"
#include "secrets/keys.h"
#include "secrets/secret_source.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::secrets {

struct MachineSecretsOptions {
  std::string data_dir;
  std::string machine_id;
  std::string trusted_writers_file;  // "" = the writers registered in the store
};

// This machine's secret source. Register() writes the recipient record unless the store
// already holds this key under this name; it is tried at set-up, on every Open until it has
// worked once, and by whoever calls it again (the agent, when the store comes back).
class MachineSecrets : public SecretSource {
 public:
  virtual Status Register() = 0;
  virtual const PublicKey& public_key() const = 0;
};
using MachineSecretsPtr = std::shared_ptr<MachineSecrets>;

// Loads (or creates) the machine key and registers its public half. `store` must outlive the
// returned source. Fails with a clear message when the key file is unsafe or unreadable, or
// belongs to another machine; a store that cannot be reached is not fatal.
Result<MachineSecretsPtr> SetUpMachineSecrets(store::Store& store, const store::Keys& keys,
                                              const MachineSecretsOptions& options);

}  // namespace berth::secrets
