// SecretBuffer: plaintext of a secret, held in memory that is wiped when it is freed.
//
// Move-only, so a value is never copied by accident; the bytes are zeroed (sodium_memzero) on
// destruction and on move-from. Use view() to hand the bytes to a write(2) and nothing else:
// never log it, never put it in a std::string that outlives the use.
// Thread-safety: a plain value; not shared between threads.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace berth::secrets {

class SecretBuffer {
 public:
  SecretBuffer() = default;
  explicit SecretBuffer(size_t size) : bytes_(size) {}
  explicit SecretBuffer(std::string_view from) : bytes_(from.begin(), from.end()) {}
  ~SecretBuffer() { Wipe(); }
  SecretBuffer(SecretBuffer&& o) noexcept : bytes_(std::move(o.bytes_)) { o.bytes_.clear(); }
  SecretBuffer& operator=(SecretBuffer&& o) noexcept {
    if (this != &o) {
      Wipe();
      bytes_ = std::move(o.bytes_);
      o.bytes_.clear();
    }
    return *this;
  }
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;

  unsigned char* data() { return bytes_.data(); }
  const unsigned char* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  // Shrinks to `n` bytes (n <= size()), wiping what is cut off.
  void Truncate(size_t n) {
    if (n >= bytes_.size()) return;
    sodium_memzero(bytes_.data() + n, bytes_.size() - n);
    bytes_.resize(n);
  }

 private:
  void Wipe() {
    if (!bytes_.empty()) sodium_memzero(bytes_.data(), bytes_.size());
  }
  std::vector<unsigned char> bytes_;
};

}  // namespace berth::secrets
