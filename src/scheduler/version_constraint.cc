#include "scheduler/version_constraint.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace berth::scheduler {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::optional<Version> ParseVersion(std::string_view s) {
  s = Trim(s);
  if (!s.empty() && (s.front() == 'v' || s.front() == 'V')) s.remove_prefix(1);
  Version v;
  size_t i = 0;
  while (i < s.size() && IsDigit(s[i])) {
    long n = 0;
    size_t digits = 0;
    while (i < s.size() && IsDigit(s[i])) {
      if (digits++ < 15) n = n * 10 + (s[i] - '0');
      ++i;
    }
    v.push_back(n);
    if (i + 1 < s.size() && s[i] == '.' && IsDigit(s[i + 1])) {
      ++i;
    } else {
      break;
    }
  }
  if (v.empty()) return std::nullopt;
  return v;
}

int CompareVersions(const Version& a, const Version& b) {
  size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    long x = i < a.size() ? a[i] : 0;
    long y = i < b.size() ? b[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

Result<VersionConstraint> VersionConstraint::Parse(std::string_view text) {
  VersionConstraint vc;
  std::string_view rest = text;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view clause = Trim(rest.substr(0, comma));
    auto bad = [&](std::string_view why) {
      return InvalidArgument("version constraint \"" + std::string(text) +
                             "\": " + std::string(why));
    };
    if (clause.empty()) return bad("empty clause");
    std::string_view op;
    for (std::string_view candidate : {"~>", ">=", "<=", "==", "!=", ">", "<", "="}) {
      if (clause.substr(0, candidate.size()) == candidate) {
        op = candidate;
        break;
      }
    }
    std::string_view number = Trim(clause.substr(op.size()));
    std::optional<Version> v = ParseVersion(number);
    if (!v) return bad("expected a version in \"" + std::string(clause) + "\"");
    if (op == "~>") {
      // ~> 1.2 -> >= 1.2, < 2; ~> 1.2.3 -> >= 1.2.3, < 1.3; ~> 1 -> >= 1.
      vc.clauses_.push_back({Op::kGe, *v});
      if (v->size() >= 2) {
        Version upper(v->begin(), v->end() - 1);
        upper.back()++;
        vc.clauses_.push_back({Op::kLt, std::move(upper)});
      }
    } else {
      Op o = op == ">="   ? Op::kGe
             : op == "<=" ? Op::kLe
             : op == "!=" ? Op::kNe
             : op == ">"  ? Op::kGt
             : op == "<"  ? Op::kLt
                          : Op::kEq;
      vc.clauses_.push_back({o, std::move(*v)});
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return vc;
}

bool VersionConstraint::Matches(std::string_view value) const {
  std::optional<Version> v = ParseVersion(value);
  if (!v) return false;
  for (const Clause& c : clauses_) {
    int cmp = CompareVersions(*v, c.version);
    bool ok = false;
    switch (c.op) {
      case Op::kEq:
        ok = cmp == 0;
        break;
      case Op::kNe:
        ok = cmp != 0;
        break;
      case Op::kGt:
        ok = cmp > 0;
        break;
      case Op::kGe:
        ok = cmp >= 0;
        break;
      case Op::kLt:
        ok = cmp < 0;
        break;
      case Op::kLe:
        ok = cmp <= 0;
        break;
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace berth::scheduler
