// The secrets API: sealed values and their recipients (secrets/secret_store.h). The agent
// stores and returns sealed values only: it never sees a plaintext, so none can leak from
// here; `berth secret` seals and opens on the operator's machine.
//
//   GET    /v1/secrets[?prefix=P]     (secrets) every value's path, version, size, writer and
//                                     recipients; never the sealed bytes
//   GET    /v1/secrets/*path          (secrets) {"path", "version", "sealed", "modify_index"}
//   PUT    /v1/secrets/*path          (secrets) {"sealed": base64}: checked (format, path,
//                                     trusted writer, signature) and stored if it seals
//                                     version n+1 over the stored version n (409 otherwise)
//   DELETE /v1/secrets/*path          (secrets) 404 if absent
//   GET    /v1/secret-keys            (read) every recipient: name, kind, public key,
//                                     fingerprint, writer
//   PUT    /v1/secret-keys/:name      (secrets) {"public_key": "berth-pub-v1 ...",
//                                     "writer": bool}: add or replace a recipient
//   DELETE /v1/secret-keys/:name      (secrets) 404 if absent
// Thread-safety: handlers run concurrently; the store is thread-safe.
#pragma once

#include "api/api_service.h"
#include "api/http_server.h"

namespace berth::api {

void RegisterSecretRoutes(HttpServer& server, const ApiContext& ctx);

}  // namespace berth::api
