#include "router/router.h"

#include <spdlog/spdlog.h>

#include <csignal>
#include <nlohmann/json.hpp>

namespace berth::router {

Result<std::pair<std::string, uint16_t>> ParseListenAddress(std::string_view s) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) {
    return InvalidArgument("listen address \"" + std::string(s) + "\": expected ADDR:PORT");
  }
  std::string addr(s.substr(0, colon));
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') {
    addr = addr.substr(1, addr.size() - 2);
  }
  if (addr.empty()) addr = "0.0.0.0";
  std::string_view port = s.substr(colon + 1);
  int p = 0;
  if (port.empty() || port.size() > 5) return InvalidArgument("listen address: bad port");
  for (char c : port) {
    if (c < '0' || c > '9') return InvalidArgument("listen address: bad port");
    p = p * 10 + (c - '0');
  }
  if (p > 65535) return InvalidArgument("listen address: bad port");
  return std::make_pair(addr, static_cast<uint16_t>(p));
}

Router::Router(RouterOptions options, store::Store& store)
    : options_(std::move(options)),
      store_(store),
      watcher_(store, options_.key_prefix, holder_, options_.default_backend) {}

Router::~Router() {
  Stop();
}

Status Router::Start(std::chrono::milliseconds ready_timeout) {
  for (const auto& r : options_.static_routes) {
    size_t eq = r.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("route \"" + r + "\": expected HOST=URL");
    }
    std::string host = r.substr(0, eq);
    nlohmann::json v = {{"backend", r.substr(eq + 1)}};
    BERTH_RETURN_IF_ERROR(ParseRoute(host + "/static", v.dump()).status());
    auto put = store_.Put(options_.key_prefix + "routes/" + host + "/static", v.dump());
    if (!put.ok()) return put.status().Annotate("writing route " + r);
  }
  watcher_.Start();
  if (!watcher_.WaitReady(ready_timeout)) {
    spdlog::warn("router: no route listing from the store yet; serving an empty table");
  }
  if (!options_.listen.empty()) {
    BERTH_ASSIGN_OR_RETURN(auto addr, ParseListenAddress(options_.listen));
    ProxyOptions o = options_.proxy;
    o.address = addr.first;
    o.port = addr.second;
    o.threads = options_.threads;
    o.tls = nullptr;
    http_ = std::make_unique<HttpProxy>(o, holder_);
    BERTH_RETURN_IF_ERROR(http_->Start());
  }
  if (!options_.tls_listen.empty()) {
    BERTH_ASSIGN_OR_RETURN(auto addr, ParseListenAddress(options_.tls_listen));
    certs_ = std::make_shared<TlsCertificates>();
    cert_watcher_ = std::make_unique<CertWatcher>(store_, options_.key_prefix, certs_);
    cert_watcher_->Start();
    ProxyOptions o = options_.proxy;
    o.address = addr.first;
    o.port = addr.second;
    o.threads = options_.threads;
    o.tls = certs_;
    https_ = std::make_unique<HttpProxy>(o, holder_);
    BERTH_RETURN_IF_ERROR(https_->Start());
  }
  return Status::Ok();
}

void Router::Stop() {
  if (http_) http_->Stop();
  if (https_) https_->Stop();
  if (cert_watcher_) cert_watcher_->Stop();
  watcher_.Stop();
}

uint16_t Router::port() const {
  return http_ ? http_->port() : 0;
}

uint16_t Router::tls_port() const {
  return https_ ? https_->port() : 0;
}

ProxyStats Router::proxy_stats() const {
  ProxyStats s = http_ ? http_->stats() : ProxyStats{};
  if (https_) {
    ProxyStats t = https_->stats();
    s.connections += t.connections;
    s.requests += t.requests;
    s.rejected += t.rejected;
    s.upstream_connects += t.upstream_connects;
    s.upstream_reused += t.upstream_reused;
    s.retries += t.retries;
    s.errors_5xx += t.errors_5xx;
    s.not_found += t.not_found;
  }
  return s;
}

int RunRouter(const RouterOptions& options, store::Store& store) {
  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  Router router(options, store);
  Status st = router.Start();
  if (!st.ok()) {
    spdlog::error("{}", st.message());
    return st.code() == Code::kInvalidArgument ? 2 : 1;
  }
  spdlog::info("berth router up: store {}, {} routes{}{}", store.Describe(),
               router.route_stats().revision > 0 ? "with" : "no",
               router.port() ? ", http on port " + std::to_string(router.port()) : "",
               router.tls_port() ? ", https on port " + std::to_string(router.tls_port()) : "");
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("received {}, finishing in-flight requests", sig == SIGINT ? "SIGINT" : "SIGTERM");
  router.Stop();
  return 0;
}

}  // namespace berth::router
