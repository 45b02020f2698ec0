// TokenStore: API tokens in the store (acl/tokens/<accessor>, acl/bootstrap): bootstrap the
// first admin token once, make, list and revoke tokens, and check a presented token.
//
// A token is checked with one Get of its record per request, not through a watched cache: a
// revoked token stops working on every agent at the next request, and there is no cache to
// go stale while the store is away (the API needs the store for everything else anyway). The
// cost is one read per request on a path that is not hot (the router never checks tokens).
// Thread-safety: every method may be called from any thread (the Store is thread-safe).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "acl/token.h"
#include "common/clock.h"
#include "store/keys.h"
#include "store/store.h"

namespace berth::acl {

class TokenStore {
 public:
  // How two hashes are compared; HashesEqual (constant time) unless a test counts the calls.
  using HashCompare = std::function<bool(const TokenHash&, const TokenHash&)>;

  TokenStore(store::Store& store, store::Keys keys, ClockPtr clock,
             HashCompare compare = HashesEqual);

  // Makes the first admin token, once: a transaction creates acl/bootstrap and the token
  // together if acl/bootstrap is absent. FailedPrecondition (409) afterwards, naming the key to
  // delete to bootstrap again.
  Result<NewToken> Bootstrap();
  // InvalidArgument for a bad name or prefix, or a prefix on a policy other than jobs.
  Result<NewToken> Create(const std::string& name, Policy policy, const std::string& job_prefix);
  // Every token record, by accessor. A record that does not parse is skipped (and logged).
  Result<std::vector<TokenRecord>> List();
  // Deletes the token's record (NotFound if there is none); the token stops working at once.
  Result<TokenRecord> Revoke(const std::string& accessor);
  // Whether acl/bootstrap exists.
  Result<bool> Bootstrapped();

  // Checks "<accessor>.<secret>": the caller it stands for, Unauthenticated when it is
  // malformed, unknown, revoked or its secret is wrong (the message never holds the secret),
  // Unavailable when the store cannot be read.
  Result<Caller> Authenticate(std::string_view token);

 private:
  store::Store& store_;
  store::Keys keys_;
  ClockPtr clock_;
  HashCompare compare_;
};

}  // namespace berth::acl
