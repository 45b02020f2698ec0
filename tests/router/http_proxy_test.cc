#include "router/http_proxy.h"

#include <gtest/gtest.h>

#include <functional>
#include <future>

#include "router/route_watcher.h"
#include "store/embedded_store.h"
#include "test_http.h"

namespace berth::router {
namespace {

using testing::DeadPort;
using testing::FieldOf;
using testing::StatusOf;
using testing::TestBackend;
using testing::TestClient;

bool WaitFor(const std::function<bool()>& f) {
  for (int i = 0; i < 1000; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Routes given as {"host/id", json} pairs, published straight to a holder (no store).
class Routes {
 public:
  void Set(std::vector<std::pair<std::string, std::string>> routes) {
    store::RangeResult listing;
    for (auto& [k, v] : routes) {
      store::KeyValue kv;
      kv.key = "/berth/routes/" + k;
      kv.value = v;
      listing.kvs.push_back(kv);
    }
    holder.Publish(builder->Reset(listing));
  }
  RouteTableHolder holder;
  std::unique_ptr<RouteTableBuilder> builder =
      std::make_unique<RouteTableBuilder>("/berth/routes/");
};

std::string To(const TestBackend& b, const std::string& extra = "") {
  return R"({"backend": ")" + b.url() + "\"" + extra + "}";
}
std::string ToPort(uint16_t port) {
  return R"({"backend": "http://127.0.0.1:)" + std::to_string(port) + "\"}";
}

class HttpProxyTest : public ::testing::Test {
 protected:
  void StartProxy(ProxyOptions o = {}) {
    if (o.threads == 0) o.threads = 2;
    proxy_ = std::make_unique<HttpProxy>(o, routes_.holder);
    Status st = proxy_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void TearDown() override {
    if (proxy_) proxy_->Stop();
  }
  uint16_t port() const { return proxy_->port(); }

  Routes routes_;
  std::unique_ptr<HttpProxy> proxy_;
};

TEST_F(HttpProxyTest, KeepAliveBothSidesAndForwardedHeaders) {
  TestBackend b("b1");
  routes_.Set({{"app.example.com/1", To(b)}});
  ProxyOptions o;
  o.threads = 1;
  StartProxy(o);
  TestClient c(port());
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 20; ++i) {
    std::string body, head;
    ASSERT_EQ(c.Get("App.Example.com:8080", "/x?i=" + std::to_string(i), &body, &head), 200);
    EXPECT_EQ(FieldOf(head, "X-Backend"), "b1");
    EXPECT_EQ(FieldOf(head, "Connection"), "");
    EXPECT_NE(body.find("GET /x?i=" + std::to_string(i) + " HTTP/1.1"), std::string::npos);
  }
  EXPECT_EQ(b.connections(), 1) << "one pooled backend connection served every request";
  EXPECT_EQ(proxy_->stats().upstream_connects, 1u);
  EXPECT_EQ(proxy_->stats().upstream_reused, 19u);

  ASSERT_TRUE(
      c.Send("GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 10.1.1.1\r\n"
             "X-Forwarded-Proto: https\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
             "Keep-Alive: timeout=5\r\n\r\n"));
  std::string echoed;
  ASSERT_EQ(c.Read(&echoed), 200);
  EXPECT_EQ(FieldOf(echoed, "X-Forwarded-For"), "10.1.1.1, 127.0.0.1");
  EXPECT_EQ(FieldOf(echoed, "X-Forwarded-Proto"), "http");
  EXPECT_EQ(FieldOf(echoed, "X-Forwarded-Host"), "app.example.com");
  EXPECT_EQ(FieldOf(echoed, "Host"), "app.example.com");
  EXPECT_EQ(FieldOf(echoed, "X-Hop"), "");
  EXPECT_EQ(FieldOf(echoed, "Keep-Alive"), "");
  EXPECT_EQ(FieldOf(echoed, "Connection"), "");

  // Pipelined requests are answered in order.
  ASSERT_TRUE(
      c.Send("GET /p1 HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
             "GET /p2 HTTP/1.1\r\nHost: app.example.com\r\n\r\n"));
  std::string b1, b2;
  ASSERT_EQ(c.Read(&b1), 200);
  ASSERT_EQ(c.Read(&b2), 200);
  EXPECT_NE(b1.find("GET /p1 "), std::string::npos);
  EXPECT_NE(b2.find("GET /p2 "), std::string::npos);
}

TEST_F(HttpProxyTest, AStalePooledConnectionIsReplacedWithoutFailingTheRequest) {
  TestBackend b("b1");
  routes_.Set({{"a.test/1", To(b)}});
  ProxyOptions o;
  o.threads = 1;
  StartProxy(o);
  TestClient c(port());
  std::string body;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(c.Get("a.test", "/drop", &body), 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the backend's close lands
    ASSERT_EQ(c.Get("a.test", "/", &body), 200) << i;
    ASSERT_TRUE(c.Send("POST /sum HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nab"));
    ASSERT_EQ(c.Read(&body), 200);
    EXPECT_EQ(body, "2 195");
  }
  EXPECT_GE(proxy_->stats().retries, 3u);
}

TEST_F(HttpProxyTest, ChunkedBothWays) {
  TestBackend b("b1");
  routes_.Set({{"a.test/1", To(b)}});
  StartProxy();
  TestClient c(port());
  std::string body, head;
  ASSERT_EQ(c.Get("a.test", "/chunked", &body, &head), 200);
  EXPECT_EQ(body, "hello world");
  EXPECT_EQ(FieldOf(head, "Transfer-Encoding"), "chunked");

  std::string sent;
  std::string req = "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 50; ++i) {
    std::string part(static_cast<size_t>(100 + i * 37), static_cast<char>('a' + i % 26));
    char size[16];
    std::snprintf(size, sizeof(size), "%zX", part.size());
    req += std::string(size) + (i % 2 ? ";ext=1" : "") + "\r\n" + part + "\r\n";
    sent += part;
  }
  req += "0\r\nX-Trailer: yes\r\n\r\n";
  // Sent in small pieces, so chunk lines straddle reads.
  for (size_t i = 0; i < req.size(); i += 777) {
    ASSERT_TRUE(c.Send(std::string_view(req).substr(i, 777)));
  }
  ASSERT_EQ(c.Read(&body, &head), 200);
  EXPECT_EQ(FieldOf(head, "Transfer-Encoding"), "chunked");
  EXPECT_EQ(body, sent);
  // The connection is still good.
  EXPECT_EQ(c.Get("a.test", "/"), 200);

  // An HTTP/1.0 client gets the chunked response decoded, and the connection closed.
  TestClient old(port());
  ASSERT_TRUE(old.Send("GET /chunked HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n"));
  ASSERT_EQ(old.Read(&body, &head), 200);
  EXPECT_EQ(body, "hello world");
  EXPECT_EQ(FieldOf(head, "Transfer-Encoding"), "");
  EXPECT_TRUE(old.Closed());
}

TEST_F(HttpProxyTest, LargeBodiesAreStreamed) {
  TestBackend b("b1");
  routes_.Set({{"a.test/1", To(b)}});
  StartProxy();
  TestClient c(port());
  const size_t kSize = 16 << 20;
  std::string big(kSize, 'x');
  for (size_t i = 0; i < kSize; i += 4096) big[i] = static_cast<char>(i / 4096 % 251);
  uint64_t sum = 0;
  for (unsigned char ch : big) sum += ch;
  std::thread sender([&] {
    c.Send("POST /sum HTTP/1.1\r\nHost: a.test\r\nContent-Length: " + std::to_string(kSize) +
           "\r\n\r\n");
    c.Send(big);
  });
  std::string body;
  EXPECT_EQ(c.Read(&body), 200);
  sender.join();
  EXPECT_EQ(body, std::to_string(kSize) + " " + std::to_string(sum));
  ASSERT_EQ(c.Get("a.test", "/big?n=" + std::to_string(kSize), &body), 200);
  EXPECT_EQ(body.size(), kSize);
  EXPECT_EQ(b.connections(), 1);

  // Expect: 100-continue is answered by the router.
  ASSERT_TRUE(
      c.Send("POST /sum HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n"
             "Expect: 100-continue\r\n\r\n"));
  std::string head;
  ASSERT_EQ(c.Read(nullptr, &head), 100);
  ASSERT_TRUE(c.Send("abc"));
  ASSERT_EQ(c.Read(&body), 200);
  EXPECT_EQ(body, "3 294");
}

TEST_F(HttpProxyTest, WebSocketIsTunnelled) {
  TestBackend b("b1");
  routes_.Set({{"ws.test/1", To(b)}});
  StartProxy();
  TestClient c(port());
  ASSERT_TRUE(
      c.Send("GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\n"
             "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  std::string head;
  ASSERT_EQ(c.Read(nullptr, &head), 101);
  EXPECT_EQ(FieldOf(head, "Upgrade"), "websocket");
  for (int i = 0; i < 10; ++i) {
    std::string msg =
        "frame " + std::to_string(i) + std::string(static_cast<size_t>(i * 1000), 'z');
    ASSERT_TRUE(c.Send(msg));
    std::string got;
    char tmp[65536];
    while (got.size() < msg.size()) {
      ssize_t n = ::recv(c.fd(), tmp, sizeof(tmp), 0);
      ASSERT_GT(n, 0);
      got.append(tmp, static_cast<size_t>(n));
    }
    EXPECT_EQ(got, msg);
  }
}

TEST_F(HttpProxyTest, DeadBackendIsSkippedAndTheRequestRetried) {
  TestBackend live("live");
  uint16_t dead = DeadPort();
  routes_.Set({{"a.test/1", ToPort(dead)}, {"a.test/2", To(live)}});
  ProxyOptions o;
  o.threads = 1;
  o.dead_backend_time = std::chrono::seconds(60);
  StartProxy(o);
  TestClient c(port());
  for (int i = 0; i < 10; ++i) {
    std::string head;
    ASSERT_EQ(c.Get("a.test", "/", nullptr, &head), 200) << i;
    EXPECT_EQ(FieldOf(head, "X-Backend"), "live");
  }
  EXPECT_EQ(proxy_->stats().retries, 1u) << "the dead backend was tried once, then skipped";
}

TEST_F(HttpProxyTest, ErrorResponses) {
  TestBackend slow("slow");
  uint16_t dead = DeadPort();
  routes_.Set({{"dead.test/1", ToPort(dead)}, {"slow.test/1", To(slow)}});
  ProxyOptions o;
  o.backend_timeout = std::chrono::milliseconds(600);
  o.dead_backend_time = std::chrono::seconds(60);
  StartProxy(o);
  TestClient c(port());
  std::string body;
  EXPECT_EQ(c.Get("nowhere.test", "/", &body), 404);
  EXPECT_NE(body.find("no route"), std::string::npos);
  EXPECT_EQ(c.Get("dead.test", "/", &body), 502);
  EXPECT_NE(body.find("could not connect"), std::string::npos);
  EXPECT_EQ(c.Get("dead.test", "/", &body), 503) << "marked dead: not even tried";
  EXPECT_EQ(c.Get("slow.test", "/slow?ms=1500", &body), 504);
  TestClient c2(port());
  EXPECT_EQ(c2.Get("slow.test", "/slow?ms=10", &body), 200);
  EXPECT_EQ(body, "slow");
}

TEST_F(HttpProxyTest, DefaultBackendForUnknownHosts) {
  TestBackend b("default");
  routes_.builder = std::make_unique<RouteTableBuilder>("/berth/routes/", b.url());
  routes_.Set({});
  StartProxy();
  TestClient c(port());
  std::string head;
  EXPECT_EQ(c.Get("whatever.org", "/", nullptr, &head), 200);
  EXPECT_EQ(FieldOf(head, "X-Backend"), "default");
}

TEST_F(HttpProxyTest, MalformedRequestsGet400AndTheConnectionCloses) {
  TestBackend b("b1");
  routes_.Set({{"a.test/1", To(b)}});
  ProxyOptions o;
  o.limits.max_request_line = 1024;
  o.limits.max_head_bytes = 4096;
  o.limits.max_headers = 20;
  StartProxy(o);
  struct Case {
    const char* name;
    std::string text;
    int status;
  };
  std::string many;
  for (int i = 0; i < 30; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  const std::vector<Case> cases = {
      {"CL+TE",
       "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n",
       400},
      {"TE+CL",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: "
       "4\r\n\r\n0\r\n\r\n",
       400},
      {"two CL",
       "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
      {"TE obfuscated",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501},
      {"TE space before colon",
       "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\r\n\tb\r\n\r\n", 400},
      {"bare LF", "GET / HTTP/1.1\nHost: a.test\n\n", 400},
      {"bad chunk size",
       "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"chunk size overflow",
       "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: "
       "chunked\r\n\r\nffffffffffffffffff1\r\n",
       400},
      {"request line too long",
       "GET /" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: a.test\r\n\r\n", 414},
      {"head too large",
       "GET / HTTP/1.1\r\nHost: a.test\r\nX: " + std::string(5000, 'a') + "\r\n\r\n", 431},
      {"too many fields", "GET / HTTP/1.1\r\nHost: a.test\r\n" + many + "\r\n", 431},
      {"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {"garbage", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 16), 400},
  };
  for (const auto& tc : cases) {
    TestClient c(port());
    ASSERT_TRUE(c.Send(tc.text)) << tc.name;
    std::string body;
    EXPECT_EQ(c.Read(&body), tc.status) << tc.name << ": " << body;
    EXPECT_TRUE(c.Closed()) << tc.name;
  }
  EXPECT_EQ(b.requests(), 0) << "nothing malformed reached the backend";
}

TEST_F(HttpProxyTest, SlowClientsAreCutOff) {
  TestBackend b("b1");
  routes_.Set({{"a.test/1", To(b)}});
  ProxyOptions o;
  o.header_timeout = std::chrono::milliseconds(300);
  o.idle_timeout = std::chrono::milliseconds(500);
  StartProxy(o);
  // Slowloris: a head that never ends.
  TestClient c(port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: a.test\r\n"));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    c.Send("X-Slow: 1\r\n");
  }
  EXPECT_TRUE(c.Closed(std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // An idle keep-alive connection is closed after idle_timeout.
  TestClient idle(port());
  EXPECT_EQ(idle.Get("a.test", "/"), 200);
  EXPECT_TRUE(idle.Closed(std::chrono::seconds(5)));
}

TEST_F(HttpProxyTest, RouteChangesKeepConnectionsAndRequestsAlive) {
  TestBackend b1("b1"), b2("b2");
  routes_.Set({{"a.test/1", To(b1)}});
  StartProxy();
  TestClient c(port());
  std::string head;
  ASSERT_EQ(c.Get("a.test", "/", nullptr, &head), 200);
  EXPECT_EQ(FieldOf(head, "X-Backend"), "b1");
  // A slow request in flight on another connection while routes change under it.
  auto inflight = std::async(std::launch::async, [&] {
    TestClient s(port());
    std::string body;
    return s.Get("a.test", "/slow?ms=500", &body);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  routes_.Set({{"a.test/1", To(b2)}, {"b.test/1", To(b1)}});
  ASSERT_EQ(c.Get("a.test", "/", nullptr, &head), 200);
  EXPECT_EQ(FieldOf(head, "X-Backend"), "b2") << "the same connection follows the new route";
  ASSERT_EQ(c.Get("b.test", "/", nullptr, &head), 200);
  EXPECT_EQ(FieldOf(head, "X-Backend"), "b1");
  routes_.Set({});
  EXPECT_EQ(c.Get("a.test", "/"), 404);
  routes_.Set({{"a.test/1", To(b1)}});
  EXPECT_EQ(c.Get("a.test", "/"), 200);
  EXPECT_EQ(inflight.get(), 200);
}

TEST_F(HttpProxyTest, WildcardsAndPathsThroughTheProxy) {
  TestBackend web("web"), api("api"), any("any");
  routes_.Set({{"*.example.com/1", To(web)},
               {"shop.example.com/1", To(api, R"(, "path_prefix": "/api")")},
               {"*/1", To(any)}});
  StartProxy();
  TestClient c(port());
  std::string head;
  auto backend = [&](const std::string& host, const std::string& path) {
    head.clear();
    c.Get(host, path, nullptr, &head);
    return FieldOf(head, "X-Backend");
  };
  EXPECT_EQ(backend("shop.example.com", "/api/cart"), "api");
  EXPECT_EQ(backend("shop.example.com", "/index.html"), "web");
  EXPECT_EQ(backend("blog.EXAMPLE.com", "/"), "web");
  EXPECT_EQ(backend("other.org", "/"), "any");
  // The absolute-form target's host wins over the Host field.
  ASSERT_TRUE(c.Send("GET http://shop.example.com/api/x HTTP/1.1\r\nHost: other.org\r\n\r\n"));
  std::string body;
  ASSERT_EQ(c.Read(&body, &head), 200);
  EXPECT_EQ(FieldOf(head, "X-Backend"), "api");
  EXPECT_NE(body.find("GET /api/x HTTP/1.1"), std::string::npos);
}

TEST_F(HttpProxyTest, LeastConnectionsPrefersTheIdleBackend) {
  TestBackend b1("b1"), b2("b2");
  routes_.Set({{"a.test/1", To(b1, R"(, "balance": "least_conn")")}, {"a.test/2", To(b2)}});
  StartProxy();
  // Hold a slow request on one backend; every other request goes to the other.
  auto slow = std::async(std::launch::async, [&] {
    TestClient s(port());
    std::string head;
    s.Get("a.test", "/slow?ms=800", nullptr, &head);
    return FieldOf(head, "X-Backend");
  });
  ASSERT_TRUE(WaitFor([&] { return b1.requests() + b2.requests() == 1; }));
  TestClient c(port());
  std::string busy_name = b1.requests() == 1 ? "b1" : "b2";
  for (int i = 0; i < 6; ++i) {
    std::string head;
    ASSERT_EQ(c.Get("a.test", "/", nullptr, &head), 200);
    EXPECT_NE(FieldOf(head, "X-Backend"), busy_name);
  }
  EXPECT_EQ(slow.get(), busy_name);
}

TEST_F(HttpProxyTest, GracefulStopFinishesInFlightRequests) {
  TestBackend b("b1");
  routes_.Set({{"a.test/1", To(b)}});
  StartProxy();
  TestClient idle(port());
  ASSERT_EQ(idle.Get("a.test", "/"), 200);
  TestClient busy(port());
  ASSERT_TRUE(busy.Send("GET /slow?ms=600 HTTP/1.1\r\nHost: a.test\r\n\r\n"));
  ASSERT_TRUE(WaitFor([&] { return b.requests() == 2; }));  // in flight at the backend
  auto stopped = std::async(std::launch::async, [&] { proxy_->Stop(); });
  EXPECT_TRUE(idle.Closed()) << "an idle keep-alive connection is closed at once";
  std::string head, body;
  EXPECT_EQ(busy.Read(&body, &head), 200) << "the in-flight request completes";
  EXPECT_EQ(body, "slow");
  EXPECT_EQ(FieldOf(head, "Connection"), "close");
  stopped.get();
  EXPECT_LT(testing::Connect(port()), 0) << "no longer accepting";
}

TEST_F(HttpProxyTest, APortInUseIsRefused) {
  StartProxy();
  ProxyOptions o;
  o.port = port();
  HttpProxy second(o, routes_.holder);
  Status st = second.Start();
  EXPECT_EQ(st.code(), Code::kUnavailable) << "SO_REUSEPORT must not share another listener's port";
}

TEST(HttpProxyStoreTest, RoutesWrittenToTheStoreAreServed) {
  auto st = store::EmbeddedStore::Open({});
  ASSERT_TRUE(st.ok());
  store::Store& s = **st;
  TestBackend b("b1");
  RouteTableHolder holder;
  store::PrefixWatcher::Options wo;
  wo.min_backoff = std::chrono::milliseconds(10);
  RouteWatcher watcher(s, "/berth/", holder, "", wo);
  watcher.Start();
  ASSERT_TRUE(watcher.WaitReady(std::chrono::seconds(10)));
  ProxyOptions o;
  o.threads = 2;
  HttpProxy proxy(o, holder);
  ASSERT_TRUE(proxy.Start().ok());
  TestClient c(proxy.port());
  EXPECT_EQ(c.Get("svc.test", "/"), 404);
  ASSERT_TRUE(s.Put("/berth/routes/svc.test/alloc-1", To(b)).ok());
  int status = 0;
  for (int i = 0; i < 500 && status != 200; ++i) {
    status = c.Get("svc.test", "/");
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status, 200);
  ASSERT_TRUE(s.Delete("/berth/routes/svc.test/alloc-1").ok());
  for (int i = 0; i < 500 && status != 404; ++i) {
    status = c.Get("svc.test", "/");
    if (status != 404) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status, 404);
  proxy.Stop();
  watcher.Stop();
}

}  // namespace
}  // namespace berth::router
