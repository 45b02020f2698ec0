#include "router/route_table.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "router/route_watcher.h"
#include "store/embedded_store.h"

namespace berth::router {
namespace {

const std::string kRoutes = "/berth/routes/";

store::KeyValue Kv(const std::string& host_id, const std::string& json, int64_t rev = 1) {
  store::KeyValue kv;
  kv.key = kRoutes + host_id;
  kv.value = json;
  kv.mod_revision = rev;
  return kv;
}

std::string Route(int port, const std::string& extra = "") {
  return R"({"backend": "http://127.0.0.1:)" + std::to_string(port) + "\"" + extra + "}";
}

// The backend port a request to host/path goes to, or 0 for none (first backend of the group).
int Port(const RouteTable& t, std::string_view raw_host, std::string_view path = "/") {
  char buf[256];
  size_t n = NormalizeHost(raw_host, buf);
  if (n == 0) return -1;
  const RouteGroup* g = t.Match(std::string_view(buf, n), path);
  if (g == nullptr || g->backends.empty()) return 0;
  return g->backends[0]->port;
}

TEST(RouteTableTest, ParsesRoutes) {
  auto r =
      ParseRoute("Example.COM/a1",
                 Route(8080, R"(, "path_prefix": "/api/", "balance": "least_conn", "alloc": "x")"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->host, "example.com");
  EXPECT_EQ(r->id, "a1");
  EXPECT_EQ(r->path_prefix, "/api");
  EXPECT_EQ(r->balance, Balance::kLeastConnections);
  EXPECT_TRUE(ParseRoute("*.example.com/a", Route(1)).ok());
  EXPECT_TRUE(ParseRoute("*/a", Route(1)).ok());
  EXPECT_FALSE(ParseRoute("example.com", Route(1)).ok());
  EXPECT_FALSE(ParseRoute("example.com/a/b", Route(1)).ok());
  EXPECT_FALSE(ParseRoute("exa mple.com/a", Route(1)).ok());
  EXPECT_FALSE(ParseRoute("a.com/a", "not json").ok());
  EXPECT_FALSE(ParseRoute("a.com/a", R"({"backend": 5})").ok());
  EXPECT_FALSE(ParseRoute("a.com/a", R"({"backend": "https://1.2.3.4"})").ok());
  EXPECT_FALSE(ParseRoute("a.com/a", R"({"backend": "http://example.org:80"})").ok());
  EXPECT_FALSE(ParseRoute("a.com/a", Route(1, R"(, "path_prefix": "api")")).ok());
  EXPECT_FALSE(ParseRoute("a.com/a", Route(1, R"(, "balance": "random")")).ok());
}

TEST(RouteTableTest, ParsesBackendUrls) {
  auto a = ParseBackendUrl("http://127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "127.0.0.1:8080");
  a = ParseBackendUrl("HTTP://[::1]:81/");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->address, "[::1]:81");
  EXPECT_EQ(a->ip, "::1");
  a = ParseBackendUrl("localhost");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "127.0.0.1:80");
  EXPECT_FALSE(ParseBackendUrl("http://127.0.0.1:0").ok());
  EXPECT_FALSE(ParseBackendUrl("http://127.0.0.1:99999").ok());
  EXPECT_FALSE(ParseBackendUrl("http://127.0.0.1:80/x").ok());
  EXPECT_FALSE(ParseBackendUrl("http://").ok());
}

TEST(RouteTableTest, NormalizesHosts) {
  char buf[256];
  auto norm = [&](std::string_view h) { return std::string(buf, NormalizeHost(h, buf)); };
  EXPECT_EQ(norm("WWW.Example.com:8080"), "www.example.com");
  EXPECT_EQ(norm("example.com."), "example.com");
  EXPECT_EQ(norm("[::1]:80"), "[::1]");
  EXPECT_EQ(norm(""), "");
  EXPECT_EQ(norm("a:b"), "");
  EXPECT_EQ(norm(std::string(300, 'a')), "");
}

TEST(RouteTableTest, MatchesExactWildcardAndPaths) {
  RouteTableBuilder b(kRoutes);
  store::RangeResult listing;
  listing.revision = 7;
  listing.kvs = {
      Kv("a.example.com/1", Route(1)),
      Kv("a.example.com/2", Route(2, R"(, "path_prefix": "/api")")),
      Kv("a.example.com/3", Route(3, R"(, "path_prefix": "/api/v2")")),
      Kv("*.example.com/1", Route(4)),
      Kv("*.b.example.com/1", Route(5)),
      Kv("only-path.example.com/1", Route(6, R"(, "path_prefix": "/x")")),
      Kv("bad.example.com/1", "{"),
  };
  auto t = b.Reset(listing);
  EXPECT_EQ(t->revision(), 7);
  EXPECT_EQ(t->route_count(), 6u);
  EXPECT_EQ(b.rejected(), 1u);
  EXPECT_EQ(Port(*t, "a.example.com"), 1);
  EXPECT_EQ(Port(*t, "A.Example.COM:443"), 1);
  EXPECT_EQ(Port(*t, "a.example.com", "/api"), 2);
  EXPECT_EQ(Port(*t, "a.example.com", "/api/x"), 2);
  EXPECT_EQ(Port(*t, "a.example.com", "/api?q"), 2);
  EXPECT_EQ(Port(*t, "a.example.com", "/apix"), 1);
  EXPECT_EQ(Port(*t, "a.example.com", "/api/v2/y"), 3);
  EXPECT_EQ(Port(*t, "z.example.com"), 4);
  EXPECT_EQ(Port(*t, "x.y.example.com"), 4);
  EXPECT_EQ(Port(*t, "c.b.example.com"), 5);
  EXPECT_EQ(Port(*t, "example.com"), 0);
  EXPECT_EQ(Port(*t, "other.org"), 0);
  EXPECT_EQ(Port(*t, "bad.example.com"), 4);  // its only route is malformed
  // A host whose prefixes do not match falls through to the wildcard.
  EXPECT_EQ(Port(*t, "only-path.example.com", "/x/1"), 6);
  EXPECT_EQ(Port(*t, "only-path.example.com", "/y"), 4);
}

TEST(RouteTableTest, CatchAllAndDefaultBackend) {
  RouteTableBuilder b(kRoutes, "http://127.0.0.1:9");
  auto t = b.Reset({});
  EXPECT_EQ(Port(*t, "anything.org"), 9);
  store::Event put{store::Event::Type::kPut, Kv("*/x", Route(10), 2)};
  t = b.Apply({put});
  EXPECT_EQ(Port(*t, "anything.org"), 10);
  store::Event del{store::Event::Type::kDelete, Kv("*/x", "", 3)};
  t = b.Apply({del});
  EXPECT_EQ(Port(*t, "anything.org"), 9);
}

TEST(RouteTableTest, IncrementalUpdatesShareUntouchedHostsAndBackendState) {
  RouteTableBuilder b(kRoutes);
  store::RangeResult listing;
  listing.kvs = {Kv("a.com/1", Route(1)), Kv("b.com/1", Route(2))};
  auto t1 = b.Reset(listing);
  char buf[256];
  const RouteGroup* a1 = t1->Match(std::string_view(buf, NormalizeHost("a.com", buf)), "/");
  const RouteGroup* b1 = t1->Match("b.com", "/");
  ASSERT_TRUE(a1 && b1);
  b1->backends[0]->dead_until_ns = 42;

  auto t2 = b.Apply({{store::Event::Type::kPut, Kv("a.com/2", Route(2), 5)}});
  EXPECT_EQ(t2->revision(), 5);
  EXPECT_EQ(t2->route_count(), 3u);
  const RouteGroup* a2 = t2->Match("a.com", "/");
  ASSERT_EQ(a2->backends.size(), 2u);
  EXPECT_EQ(t2->Match("b.com", "/"), b1) << "an untouched host is shared, not copied";
  // The same backend address is the same Backend object (its passive health carries over).
  EXPECT_EQ(a2->backends[1].get(), b1->backends[0].get());
  EXPECT_EQ(a2->backends[1]->dead_until_ns.load(), 42);
  // The old snapshot is unchanged.
  EXPECT_EQ(a1->backends.size(), 1u);
  EXPECT_EQ(t1->route_count(), 2u);

  auto t3 = b.Apply({{store::Event::Type::kDelete, Kv("a.com/1", "", 6)},
                     {store::Event::Type::kDelete, Kv("a.com/2", "", 6)},
                     {store::Event::Type::kPut, Kv("b.com/1", "garbage", 6)}});
  EXPECT_EQ(t3->Match("a.com", "/"), nullptr);
  EXPECT_EQ(t3->Match("b.com", "/"), nullptr) << "a malformed put removes the key's route";
  EXPECT_EQ(t3->route_count(), 0u);
}

TEST(RouteTableTest, HolderReaderSeesNewSnapshots) {
  RouteTableHolder h;
  RouteTableHolder::Reader r(h);
  EXPECT_EQ(r.Current().route_count(), 0u);
  RouteTableBuilder b(kRoutes);
  store::RangeResult listing;
  listing.kvs = {Kv("a.com/1", Route(1))};
  h.Publish(b.Reset(listing));
  EXPECT_EQ(r.Current().route_count(), 1u);
}

bool Eventually(const std::function<bool()>& f) {
  for (int i = 0; i < 1500; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(RouteWatcherTest, FollowsTheStoreAndSurvivesCompaction) {
  auto st = store::EmbeddedStore::Open({});
  ASSERT_TRUE(st.ok());
  store::Store& s = **st;
  ASSERT_TRUE(s.Put(kRoutes + "a.com/1", Route(1)).ok());
  ASSERT_TRUE(s.Put("/berth/jobs/x", "{}").ok());
  RouteTableHolder h;
  store::PrefixWatcher::Options o;
  o.min_backoff = std::chrono::milliseconds(10);
  RouteWatcher w(s, "/berth/", h, "", o);
  w.Start();
  ASSERT_TRUE(w.WaitReady(std::chrono::seconds(10)));
  RouteTableHolder::Reader r(h);
  EXPECT_EQ(Port(r.Current(), "a.com"), 1);

  ASSERT_TRUE(s.Put(kRoutes + "b.com/1", Route(2)).ok());
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "b.com") == 2; }));
  ASSERT_TRUE(s.Delete(kRoutes + "a.com/1").ok());
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "a.com") == 0; }));
  EXPECT_EQ(w.stats().listings, 1u) << "events are applied without listing again";
  EXPECT_GE(w.stats().updates, 2u);

