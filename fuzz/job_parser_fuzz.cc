// Fuzz target for the job file parsers: arbitrary bytes through ParseJobYaml and ParseJobJson
// must never crash, hang or leak, and every job they accept must survive the stored JSON form
// unchanged (JobToJson -> text -> JobFromJson).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "spec/job_json.h"
#include "spec/job_parser.h"

namespace {

void CheckRoundTrip(const berth::spec::Job& job) {
  nlohmann::json stored = berth::spec::JobToJson(job);
  berth::Result<berth::spec::Job> back = berth::spec::JobFromJson(stored, "fuzz");
  if (!back.ok() || !(*back == job)) std::abort();
  // Through text too, as the store keeps it: dump() must not throw on what was accepted.
  std::string text = stored.dump();
  berth::Result<berth::spec::Job> again = berth::spec::ParseJobJson(text, "fuzz.json");
  if (!again.ok() || !(*again == job)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  berth::Result<berth::spec::Job> y = berth::spec::ParseJobYaml(text, "fuzz.yml");
  if (y.ok()) CheckRoundTrip(*y);
  berth::Result<berth::spec::Job> j = berth::spec::ParseJobJson(text, "fuzz.json");
  if (j.ok()) CheckRoundTrip(*j);
  return 0;
}
