// Fuzz target for the allocation and status records an agent reads back from the store
// (runtime::Allocation::FromJson, runtime::AllocStatus::FromJson): arbitrary bytes must never
// crash, hang or leak, and every record they accept must round-trip through ToJson unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/alloc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto alloc = berth::runtime::Allocation::FromJson(j, "fuzz");
  if (alloc.ok()) {
    auto back = berth::runtime::Allocation::FromJson(alloc->ToJson(), "fuzz");
    if (!back.ok() || !(*back == *alloc)) std::abort();
    (void)alloc->ToJson().dump();
  }
  auto status = berth::runtime::AllocStatus::FromJson(j, "fuzz");
  if (status.ok()) {
    auto back = berth::runtime::AllocStatus::FromJson(status->ToJson(), "fuzz");
    if (!back.ok() || !(*back == *status)) std::abort();
    status->Summarize();
    (void)status->ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return 0;
}