  // A leased route disappears with its lease.
  auto lease = s.GrantLease(std::chrono::seconds(30));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(s.Put(kRoutes + "c.com/1", Route(3), *lease).ok());
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "c.com") == 3; }));
  ASSERT_TRUE(s.RevokeLease(*lease).ok());
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "c.com") == 0; }));
  w.Stop();

  // Stopped: writes and a compaction happen meanwhile; the table keeps serving.
  ASSERT_TRUE(s.Put(kRoutes + "d.com/1", Route(4)).ok());
  EXPECT_EQ(Port(r.Current(), "b.com"), 2);
  EXPECT_EQ(Port(r.Current(), "d.com"), 0);
}

// A store that can be taken down: while down, every call fails and open watches end with an
// error, as when the connection to etcd is lost.
class FlakyStore final : public store::Store {
 public:
  explicit FlakyStore(store::Store& inner) : inner_(inner) {}
  void SetDown(bool down) {
    std::vector<std::shared_ptr<Tap>> taps;
    {
      std::lock_guard lock(mu_);
      down_ = down;
      if (down) taps.swap(taps_);
    }
    for (auto& t : taps) t->Fail();
  }
  Result<std::optional<store::KeyValue>> Get(std::string_view k) override {
    if (down()) return Unavailable("down");
    return inner_.Get(k);
  }
  Result<store::RangeResult> Range(std::string_view p, int64_t limit = 0) override {
    if (down()) return Unavailable("down");
    return inner_.Range(p, limit);
  }
  Result<int64_t> Put(std::string_view k, std::string_view v, store::LeaseId l = 0) override {
    return inner_.Put(k, v, l);
  }
  Result<int64_t> Delete(std::string_view k) override { return inner_.Delete(k); }
  Result<int64_t> DeletePrefix(std::string_view p) override { return inner_.DeletePrefix(p); }
  Result<store::TxnResult> Txn(const std::vector<store::Compare>& c,
                               const std::vector<store::TxnOp>& s,
                               const std::vector<store::TxnOp>& f) override {
    return inner_.Txn(c, s, f);
  }
  Result<store::LeaseId> GrantLease(std::chrono::seconds ttl) override {
    return inner_.GrantLease(ttl);
  }
  Result<std::chrono::seconds> KeepAlive(store::LeaseId l) override { return inner_.KeepAlive(l); }
  Status RevokeLease(store::LeaseId l) override { return inner_.RevokeLease(l); }
  Result<store::WatchPtr> Watch(std::string_view prefix, int64_t rev,
                                store::WatchCallback cb) override {
    // The check and the registration are one step: a watch opened while SetDown(true) runs
    // either fails here or is registered in time to be failed by it (never a live watch that
    // outlasts the outage, which made the outage test flaky).
    auto tap = std::make_shared<Tap>();
    tap->cb = std::move(cb);
    {
      std::lock_guard lock(mu_);
      if (down_) return Unavailable("down");
      taps_.push_back(tap);
    }
    return inner_.Watch(prefix, rev, [tap](const store::WatchResponse& r) { tap->Deliver(r); });
  }
  Status Compact(int64_t rev) override { return inner_.Compact(rev); }
  std::string Describe() const override { return "flaky"; }

