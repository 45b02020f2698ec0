// FakeSecretSource: a SecretSource for tests of the agent: a map from path to a value or to the
// error Open returns, changeable while runners use it.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "secrets/secret_source.h"

namespace berth::agent::testing {

class FakeSecretSource final : public secrets::SecretSource {
 public:
  Result<secrets::SecretBuffer> Open(const std::string& path) override {
    std::lock_guard lock(mu_);
    ++opens_;
    if (auto it = errors_.find(path); it != errors_.end()) return it->second;
    auto it = values_.find(path);
    if (it == values_.end()) return NotFound("secret " + path + ": not found");
    return secrets::SecretBuffer(it->second);
  }

  void Set(const std::string& path, const std::string& value) {
    std::lock_guard lock(mu_);
    errors_.erase(path);
    values_[path] = value;
  }
  void Fail(const std::string& path, Status error) {
    std::lock_guard lock(mu_);
    errors_.insert_or_assign(path, std::move(error));
  }
  int opens() {
    std::lock_guard lock(mu_);
    return opens_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> values_;
  std::map<std::string, Status> errors_;
  int opens_ = 0;
};

}  // namespace berth::agent::testing
