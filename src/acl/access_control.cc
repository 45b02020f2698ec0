#include "acl/access_control.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

namespace berth::acl {

namespace {

// Request lines come from the network: no control characters reach the log, and not too much.
std::string LogSafe(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 200)) out.push_back(c < 0x20 || c == 0x7f ? '?' : c);
  if (s.size() > 200) out += "...";
  return out;
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The token of "Bearer <token>"; Unauthenticated naming what is wrong with the header.
Result<std::string_view> BearerToken(std::string_view header) {
  header = Trim(header);
  if (header.empty()) {
    return Unauthenticated(
        "no token: this API needs a bearer token (header Authorization: Bearer "
        "ACCESSOR.SECRET; the berth CLI sends BERTH_TOKEN or --token)");
  }
  auto space = header.find(' ');
  if (space == std::string_view::npos || !IEquals(header.substr(0, space), "bearer")) {
    return Unauthenticated("Authorization header: expected \"Bearer ACCESSOR.SECRET\"");
  }
  std::string_view token = Trim(header.substr(space + 1));
  if (token.empty()) return Unauthenticated("Authorization header: the bearer token is empty");
  return token;
}

}  // namespace

std::string RemoteAddress(std::string_view remote) {
  auto colon = remote.rfind(':');
  return std::string(colon == std::string_view::npos ? remote : remote.substr(0, colon));
}

AccessControl::AccessControl(store::Store& store, store::Keys keys, Options options)
    : opts_(std::move(options)),
      tokens_(store, std::move(keys), opts_.clock, opts_.compare),
      limiter_(opts_.clock, opts_.limits) {}

Verdict AccessControl::Check(std::string_view authorization, std::string_view remote,
                             const Permission& permission, std::string_view job,
                             std::string_view what) {
  Verdict v;
  if (permission.need == Need::kNone) {
    v.caller.anonymous = true;
    return v;
  }
  if (!opts_.enforce) {
    v.caller.anonymous = true;
    v.caller.name = "anonymous";
    v.caller.policy = Policy::kAdmin;
    return v;
  }
  const std::string address = RemoteAddress(remote);
  if (Duration wait = limiter_.Blocked(address); wait > Duration::zero()) {
    v.rate_limited = true;
    v.retry_after = std::max<std::chrono::seconds>(std::chrono::seconds(1),
                                                   std::chrono::ceil<std::chrono::seconds>(wait));
    v.status =
        Unauthenticated(fmt::format("too many failed authentications from {}: try again in {} s",
                                    address, v.retry_after.count()));
    LogRefusal(remote, what, "rate-limited after repeated failures");
    return v;
  }
  auto token = BearerToken(authorization);
  Result<Caller> caller =
      token.ok() ? tokens_.Authenticate(*token) : Result<Caller>(token.status());
  if (!caller.ok()) {
    v.status = caller.status();
    if (v.status.code() == Code::kUnauthenticated) {
      limiter_.RecordFailure(address);
      LogRefusal(remote, what, v.status.message());
    }
    return v;
  }
  if (!caller->Has(permission.need)) {
    v.status = PermissionDenied(
        fmt::format("{} may not {}: it needs the {} policy{}", caller->Describe(), LogSafe(what),
                    NeedName(permission.need), permission.need == Need::kAdmin ? "" : " or admin"));
    LogRefusal(remote, what, v.status.message());
    return v;
  }
  if (permission.need == Need::kJobs && !permission.job_param.empty()) {
    if (Status st = caller->MayChangeJob(job); !st.ok()) {
      v.status = st;
      LogRefusal(remote, what, st.message());
      return v;
    }
  }
  v.caller = std::move(*caller);
  return v;
}

void AccessControl::LogRefusal(std::string_view remote, std::string_view what,
                               const std::string& why) {
  int64_t dropped = 0;
  bool log = limiter_.MayLog(&dropped);
  if (dropped > 0) {
    spdlog::warn("acl: {} more refused requests were not logged (log rate limit)", dropped);
  }
  if (log) spdlog::warn("acl: refused {} from {}: {}", LogSafe(what), LogSafe(remote), why);
}

}  // namespace berth::acl
