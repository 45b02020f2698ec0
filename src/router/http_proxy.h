// HttpProxy: the router's HTTP/1.1 reverse proxy.
//
// Threads: `threads` workers, each running its own Asio io_context with its own listening
// socket on the same address (SO_REUSEPORT: the kernel spreads connections over them). A
// connection lives on one worker for its whole life; nothing is shared between workers but
// the route snapshot (one atomic load per request to see whether it changed) and each
// Backend's atomics (dead-until, requests in flight). Each worker keeps its own pool of idle
// keep-alive connections per backend, so a pooled connection is never touched by two threads.
//
// A request: read and parse the head (limits, smuggling shapes → 400/414/431/501/505 and
// close), resolve the route from the current snapshot (404, or the default backend), pick a
// backend (round-robin or least-connections, skipping dead ones), take a pooled connection or
// connect (a connect error or timeout marks the backend dead for `dead_backend_time` and the
// request, which has sent nothing, goes to the next backend), send the head and stream the
// body, read the response head (a pooled connection the backend had closed is replaced once),
// stream the response body, return the connection to the pool. 502: no backend could be
// connected or it answered garbage; 503: every backend is marked dead; 504: the backend timed
// out. 101 Switching Protocols turns the connection into a tunnel (WebSocket).
//
// Buffers are per connection and reused; a request allocates nothing on the proxy's side
// except when a head outgrows the reserved output string. Timeouts are checked by a per-worker
// sweep (a tick of a fraction of the shortest timeout) against each connection's deadline,
// instead of arming a timer per operation.
//
// Stop() is graceful: stop accepting, close idle keep-alive connections, let in-flight
// requests finish (their responses say Connection: close), then after `drain_timeout` close
// what remains (tunnels included).
//
// Thread-safety: Start/Stop from one thread; stats() from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "router/http_parser.h"
#include "router/route_table.h"

namespace berth::router {

class TlsCertificates;

struct ProxyOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see HttpProxy::port())
  int threads = 0;    // 0: one per core
  // HTTPS: when set, connections are TLS and the certificate is chosen by SNI.
  std::shared_ptr<TlsCertificates> tls;
  http::Limits limits;
  std::chrono::milliseconds header_timeout{10000};  // a request's first byte to its whole head
  std::chrono::milliseconds idle_timeout{60000};    // a keep-alive connection between requests
  std::chrono::milliseconds client_timeout{60000};  // each read of a body, each write to a client
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds backend_timeout{60000};  // response head; each read of its body
  std::chrono::milliseconds tunnel_idle_timeout{3600000};
  std::chrono::milliseconds dead_backend_time{5000};
  std::chrono::milliseconds upstream_idle_timeout{30000};  // pooled connection unused
  std::chrono::milliseconds drain_timeout{10000};          // Stop(): in-flight requests
  size_t max_idle_per_backend = 64;                        // per worker
  int max_attempts = 3;    // backends tried for a request that sent nothing yet
  std::string access_log;  // "" none, "-" stdout, else a file appended to
};

struct ProxyStats {
  uint64_t connections = 0;        // accepted
  uint64_t requests = 0;           // heads parsed
  uint64_t rejected = 0;           // malformed requests (4xx from the parser)
  uint64_t upstream_connects = 0;  // new backend connections
  uint64_t upstream_reused = 0;    // requests sent on a pooled connection
  uint64_t retries = 0;            // attempts after a failed connect or a stale pooled one
  uint64_t errors_5xx = 0;         // 502/503/504 made by the router
  uint64_t not_found = 0;          // 404: no route
};

class HttpProxy {
 public:
  HttpProxy(ProxyOptions options, const RouteTableHolder& routes);
  ~HttpProxy();
  HttpProxy(const HttpProxy&) = delete;
  HttpProxy& operator=(const HttpProxy&) = delete;

  // Binds (kUnavailable if it cannot) and starts the workers.
  Status Start();
  uint16_t port() const;
  // Graceful: see above. Idempotent.
  void Stop();
  ProxyStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::router
