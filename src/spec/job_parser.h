// Job file parsers: YAML or JSON text in, a complete and validated Job out (see job.h and
// docs/jobspec.md for the format).
//
// Parsing is strict, because a typo in a job file should fail at submission, not silently run
// something else: unknown fields, wrong types, missing required fields and bad values are all
// errors. Every error is kInvalidArgument (kTooLarge above 1 MiB) and names the place and the
// field, first error only:
//   web.yml:12:9: groups[0].tasks[1].resources.memory: expected a size like 256MiB, got "lots"
// Input is untrusted: size, nesting and alias expansion are bounded, nothing throws, nothing
// crashes (fuzzed by fuzz/job_parser_fuzz.cc).
// Thread-safety: free functions without shared state; safe to call concurrently.
#pragma once

#include <string_view>

#include "common/status.h"
#include "spec/document.h"
#include "spec/job.h"

namespace berth::spec {

// `filename` only labels error messages.
Result<Job> ParseJobYaml(std::string_view text, std::string_view filename);

// The same schema written as JSON (strict RFC 8259: no comments, no duplicate keys).
Result<Job> ParseJobJson(std::string_view json_text, std::string_view source_name);

// Decodes and validates a job from an already parsed document (the step both parsers and
// JobFromJson share). `source` labels error messages.
Result<Job> DecodeJob(const DocNode& root, std::string_view source);

}  // namespace berth::spec
