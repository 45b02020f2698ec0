#include "router/router_cli.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "router/router.h"
#include "store/store_factory.h"

namespace berth::router {

namespace {

struct Flags {
  RouterOptions options;
  std::string store_url;
  store::StoreTls tls;
  int header_timeout_ms = 10000;
  int idle_timeout_ms = 60000;
  int client_timeout_ms = 60000;
  int connect_timeout_ms = 3000;
  int backend_timeout_ms = 60000;
  int dead_backend_ms = 5000;
  int drain_timeout_ms = 10000;
  size_t max_header_bytes = 16 * 1024;
  size_t max_headers = 100;
};

}  // namespace

void AddRouterCommand(CLI::App& app, int& rc) {
  auto flags = std::make_shared<Flags>();
  Flags& f = *flags;
  auto* cmd = app.add_subcommand(
      "router", "serve HTTP (and HTTPS) for the routes in the store (routes/<host>/<id>)");
  cmd->add_option("--store", f.store_url,
                  "etcd://HOST:PORT[,HOST:PORT...] | embedded:DIR | memory: (with --route)")
      ->required();
  cmd->add_option("--store-cacert", f.tls.ca_file, "CA bundle for etcd TLS");
  cmd->add_option("--store-cert", f.tls.cert_file, "client certificate for etcd");
  cmd->add_option("--store-key", f.tls.key_file, "client key for etcd");
  cmd->add_option("--prefix", f.options.key_prefix, "key prefix in the store")
      ->capture_default_str();
  cmd->add_option("--listen", f.options.listen, "HTTP listen address ADDR:PORT (\"\" = none)")
      ->capture_default_str();
  cmd->add_option("--tls-listen", f.options.tls_listen,
                  "HTTPS listen address ADDR:PORT; certificates from certs/<host>");
  cmd->add_option("--router-threads", f.options.threads, "worker threads (0 = one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--default-backend", f.options.default_backend,
                  "backend URL for hosts without a route (default: 404)");
  cmd->add_option("--route", f.options.static_routes,
                  "HOST=URL: write this route to the store at start (repeatable)");
  cmd->add_option("--access-log", f.options.proxy.access_log, "access log file, - for stdout");
  cmd->add_option("--header-timeout-ms", f.header_timeout_ms, "time to send a request head")
      ->capture_default_str();
  cmd->add_option("--idle-timeout-ms", f.idle_timeout_ms, "idle keep-alive client connections")
      ->capture_default_str();
  cmd->add_option("--client-timeout-ms", f.client_timeout_ms,
                  "each read of a request body, each write to a client")
      ->capture_default_str();
  cmd->add_option("--connect-timeout-ms", f.connect_timeout_ms, "connecting to a backend")
      ->capture_default_str();
  cmd->add_option("--backend-timeout-ms", f.backend_timeout_ms,
                  "waiting for a backend's response head, and each read of its body")
      ->capture_default_str();
  cmd->add_option("--dead-backend-ms", f.dead_backend_ms,
                  "how long a backend that failed to connect is skipped")
      ->capture_default_str();
  cmd->add_option("--drain-timeout-ms", f.drain_timeout_ms,
                  "on SIGTERM, how long in-flight requests may take")
      ->capture_default_str();
  cmd->add_option("--max-header-bytes", f.max_header_bytes, "request head size limit (431)")
      ->capture_default_str();
  cmd->add_option("--max-headers", f.max_headers, "request field count limit (431)")
      ->capture_default_str();
  cmd->callback([flags, &rc] {
    Flags& fl = *flags;
    auto positive = [](int v, const char* name) {
      if (v <= 0) throw CLI::ValidationError(name, "must be positive");
      return std::chrono::milliseconds(v);
    };
    ProxyOptions& p = fl.options.proxy;
    p.header_timeout = positive(fl.header_timeout_ms, "--header-timeout-ms");
    p.idle_timeout = positive(fl.idle_timeout_ms, "--idle-timeout-ms");
    p.client_timeout = positive(fl.client_timeout_ms, "--client-timeout-ms");
    p.connect_timeout = positive(fl.connect_timeout_ms, "--connect-timeout-ms");
    p.backend_timeout = positive(fl.backend_timeout_ms, "--backend-timeout-ms");
    p.dead_backend_time = positive(fl.dead_backend_ms, "--dead-backend-ms");
    p.drain_timeout = positive(fl.drain_timeout_ms, "--drain-timeout-ms");
    p.limits.max_head_bytes = fl.max_header_bytes;
    p.limits.max_headers = fl.max_headers;
    auto store = store::OpenStore(fl.store_url, fl.tls);
    if (!store.ok()) {
      spdlog::error("router: {}", store.status().message());
      rc = 3;
      return;
    }
    rc = RunRouter(fl.options, **store);
  });
}

}  // namespace berth::router
