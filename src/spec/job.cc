#include "spec/job.h"

#include <array>
#include <utility>

namespace berth::spec {
namespace {

// One table per enum keeps the spelling and its parse in one place.
template <typename E, size_t N>
using NameTable = std::array<std::pair<E, std::string_view>, N>;

constexpr NameTable<JobType, 3> kJobTypes{{
    {JobType::kService, "service"},
    {JobType::kBatch, "batch"},
    {JobType::kSystem, "system"},
}};
constexpr NameTable<DriverKind, 2> kDrivers{{
    {DriverKind::kDocker, "docker"},
    {DriverKind::kProcess, "process"},
}};
constexpr NameTable<ConstraintOperator, 8> kOperators{{
    {ConstraintOperator::kEqual, "=="},
    {ConstraintOperator::kNotEqual, "!="},
    {ConstraintOperator::kRegexp, "regexp"},
    {ConstraintOperator::kSetContains, "set_contains"},
    {ConstraintOperator::kVersion, "version"},
    {ConstraintOperator::kIsSet, "is_set"},
    {ConstraintOperator::kIsNotSet, "is_not_set"},
    {ConstraintOperator::kDistinctHosts, "distinct_hosts"},
}};
constexpr NameTable<RestartMode, 2> kRestartModes{{
    {RestartMode::kDelay, "delay"},
    {RestartMode::kFail, "fail"},
}};
constexpr NameTable<HealthCheckType, 3> kHealthTypes{{
    {HealthCheckType::kHttp, "http"},
    {HealthCheckType::kTcp, "tcp"},
    {HealthCheckType::kCommand, "command"},
}};

template <typename E, size_t N>
std::string_view NameOf(const NameTable<E, N>& table, E value) {
  for (const auto& [e, name] : table) {
    if (e == value) return name;
  }
  return "?";
}

template <typename E, size_t N>
std::optional<E> FromName(const NameTable<E, N>& table, std::string_view s) {
  for (const auto& [e, name] : table) {
    if (name == s) return e;
  }
  return std::nullopt;
}

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// Reads a run of digits starting at s[*pos] into *out; false if none or above `limit`.
bool ReadDigits(std::string_view s, size_t* pos, int64_t limit, int64_t* out) {
  size_t start = *pos;
  int64_t v = 0;
  while (*pos < s.size() && IsDigit(s[*pos])) {
    v = v * 10 + (s[*pos] - '0');
    if (v > limit) return false;
    ++*pos;
  }
  *out = v;
  return *pos > start;
}

constexpr int64_t kMsPerHour = 3'600'000;
constexpr int64_t kMaxDurationMs = 100'000 * kMsPerHour;
constexpr int64_t kMaxSizeBytes = 1LL << 50;

}  // namespace

std::string_view JobTypeName(JobType t) {
  return NameOf(kJobTypes, t);
}
std::string_view DriverKindName(DriverKind d) {
  return NameOf(kDrivers, d);
}
std::string_view ConstraintOperatorName(ConstraintOperator op) {
  return NameOf(kOperators, op);
}
std::string_view RestartModeName(RestartMode m) {
  return NameOf(kRestartModes, m);
}
std::string_view HealthCheckTypeName(HealthCheckType t) {
  return NameOf(kHealthTypes, t);
}
std::optional<JobType> JobTypeFromName(std::string_view s) {
  return FromName(kJobTypes, s);
}
std::optional<DriverKind> DriverKindFromName(std::string_view s) {
  return FromName(kDrivers, s);
}
std::optional<ConstraintOperator> ConstraintOperatorFromName(std::string_view s) {
  return FromName(kOperators, s);
}
std::optional<RestartMode> RestartModeFromName(std::string_view s) {
  return FromName(kRestartModes, s);
}
std::optional<HealthCheckType> HealthCheckTypeFromName(std::string_view s) {
  return FromName(kHealthTypes, s);
}

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s) {
  if (s == "0") return std::chrono::milliseconds(0);
  if (s.empty()) return std::nullopt;
  int64_t total = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    int64_t n = 0;
    if (!ReadDigits(s, &pos, kMaxDurationMs, &n)) return std::nullopt;
    int64_t unit_ms = 0;
    if (s.substr(pos, 2) == "ms") {
      unit_ms = 1;
      pos += 2;
    } else if (pos < s.size() && s[pos] == 's') {
      unit_ms = 1000;
      ++pos;
    } else if (pos < s.size() && s[pos] == 'm') {
      unit_ms = 60'000;
      ++pos;
    } else if (pos < s.size() && s[pos] == 'h') {
      unit_ms = kMsPerHour;
      ++pos;
    } else {
      return std::nullopt;
    }
    // n <= kMaxDurationMs and unit_ms <= kMsPerHour keep the product far below INT64_MAX.
    total += n * unit_ms;
    if (total > kMaxDurationMs) return std::nullopt;
  }
  return std::chrono::milliseconds(total);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms % kMsPerHour == 0) return std::to_string(ms / kMsPerHour) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::optional<int64_t> ParseSize(std::string_view s) {
  size_t pos = 0;
  int64_t n = 0;
  if (!ReadDigits(s, &pos, kMaxSizeBytes, &n)) return std::nullopt;
  std::string_view unit = s.substr(pos);
  int shift = 0;
  if (unit.empty() || unit == "MiB") {
    shift = 20;
  } else if (unit == "B") {
    shift = 0;
  } else if (unit == "KiB") {
    shift = 10;
  } else if (unit == "GiB") {
    shift = 30;
  } else if (unit == "TiB") {
    shift = 40;
  } else {
    return std::nullopt;
  }
  if (n > (kMaxSizeBytes >> shift)) return std::nullopt;
  return n << shift;
}

std::string FormatSize(int64_t bytes) {
  if (bytes != 0) {
    constexpr std::array<std::pair<int, std::string_view>, 4> kUnits{{
        {40, "TiB"},
        {30, "GiB"},
        {20, "MiB"},
        {10, "KiB"},
    }};
    for (const auto& [shift, unit] : kUnits) {
      int64_t mask = (int64_t{1} << shift) - 1;
      if ((bytes & mask) == 0) return std::to_string(bytes >> shift) + std::string(unit);
    }
  }
  return std::to_string(bytes) + "B";
}

bool IsValidName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alnum = (c >= 'a' && c <= 'z') || IsDigit(c);
    if (!alnum && !(c == '-' && i > 0)) return false;
  }
  return true;
}

namespace {
bool IsSecretNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '.' || c == '_' ||
         c == '-';
}
}  // namespace

bool IsValidSecretFileName(std::string_view s) {
  if (s.empty() || s.size() > 255 || s == "." || s == "..") return false;
  for (char c : s) {
    if (!IsSecretNameChar(c)) return false;
  }
  return true;
}

bool IsValidSecretPath(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    std::string_view segment =
        s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!IsValidSecretFileName(segment)) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

std::string SecretRef::Target() const {
  return file.empty() ? "env " + env : "file " + file;
}

const Port* Task::FindPort(std::string_view port_name) const {
  for (const Port& p : ports) {
    if (p.name == port_name) return &p;
  }
  return nullptr;
}

}  // namespace berth::spec
