#include "store/keys.h"

#include <fmt/format.h>

namespace berth::store {

Keys::Keys(std::string prefix) : prefix_(std::move(prefix)) {
  if (prefix_.empty() || prefix_.back() != '/') prefix_ += '/';
}

std::string Keys::JobVersion(std::string_view name, int64_t version) const {
  return fmt::format("{}{:010}", JobVersions(name), version);
}

}  // namespace berth::store
