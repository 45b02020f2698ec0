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
// Thread-safety: Route* before Start(); Start/Stop from one thread; handlers run concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
  };
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using StreamHandler = std::function<void(const HttpRequest&, ChunkSink&)>;

  explicit HttpServer(Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Pattern segments starting with ':' capture into HttpRequest::params ("/v1/jobs/:name").
  void Route(std::string method, std::string pattern, Handler handler);
  // The response is sent with `content_type` and chunked transfer encoding.
  void RouteStream(std::string method, std::string pattern, std::string content_type,
                   StreamHandler handler);

  // Binds and starts serving. Fails (kUnavailable) if the address cannot be bound.
  Status Start();
  uint16_t port() const;
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
