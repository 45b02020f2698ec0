// Router propagation and churn benchmark (run by bench/router_vs_nginx.sh).
//
// In one process: a memory: store, a RouteWatcher and an HttpProxy, two test backends (A, B).
//  1. Propagation: with --routes routes in the table, --changes times: point one host's route
//     at the other backend (a store Put) and poll that host over a keep-alive connection
//     until the new backend answers; the time from the Put call to that answer.
//  2. Churn: --load-connections keep-alive clients send GETs to one host for --churn-seconds
//     while a writer makes --churn-rate route changes per second (that host's route swings
//     between the backends — a new key added before the old one is deleted — and other hosts'
//     routes are rewritten); every answer that is not a 200 from a backend is a failure.
// Prints one "key value" line per figure.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "router/http_proxy.h"
#include "router/route_watcher.h"
#include "router/test_http.h"
#include "store/embedded_store.h"

using namespace berth;
using namespace berth::router;
using SteadyClock = std::chrono::steady_clock;

namespace {

long Flag(int argc, char** argv, const std::string& name, long def) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--" + name + "=", 0) == 0) return std::atol(a.c_str() + name.size() + 3);
  }
  return def;
}

std::string Route(uint16_t port) {
  return R"({"backend": "http://127.0.0.1:)" + std::to_string(port) + "\"}";
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const long routes = Flag(argc, argv, "routes", 10000);
  const long changes = Flag(argc, argv, "changes", 1000);
  const long churn_seconds = Flag(argc, argv, "churn-seconds", 30);
  const long churn_rate = Flag(argc, argv, "churn-rate", 100);
  const long load_connections = Flag(argc, argv, "load-connections", 4);
  const long threads = Flag(argc, argv, "threads", 1);

  auto opened = store::EmbeddedStore::Open({});
  if (!opened.ok()) return 1;
  store::Store& s = **opened;
  testing::TestBackend a("A"), b("B");
  const std::string prefix = "/berth/routes/";
  std::vector<store::TxnOp> ops;
  for (long i = 0; i < routes; ++i) {
    ops.push_back(
        store::TxnOp::Put(prefix + "h" + std::to_string(i) + ".bench/r", Route(a.port())));
    if (ops.size() == 1000) {
      if (!s.Txn({}, ops).ok()) return 1;
      ops.clear();
    }
  }
  if (!ops.empty() && !s.Txn({}, ops).ok()) return 1;
  RouteTableHolder holder;
  RouteWatcher watcher(s, "/berth/", holder);
  watcher.Start();
  if (!watcher.WaitReady(std::chrono::seconds(30))) return 1;
  ProxyOptions po;
  po.threads = static_cast<int>(threads);
  HttpProxy proxy(po, holder);
  if (!proxy.Start().ok()) return 1;

  // 1. Propagation.
  {
    testing::TestClient c(proxy.port());
    std::vector<double> ms;
    std::vector<int> polls;
    std::vector<double> put_ms;
    for (long i = 0; i < changes; ++i) {
      std::string host = "h" + std::to_string((i * 7919) % routes) + ".bench";
      // Make sure the host answers from its current backend first.
      std::string head;
      c.Get(host, "/", nullptr, &head);
      std::string now_on = testing::FieldOf(head, "X-Backend");
      bool to_b = now_on != "B";
      auto t0 = SteadyClock::now();
      if (!s.Put(prefix + host + "/r", Route(to_b ? b.port() : a.port())).ok()) return 1;
      put_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
      int n = 0;
      while (true) {
        ++n;
        head.clear();
        if (c.Get(host, "/", nullptr, &head) != 200) {
          std::fprintf(stderr, "unexpected status for %s\n", host.c_str());
          return 1;
        }
        if (testing::FieldOf(head, "X-Backend") == (to_b ? "B" : "A")) break;
        if (SteadyClock::now() - t0 > std::chrono::seconds(10)) {
          std::fprintf(stderr, "route change not served after 10 s\n");
          return 1;
        }
      }
      ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
      polls.push_back(n);
    }
    std::printf("routes %ld\n", static_cast<long>(holder.Get()->route_count()));
    std::printf("changes %ld\n", changes);
    std::printf("propagation_p50_ms %.3f\n", Pct(ms, 50));
    std::printf("propagation_p99_ms %.3f\n", Pct(ms, 99));
    std::printf("propagation_max_ms %.3f\n", Pct(ms, 100));
    std::printf("store_put_p50_ms %.3f\n", Pct(put_ms, 50));
    std::printf("store_put_p99_ms %.3f\n", Pct(put_ms, 99));
  }

  // 2. Churn under load.
  if (churn_seconds > 0) {
    const std::string host = "load.bench";
    if (!s.Put(prefix + host + "/0", Route(a.port())).ok()) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::atomic<bool> stop{false};
    std::atomic<long> ok{0}, failed{0};
    std::vector<std::thread> clients;
    for (long i = 0; i < load_connections; ++i) {
      clients.emplace_back([&] {
        auto c = std::make_unique<testing::TestClient>(proxy.port());
        while (!stop) {
          std::string head;
          int st = c->Get(host, "/", nullptr, &head);
          std::string be = testing::FieldOf(head, "X-Backend");
          if (st == 200 && (be == "A" || be == "B")) {
            ++ok;
          } else {
            ++failed;
            c = std::make_unique<testing::TestClient>(proxy.port());
          }
        }
      });
    }
    long writes = 0;
    auto start = SteadyClock::now();
    auto period = std::chrono::nanoseconds(1'000'000'000 / std::max(1L, churn_rate));
    long gen = 0;
    while (SteadyClock::now() - start < std::chrono::seconds(churn_seconds)) {
      auto next = start + period * (writes + 1);
      if (writes % 2 == 0) {
        // The load host moves: the new route is added, then the old one removed.
        ++gen;
        if (!s.Put(prefix + host + "/" + std::to_string(gen), Route(gen % 2 ? b.port() : a.port()))
                 .ok() ||
            !s.Delete(prefix + host + "/" + std::to_string(gen - 1)).ok()) {
          return 1;
        }
      } else {
        std::string other = "h" + std::to_string(writes % routes) + ".bench";
        if (!s.Put(prefix + other + "/r", Route(writes % 4 == 1 ? b.port() : a.port())).ok()) {
          return 1;
        }
      }
      ++writes;
      std::this_thread::sleep_until(next);
    }
    double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
    stop = true;
    for (auto& t : clients) t.join();
    std::printf("churn_seconds %.1f\n", secs);
    std::printf("churn_changes_per_s %.1f\n", static_cast<double>(writes) / secs);
    std::printf("churn_requests %ld\n", ok.load() + failed.load());
    std::printf("churn_failed %ld\n", failed.load());
  }
  proxy.Stop();
  watcher.Stop();
  return 0;
}
