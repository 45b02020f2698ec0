// VersionConstraint: the `version` constraint operator — a comma-separated list of clauses,
// all of which must hold, such as ">= 1.2, < 2" or "~> 3.1".
//
// Versions are dotted numbers; missing components count as 0 (so "2" == "2.0.0"). Whatever
// follows the numeric part ("6.1.0-18-amd64", "1.2.3-rc1", "v" prefixes excepted) is ignored:
// pre-releases sort with their release. Operators: = == != > >= < <= and ~> (pessimistic:
// "~> 1.2" means >= 1.2, < 2; "~> 1.2.3" means >= 1.2.3, < 1.3). A bare version means "=".
// Thread-safety: plain values.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace berth::scheduler {

using Version = std::vector<long>;

// The numeric part of a version ("v1.2.3-rc1" -> {1,2,3}); nullopt when it has none.
std::optional<Version> ParseVersion(std::string_view s);
// <0, 0, >0, with missing components as 0.
int CompareVersions(const Version& a, const Version& b);

class VersionConstraint {
 public:
  static Result<VersionConstraint> Parse(std::string_view text);
  // Whether an attribute value satisfies every clause; a value without a version never does.
  bool Matches(std::string_view value) const;

 private:
  enum class Op { kEq, kNe, kGt, kGe, kLt, kLe };
  struct Clause {
    Op op;
    Version version;
  };
  std::vector<Clause> clauses_;
};

}  // namespace berth::scheduler
