// Document: a small, neutral tree (null, scalar, sequence, map) with source positions, that
// YAML text, JSON text and nlohmann::json values are all converted into before a job is decoded
// from it (job_parser.cc). One decoder then gives every input the same strictness and the same
// error messages, and the conversion is where untrusted input is bounded: size, nesting depth,
// node count (YAML aliases can expand a small file into a huge tree), UTF-8 validity.
// Internal to src/spec. Thread-safety: plain values; conversions are reentrant.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace berth::spec {

// 1-based position in the source text; line 0 means unknown (e.g. from an nlohmann::json).
struct Mark {
  int line = 0;
  int column = 0;
};

struct DocNode {
  enum class Kind { kNull, kScalar, kSequence, kMap };

  Kind kind = Kind::kNull;
  std::string scalar;
  // A quoted YAML scalar or a JSON string: text, never a number or a boolean.
  bool quoted = false;
  Mark mark;
  std::vector<DocNode> children;  // sequence items, or map values (parallel to keys)
  std::vector<std::string> keys;  // map keys, in source order, unique
  std::vector<Mark> key_marks;

  // Structural equality, ignoring marks.
  bool SameAs(const DocNode& other) const;
};

inline constexpr size_t kMaxDocumentBytes = 1 << 20;
inline constexpr int kMaxDocumentDepth = 32;
inline constexpr size_t kMaxDocumentNodes = 200'000;
// Text held by the tree: bounds what aliases can copy.
inline constexpr size_t kMaxDocumentTextBytes = 8 << 20;

// Parses one YAML document. Errors: kTooLarge above kMaxDocumentBytes; kInvalidArgument for
// syntax errors ("<source>:<line>:<col>: ..."), several documents, non-scalar or duplicate map
// keys, invalid UTF-8, or a tree deeper or larger than the limits above.
Result<DocNode> DocumentFromYaml(std::string_view text, std::string_view source);

// Parses JSON text strictly (RFC 8259: no comments, no duplicate keys). Positions come from
// yaml-cpp, which reads JSON as flow YAML, whenever it yields the same tree as the JSON parser;
// otherwise the tree has no positions.
Result<DocNode> DocumentFromJsonText(std::string_view text, std::string_view source);

// Converts a JSON value (no positions); same limits.
Result<DocNode> DocumentFromJson(const nlohmann::json& value, std::string_view source);

// "<source>:<line>:<col>: <path>: <message>", leaving out what is unknown or empty.
Status DocumentError(std::string_view source, Mark mark, std::string_view path,
                     std::string_view message);

}  // namespace berth::spec
