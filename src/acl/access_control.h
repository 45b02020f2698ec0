// AccessControl: decides, for every API request, whether it may run its route. It reads the
// bearer token (Authorization: Bearer <accessor>.<secret>), checks it against the store
// (TokenStore: one Get per request, so revocation is immediate), and compares the token's
// policy with the route's Permission:
//   no token, a malformed, unknown or revoked one, a wrong secret     401
//   a valid token whose policy lacks what the route needs               403
//   an address with too many recent 401s (FailureLimiter)               429, Retry-After
//   the store cannot be read                                            503
// Failures are logged with the remote address and the token's accessor when it parses, never
// the secret; the log lines are rate-limited too. Routes that need nothing (the health probe,
// bootstrap) read no token at all. With `enforce` false (dev mode without --acl) every request
// is let in as the anonymous caller with the admin policy.
// Thread-safety: Check may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "acl/failure_limiter.h"
#include "acl/policy.h"
#include "acl/token_store.h"
#include "common/clock.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::acl {

struct Verdict {
  Status status;  // ok: allowed; kUnauthenticated, kPermissionDenied, kUnavailable otherwise
  Caller caller;  // when allowed
  bool rate_limited = false;  // 429: refused before the token was looked at
  std::chrono::seconds retry_after{0};
  bool allowed() const { return status.ok() && !rate_limited; }
};

class AccessControl {
 public:
  struct Options {
    bool enforce = true;
    FailureLimiter::Options limits{};
    ClockPtr clock{};                               // nullptr: the system clock
    TokenStore::HashCompare compare = HashesEqual;  // a test may count the comparisons
  };

  AccessControl(store::Store& store, store::Keys keys, Options options);

  // `authorization` is the Authorization header ("" when absent), `remote` the peer
  // ("ADDRESS:PORT"), `job` the job the request changes when the route names it in its path
  // (Permission::job_param), `what` the request line for the log ("DELETE /v1/jobs/web").
  Verdict Check(std::string_view authorization, std::string_view remote,
                const Permission& permission, std::string_view job, std::string_view what);

  bool enforcing() const { return opts_.enforce; }
  TokenStore& tokens() { return tokens_; }

 private:
  void LogRefusal(std::string_view remote, std::string_view what, const std::string& why);

  Options opts_;
  TokenStore tokens_;
  FailureLimiter limiter_;
};
using AccessControlPtr = std::shared_ptr<AccessControl>;

// The address part of "ADDRESS:PORT" ("::1:5000" -> "::1").
std::string RemoteAddress(std::string_view remote);

}  // namespace berth::acl
