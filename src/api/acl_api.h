// The ACL part of the API, and the bridge from HttpServer's authorizer hook to
// acl::AccessControl:
//
//   POST   /v1/acl/bootstrap            no token; only while acl/bootstrap is absent: the first
//                                       admin token, shown once (201); 409 afterwards
//   GET    /v1/acl/tokens               admin: every token (accessor, name, policy, job_prefix,
//                                       created_at_ms), never a hash or a secret
//   POST   /v1/acl/tokens               admin: {"name": N, "policy": P[, "job_prefix": X]}: a
//                                       new token, its secret shown once (201)
//   DELETE /v1/acl/tokens/:accessor     admin: revoke (404 if absent)
//   GET    /v1/acl/token/self           any valid token: what it is
//
// Refusals are JSON errors: 401 (with WWW-Authenticate: Bearer), 403, 429 (with Retry-After),
// 503 when the store cannot be read to check the token.
// Thread-safety: handlers run concurrently; AccessControl is thread-safe.
#pragma once

#include "acl/access_control.h"
#include "api/http_server.h"

namespace berth::api {

// The authorizer every berth API route goes through (HttpServer::SetAuthorizer).
HttpServer::Authorizer MakeAuthorizer(acl::AccessControlPtr access);

void RegisterAclRoutes(HttpServer& server, acl::AccessControlPtr access);

}  // namespace berth::api
