// HttpServer: a small HTTP/1.1 server for berth's JSON API (Boost.Beast over Asio).
//
// Threading: one Asio io_context run by `io_threads` threads does all socket I/O (one strand per
// connection). Ordinary handlers may block (they call the store), so they run on a separate
// pool of `handler_threads`; the response is posted back to the connection's strand. A
// streaming handler (the event feed, logs) gets a thread of its own for its lifetime and writes
// chunks synchronously; at most `max_streams` run at once.
// Limits: header bytes, body bytes (413), read timeout for a request (slow clients), idle
// keep-alive timeout. Malformed requests get 400 and the connection is closed.
// Stop() is a gate: stop accepting, end streams, finish in-flight handlers, then return.
// Access: every route is registered with the acl::Permission it needs, and before its handler
// runs (on the handler pool or the stream's thread: the check may read the store) the server's
// Authorizer decides, and may answer instead (401, 403, 429, 503). Routes that need nothing
// (Permission::Public) skip it. Start() refuses a server with routes that need a permission
// but no authorizer, and a method and pattern registered twice.
// TLS: with Options::tls set, the server speaks HTTPS only (TLS 1.2 or later); with a client
// CA it also requires and verifies a client certificate signed by it.
// Thread-safety: Route*, SetAuthorizer before Start(); Start/Stop from one thread; handlers run
// concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "acl/policy.h"
#include "common/status.h"

namespace berth::api {

struct HttpRequest {
  std::string method;                                        // "GET"
  std::string path;                                          // percent-decoded, without the query
  std::map<std::string, std::string> query;                  // percent-decoded
  std::map<std::string, std::string> params;                 // from ":name" segments of the route
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;  // "127.0.0.1:53422"
  // Who sent it, as the authorizer found (anonymous on routes that need nothing).
  acl::Caller caller;

  // Returns the first header with that (lower-case) name, or "".
  std::string Header(std::string_view lower_name) const;
  std::string Query(const std::string& name, std::string fallback = "") const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Where a streaming handler writes. The response head (200, chunked) is sent with the first
// Write, so a handler can still answer with Respond() until then. Write returns false once the
// client has gone or the server is stopping; the handler should then return.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // Sends `chunk`; Write("") only sends the head if it has not been sent yet (use it to tell the
  // client the stream is open before the first data) and reports whether the client is there.
  virtual bool Write(std::string_view chunk) = 0;
  // True once a write failed, the client hung up, or the server is stopping.
  virtual bool Closed() const = 0;
  // Answers with a whole response (an error, a redirect) instead of the stream, and closes the
  // connection. Only before the first Write: returns false (and sends nothing) after it.
  virtual bool Respond(HttpResponse response) = 0;
};

// PEM files for HTTPS. The server is plain HTTP when cert_file is empty.
struct TlsFiles {
  std::string cert_file;       // certificate chain, the server's own certificate first
  std::string key_file;        // its private key
  std::string client_ca_file;  // "" = no client certificates; else required, signed by these
  bool enabled() const { return !cert_file.empty(); }
};

class HttpServer {
 public:
  struct Options {
    std::string address = "127.0.0.1";
    uint16_t port = 0;  // 0 = any free port; see port()
    size_t max_body_bytes = 1 << 20;
    uint32_t max_header_bytes = 16 << 10;
    int io_threads = 1;
    int handler_threads = 4;
    int max_streams = 64;
    std::chrono::milliseconds read_timeout{15000};  // to receive one whole request
    std::chrono::milliseconds idle_timeout{60000};  // keep-alive connection with nothing to do
    // An open stream's request is authorized again this often (its token may be revoked).
    std::chrono::milliseconds stream_reauthorize_interval{10000};
    TlsFiles tls;
  };
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using StreamHandler = std::function<void(const HttpRequest&, ChunkSink&)>;
  // Decides whether `req` may run a route that needs `permission`: nullopt to go on (after
  // setting req.caller), or the response to send instead.
  using Authorizer =
      std::function<std::optional<HttpResponse>(HttpRequest& req, const acl::Permission&)>;
  // One registered route, as the route table lists it.
  struct RouteInfo {
    std::string method;
    std::string pattern;  // as registered: "/v1/jobs/:name"
    acl::Permission permission;
    bool stream = false;
  };

  explicit HttpServer(Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Pattern segments starting with ':' capture into HttpRequest::params ("/v1/jobs/:name"); a
  // last segment "*name" captures the rest of the path, one segment or more ("/v1/secrets/*path").
  // `permission` is what a caller needs to run it (acl/policy.h):
  //   server.Route("PUT", "/v1/secret-keys/:name", acl::Permission::Secrets(), handler);
  void Route(std::string method, std::string pattern, acl::Permission permission, Handler handler);
  // The response is sent with `content_type` and chunked transfer encoding.
  void RouteStream(std::string method, std::string pattern, std::string content_type,
                   acl::Permission permission, StreamHandler handler);
  void SetAuthorizer(Authorizer authorizer);
  // Every registered route, in registration order.
  std::vector<RouteInfo> Routes() const;

  // Binds and starts serving. Fails (kUnavailable) if the address cannot be bound,
  // (kInvalidArgument) if the TLS files do not load, (kInternal) if a route that needs a
  // permission has no authorizer to check it or a route is registered twice.
  Status Start();
  uint16_t port() const;
  bool tls() const;
  void Stop();

  struct Impl;  // implementation detail, public only so the .cc's session class can see it

 private:
  std::unique_ptr<Impl> impl_;
};

// A JSON error response: {"error": "<message>", "code": "<code name>"} with the HTTP status
// that matches the code.
HttpResponse ErrorResponse(const Status& status);
HttpResponse ErrorResponse(int http_status, std::string_view message);
int HttpStatusFor(Code code);
// Decodes %XX escapes; `plus_is_space` also turns '+' into ' ' (query strings only).
std::string PercentDecode(std::string_view in, bool plus_is_space = false);

}  // namespace berth::api