 private:
  struct Tap {
    std::mutex mu;
    bool failed = false;
    store::WatchCallback cb;
    void Deliver(const store::WatchResponse& r) {
      std::lock_guard lock(mu);
      if (!failed) cb(r);
    }
    void Fail() {
      std::lock_guard lock(mu);
      if (failed) return;
      failed = true;
      store::WatchResponse r;
      r.status = Unavailable("connection lost");
      cb(r);
    }
  };
  bool down() {
    std::lock_guard lock(mu_);
    return down_;
  }
  store::Store& inner_;
  std::mutex mu_;
  bool down_ = false;                       // guarded by mu_
  std::vector<std::shared_ptr<Tap>> taps_;  // guarded by mu_
};

TEST(RouteWatcherTest, AStoreOutageKeepsTheLastTableAndListsAgainWhenBack) {
  auto st = store::EmbeddedStore::Open({});
  ASSERT_TRUE(st.ok());
  FlakyStore s(**st);
  ASSERT_TRUE(s.Put(kRoutes + "a.com/1", Route(1)).ok());
  RouteTableHolder h;
  store::PrefixWatcher::Options o;
  o.min_backoff = std::chrono::milliseconds(10);
  o.max_backoff = std::chrono::milliseconds(50);
  RouteWatcher w(s, "/berth/", h, "", o);
  w.Start();
  ASSERT_TRUE(w.WaitReady(std::chrono::seconds(10)));
  RouteTableHolder::Reader r(h);
  EXPECT_EQ(Port(r.Current(), "a.com"), 1);

  s.SetDown(true);
  EXPECT_TRUE(Eventually([&] { return w.stats().errors >= 2; }));
  // Changes made meanwhile (and history compacted away) are not seen; the old table serves.
  ASSERT_TRUE(s.Put(kRoutes + "b.com/1", Route(2)).ok());
  auto rev = s.Put(kRoutes + "a.com/1", Route(3));
  ASSERT_TRUE(rev.ok());
  ASSERT_TRUE(s.Compact(*rev).ok());
  EXPECT_EQ(Port(r.Current(), "a.com"), 1);
  EXPECT_EQ(Port(r.Current(), "b.com"), 0);

  s.SetDown(false);
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "b.com") == 2; }));
  EXPECT_EQ(Port(r.Current(), "a.com"), 3);
  EXPECT_GE(w.stats().listings, 2u);
  ASSERT_TRUE(s.Delete(kRoutes + "b.com/1").ok());
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "b.com") == 0; })) << "watching again";
  w.Stop();
}

TEST(RouteWatcherTest, ManyRoutesPropagateQuickly) {
  auto st = store::EmbeddedStore::Open({});
  ASSERT_TRUE(st.ok());
  store::Store& s = **st;
  std::vector<store::TxnOp> ops;
  for (int i = 0; i < 10000; ++i) {
    ops.push_back(store::TxnOp::Put(kRoutes + "h" + std::to_string(i) + ".example.com/1",
                                    Route(1000 + i % 1000)));
  }
  ASSERT_TRUE(s.Txn({}, ops).ok());
  RouteTableHolder h;
  RouteWatcher w(s, "/berth/", h);
  w.Start();
  ASSERT_TRUE(w.WaitReady(std::chrono::seconds(20)));
  RouteTableHolder::Reader r(h);
  EXPECT_EQ(r.Current().route_count(), 10000u);
  ASSERT_TRUE(s.Put(kRoutes + "new.example.com/1", Route(7)).ok());
  EXPECT_TRUE(Eventually([&] { return Port(r.Current(), "new.example.com") == 7; }));
  EXPECT_EQ(r.Current().route_count(), 10001u);
}

}  // namespace
}  // namespace berth::router
