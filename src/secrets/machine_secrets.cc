#include "secrets/machine_secrets.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "secrets/secret_store.h"

namespace berth::secrets {

namespace {

Result<std::vector<SignPublic>> ReadWritersFile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return NotFound("cannot read trusted writers file " + path + ": " + std::strerror(errno));
  std::vector<SignPublic> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    auto key = ParsePublicKey(line);
    if (!key.ok()) {
      return InvalidArgument("trusted writers file " + path + " line " + std::to_string(n) + ": " +
                             key.status().message());
    }
    out.push_back(key->sign);
  }
  if (out.empty()) {
    return InvalidArgument("trusted writers file " + path +
                           " lists no key: no secret could ever be opened");
  }
  return out;
}

// The source plus the registration of this machine's public key, retried on every Open until
// it has been written once (the store may be down when the agent starts).
class MachineSecretSource final : public MachineSecrets {
 public:
  MachineSecretSource(store::Store& store, const store::Keys& keys, KeyPair key,
                      std::vector<SignPublic> pinned)
      : secrets_(store, keys),
        name_(key.public_key().name),
        pub_(key.public_key()),
        source_(store, keys, std::move(key), std::move(pinned)) {}

  // Writes the recipient record unless the store already has this key under this name.
  Status Register() override {
    {
      std::lock_guard lock(mu_);
      if (registered_) return Status::Ok();
    }
    auto existing = secrets_.store().Get(secrets_.keys().SecretKey(name_));
    if (!existing.ok()) return existing.status();
    if (*existing) {
      auto r = Recipient::FromJson(nlohmann::json::parse((*existing)->value, nullptr, false));
      if (r.ok() && r->key.SameKey(pub_) && r->kind == "machine") {
        std::lock_guard lock(mu_);
        registered_ = true;
        return Status::Ok();
      }
    }
    Recipient rec;
    rec.key = pub_;
    rec.kind = "machine";
    BERTH_RETURN_IF_ERROR(secrets_.PutRecipient(rec));
    spdlog::info("secrets: registered this machine's key {} as recipient {}", pub_.Fingerprint(),
                 name_);
    std::lock_guard lock(mu_);
    registered_ = true;
    return Status::Ok();
  }

  const PublicKey& public_key() const override { return pub_; }

  Result<SecretBuffer> Open(const std::string& path) override {
    Register().IgnoreError();  // opening does not depend on it; sealing to us later does
    return source_.Open(path);
  }

 private:
  SecretStore secrets_;
  const std::string name_;
  const PublicKey pub_;
  StoreSecretSource source_;
  std::mutex mu_;
  bool registered_ = false;  // guarded by mu_
};

}  // namespace

Result<MachineSecretsPtr> SetUpMachineSecrets(store::Store& store, const store::Keys& keys,
                                              const MachineSecretsOptions& options) {
  if (options.machine_id.empty()) return InvalidArgument("secrets: no machine id");
  const std::string dir = options.data_dir + "/keys";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Internal("cannot create " + dir + ": " + std::strerror(errno));
  }
  const std::string path = dir + "/machine.key";
  const std::string name = "machine:" + options.machine_id;
  auto key = LoadKeyPair(path);
  if (!key.ok() && key.status().code() == Code::kNotFound) {
    BERTH_RETURN_IF_ERROR(WriteKeyFiles(KeyPair::Generate(name), path));
    spdlog::info("secrets: created the machine key {}", path);
    key = LoadKeyPair(path);
  }
  if (!key.ok()) return key.status();
  if (key->public_key().name != name) {
    return FailedPrecondition("machine key " + path + " belongs to " + key->public_key().name +
                              ", not " + name +
                              " (a data dir copied from another machine?): move it away to "
                              "make a new one");
  }
  std::vector<SignPublic> pinned;
  if (!options.trusted_writers_file.empty()) {
    BERTH_ASSIGN_OR_RETURN(pinned, ReadWritersFile(options.trusted_writers_file));
  }
  auto source =
      std::make_shared<MachineSecretSource>(store, keys, std::move(key).value(), std::move(pinned));
  auto reg = source->Register();
  if (!reg.ok()) {
    spdlog::warn("secrets: cannot register this machine's key yet ({}); retrying on first use",
                 reg.message());
  }
  return MachineSecretsPtr(source);
}

}  // namespace berth::secrets
