// Router: everything `berth router` (or `berth agent --router`) runs, over a store the caller
// owns: a RouteWatcher keeping the route table current, an HttpProxy serving HTTP, and, with
// `tls_listen`, a CertWatcher and a second HttpProxy terminating HTTPS with SNI.
//
// Thread-safety: Start/Stop from one thread; the rest is internally synchronized.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "router/http_proxy.h"
#include "router/route_table.h"
#include "router/route_watcher.h"
#include "router/tls_certificates.h"
#include "store/store.h"

namespace berth::router {

struct RouterOptions {
  std::string key_prefix = "/berth/";
  std::string listen = "127.0.0.1:8080";  // ADDR:PORT, "" = no plain HTTP listener
  std::string tls_listen;                 // ADDR:PORT, "" = no HTTPS
  int threads = 0;                        // per listener; 0 = one per core
  std::string default_backend;            // URL for hosts without a route; "" = 404
  // Routes written to the store at start ("host=http://ip:port"), e.g. for a memory: store.
  std::vector<std::string> static_routes;
  ProxyOptions proxy;  // limits, timeouts, access log (address, port, threads, tls are set here)
};

// "127.0.0.1:8080", "[::1]:80", ":8080" (all addresses) → address and port.
Result<std::pair<std::string, uint16_t>> ParseListenAddress(std::string_view s);

class Router {
 public:
  Router(RouterOptions options, store::Store& store);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Writes the static routes, starts the watchers, waits (up to `ready_timeout`) for the first
  // route listing, binds the listeners. With the store down, it serves an empty table (404s)
  // until the store answers.
  Status Start(std::chrono::milliseconds ready_timeout = std::chrono::seconds(5));
  void Stop();  // graceful: see HttpProxy::Stop

  uint16_t port() const;      // the HTTP listener's port (0 if none)
  uint16_t tls_port() const;  // the HTTPS listener's port (0 if none)
  RouteWatcher::Stats route_stats() const { return watcher_.stats(); }
  ProxyStats proxy_stats() const;

 private:
  RouterOptions options_;
  store::Store& store_;
  RouteTableHolder holder_;
  RouteWatcher watcher_;
  std::shared_ptr<TlsCertificates> certs_;
  std::unique_ptr<CertWatcher> cert_watcher_;
  std::unique_ptr<HttpProxy> http_;
  std::unique_ptr<HttpProxy> https_;
};

// Runs a router until SIGINT or SIGTERM, then stops it gracefully. Returns the exit code.
int RunRouter(const RouterOptions& options, store::Store& store);

}  // namespace berth::router
