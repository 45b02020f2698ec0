// Tests of what is specific to EtcdStore: option checking, TLS file errors, fail-over when no
// endpoint answers, and (on the 3-member cluster) watches and keep-alives that survive the
// death of the member they were talking to. The Store semantics are in
// store_conformance_test.cc.
#include "store/etcd_store.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "store_test_util.h"

namespace berth::store {
namespace {

using std::chrono::seconds;
using testing::Eventually;
using testing::UniquePrefix;
using testing::WatchLog;

std::string TestName() {
  return ::testing::UnitTest::GetInstance()->current_test_info()->name();
}

// A loopback port nobody listens on: bound to learn a free one, then closed.
int DeadPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

TEST(EtcdStoreOptionsTest, NeedsAnEndpoint) {
  auto store = OpenEtcdStore(EtcdOptions{});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
}

TEST(EtcdStoreOptionsTest, MissingTlsFilesAreNamed) {
  EtcdOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  options.ca_file = "/nonexistent/berth-ca.pem";
  auto store = OpenEtcdStore(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_NE(store.status().message().find("/nonexistent/berth-ca.pem"), std::string::npos)
      << store.status().ToString();

  // A readable CA, a missing client key.
  std::string ca = ::testing::TempDir() + "/berth-test-ca.pem";
  FILE* f = fopen(ca.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  options.ca_file = ca;
  options.cert_file = ca;
  options.key_file = "/nonexistent/berth-client.key";
  store = OpenEtcdStore(options);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent/berth-client.key"), std::string::npos)
      << store.status().ToString();

  // A client certificate without its key is a mistake, not plaintext.
  options.key_file.clear();
  store = OpenEtcdStore(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
}

// With every endpoint dead, calls fail with kUnavailable naming the endpoints, and do so
// without waiting for the (long) request timeout: nothing is listening, so nothing to wait for.
TEST(EtcdStoreFailoverTest, AllEndpointsDeadIsUnavailablePromptly) {
  EtcdOptions options;
  std::string a = "127.0.0.1:" + std::to_string(DeadPort());
  std::string b = "127.0.0.1:" + std::to_string(DeadPort());
  options.endpoints = {a, b};
  options.request_timeout = std::chrono::milliseconds(120'000);
  auto store = OpenEtcdStore(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();  // connecting is lazy
  EXPECT_EQ((*store)->Describe(), "etcd://" + a + "," + b);

  auto start = std::chrono::steady_clock::now();
  auto get = (*store)->Get("/x");
  ASSERT_FALSE(get.ok());
  EXPECT_EQ(get.status().code(), Code::kUnavailable) << get.status().ToString();
  EXPECT_NE(get.status().message().find(a), std::string::npos) << get.status().ToString();
  EXPECT_NE(get.status().message().find(b), std::string::npos) << get.status().ToString();

  auto put = (*store)->Put("/x", "y");
  EXPECT_EQ(put.status().code(), Code::kUnavailable) << put.status().ToString();
  auto txn = (*store)->Txn({Compare::Absent("/x")}, {TxnOp::Put("/x", "y")});
  EXPECT_EQ(txn.status().code(), Code::kUnavailable) << txn.status().ToString();
  auto lease = (*store)->GrantLease(seconds(10));
  EXPECT_EQ(lease.status().code(), Code::kUnavailable) << lease.status().ToString();
  auto keep = (*store)->KeepAlive(1);
  EXPECT_EQ(keep.status().code(), Code::kUnavailable) << keep.status().ToString();
  auto watch = (*store)->Watch("/x", 0, [](const WatchResponse&) {});
  EXPECT_EQ(watch.status().code(), Code::kUnavailable) << watch.status().ToString();
  auto watch_from = (*store)->Watch("/x", 5, [](const WatchResponse&) {});
  EXPECT_EQ(watch_from.status().code(), Code::kUnavailable) << watch_from.status().ToString();
  // Far below the 120 s request timeout: a loose bound that only a hang would break.
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(60));
}

// One dead endpoint in front of a live one: calls go through to the live one.
TEST(EtcdStoreFailoverTest, SkipsADeadEndpoint) {
  std::string live = testing::EnvOr("BERTH_TEST_ETCD");
  ASSERT_FALSE(live.empty())
      << "$BERTH_TEST_ETCD is unset: run through scripts/test.sh (starts etcd)";
  EtcdOptions options;
  options.endpoints = {"127.0.0.1:" + std::to_string(DeadPort()), live};
  auto store = OpenEtcdStore(options);
  ASSERT_TRUE(store.ok());
  std::string key = UniquePrefix(TestName()) + "k";
  for (int i = 0; i < 3; ++i) {
    auto put = (*store)->Put(key, std::to_string(i));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
  }
  WatchLog log;
  auto watch = (*store)->Watch(key, 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE((*store)->Put(key, "w").ok());
  ASSERT_TRUE(log.WaitForEvents(1));
}

// A real etcd serving TLS and requiring client certificates, with a CA, server and client
// certificate made by the openssl tool: the store connects with the client certificate, and
// without it (or without TLS) it cannot.
class EtcdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-etcd-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // EC keys are quick to make; etcd (Go) and gRPC both accept them.
    const std::string make_certs =
        "set -e; cd " + dir_ +
        "; K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'"
        "; openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=berth-test-ca"
        "; openssl req $K -keyout server.key -out server.csr -subj /CN=127.0.0.1"
        "; printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext"
        "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out server.pem -days 2 -extfile server.ext"
        "; openssl req $K -keyout client.key -out client.csr -subj /CN=berth-client"
        "; printf 'extendedKeyUsage=clientAuth\n' > client.ext"
        "; openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out client.pem -days 2 -extfile client.ext";
    ASSERT_EQ(std::system(("(" + make_certs + ") >" + dir_ + "/openssl.log 2>&1").c_str()), 0)
        << "openssl failed; see " << dir_ << "/openssl.log";
    client_port_ = DeadPort();
    int peer_port = DeadPort();
    const std::string client_url = "https://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port);
    const std::string start =
        "setsid /usr/bin/etcd --name tls --data-dir " + dir_ + "/data --listen-client-urls " +
        client_url + " --advertise-client-urls " + client_url + " --listen-peer-urls " + peer_url +
        " --initial-advertise-peer-urls " + peer_url + " --initial-cluster tls=" + peer_url +
        " --cert-file " + dir_ + "/server.pem --key-file " + dir_ + "/server.key" +
        " --trusted-ca-file " + dir_ + "/ca.pem --client-cert-auth" +
        " --heartbeat-interval=50 --election-timeout=500 </dev/null >" + dir_ +
        "/etcd.log 2>&1 & echo $! >" + dir_ + "/etcd.pid";
    ASSERT_EQ(std::system(start.c_str()), 0);
  }

  void TearDown() override {
    if (dir_.empty()) return;
    std::string stop =
        "p=$(cat " + dir_ + "/etcd.pid 2>/dev/null) && kill -9 $p 2>/dev/null; " +
        (HasFailure() ? std::string("true") : "rm -rf " + dir_);  // on failure, keep the logs
    (void)std::system(stop.c_str());
  }

  EtcdOptions Options(bool client_cert) const {
    EtcdOptions options;
    options.endpoints = {"127.0.0.1:" + std::to_string(client_port_)};
    options.ca_file = dir_ + "/ca.pem";
    if (client_cert) {
      options.cert_file = dir_ + "/client.pem";
      options.key_file = dir_ + "/client.key";
    }
    options.request_timeout = std::chrono::milliseconds(3000);
    return options;
  }

  std::string dir_;
  int client_port_ = 0;
};

TEST_F(EtcdTlsTest, ConnectsWithClientCertificate) {
  auto store = OpenEtcdStore(Options(true));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_NE((*store)->Describe().find("(TLS)"), std::string::npos);
  // etcd takes a moment to start: poll until it answers.
  ASSERT_TRUE(Eventually([&] { return (*store)->Put("/tls/k", "v").ok(); }))
      << "etcd with TLS never answered; see " << dir_ << "/etcd.log";
  auto kv = (*store)->Get("/tls/k");
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  ASSERT_TRUE(kv->has_value());
  EXPECT_EQ((*kv)->value, "v");
  WatchLog log;
  auto watch = (*store)->Watch("/tls/", 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE((*store)->Put("/tls/w", "x").ok());
  ASSERT_TRUE(log.WaitForKey("/tls/w"));

  // The same server refuses a client without a certificate, and one without TLS.
  auto anonymous = OpenEtcdStore(Options(false));
  ASSERT_TRUE(anonymous.ok());
  auto get = (*anonymous)->Get("/tls/k");
  EXPECT_FALSE(get.ok());
  EtcdOptions plain = Options(false);
  plain.ca_file.clear();
  auto plaintext = OpenEtcdStore(plain);
  ASSERT_TRUE(plaintext.ok());
  EXPECT_FALSE((*plaintext)->Get("/tls/k").ok());
}

// The 3-member cluster loses the member the client (and its watch) talks to, while a writer
// keeps writing and a keep-alive loop keeps a lease. The watch must deliver exactly the history
// (checked against a replay from the same start revision), and every keep-alive must succeed.
// Members are killed and restarted through $BERTH_TEST_ETCD_CTL (scripts/etcd-test-cluster.sh).
class EtcdClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoints_ = testing::EnvOr("BERTH_TEST_ETCD_CLUSTER");
    ctl_ = testing::EnvOr("BERTH_TEST_ETCD_CTL");
    ASSERT_FALSE(endpoints_.empty() || ctl_.empty())
        << "$BERTH_TEST_ETCD_CLUSTER / $BERTH_TEST_ETCD_CTL are unset: run through "
           "scripts/test.sh (starts etcd)";
  }
  void TearDown() override {
    if (killed_ >= 0) Ctl("start-member", killed_);  // leave the cluster whole for others
  }

  bool Ctl(const std::string& command, int member) {
    std::string cmd = ctl_ + " " + command + " " + std::to_string(member);
    bool ok = std::system(cmd.c_str()) == 0;
    if (command == "kill-member") killed_ = member;
    if (command == "start-member" && ok) killed_ = -1;
    return ok;
  }

  void WriteThrough(int writes, const std::function<void(int)>& disrupt);

  StorePtr Open() {
    EtcdOptions options;
    options.endpoints = testing::SplitComma(endpoints_);
    options.request_timeout = std::chrono::milliseconds(10'000);
    auto store = OpenEtcdStore(options);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  std::string endpoints_;
  std::string ctl_;
  int killed_ = -1;  // the member this test killed and has not restarted (0 = the single one)
};

// Writes `writes` keys under a lease while a watch and a keep-alive loop run; before write i,
// `disrupt(i)` may kill or restart members. Then checks the watch against a replay.
void EtcdClusterTest::WriteThrough(int writes, const std::function<void(int)>& disrupt) {
  StorePtr store = Open();
  ASSERT_NE(store, nullptr);
  const std::string prefix = UniquePrefix(TestName());

  auto lease = store->GrantLease(seconds(10));
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  auto start = store->Put(prefix + "start", "0", *lease);
  ASSERT_TRUE(start.ok()) << start.status().ToString();

  WatchLog log;
  auto watch = store->Watch(prefix, *start, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();

  // Keep-alives every 200 ms until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<int> keepalive_ok{0};
  std::atomic<int> keepalive_ok_after_kill{0};
  std::atomic<bool> killed{false};
  std::mutex errors_mu;
  std::vector<std::string> keepalive_errors;
  // Stops the keep-alive loop however the test ends (an ASSERT returns early).
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  };
  std::thread keeper;
  Joiner joiner{stop, keeper};
  keeper = std::thread([&] {
    while (!stop.load()) {
      auto ttl = store->KeepAlive(*lease);
      if (ttl.ok()) {
        keepalive_ok.fetch_add(1);
        if (killed.load()) keepalive_ok_after_kill.fetch_add(1);
      } else {
        std::lock_guard lock(errors_mu);
        keepalive_errors.push_back(ttl.status().ToString());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });

  // Writes are at-most-once: one in flight when the member dies may fail (it may or may not
  // have been applied), and is then written again. The history replay below is the judge.
  std::vector<int64_t> acknowledged;
  int write_errors = 0;
  // A second writer runs flat out, so that some write is in flight when a member dies. Its
  // failed writes (fate unknown) are simply not counted as acknowledged.
  std::atomic<bool> stop_background{false};
  std::atomic<int> background_errors{0};
  std::mutex background_mu;
  std::vector<int64_t> background_acknowledged;  // guarded by background_mu
  std::thread background;
  Joiner background_joiner{stop_background, background};
  background = std::thread([&] {
    for (int n = 0; !stop_background.load(); ++n) {
      auto put = store->Put(prefix + "bg", std::to_string(n), *lease);
      if (put.ok()) {
        std::lock_guard lock(background_mu);
        background_acknowledged.push_back(*put);
      } else {
        background_errors.fetch_add(1);
      }
    }
  });
  for (int i = 0; i < writes; ++i) {
    disrupt(i);
    if (::testing::Test::HasFatalFailure()) return;
    if (killed_ >= 0) killed = true;
    std::string key = prefix + "k" + std::to_string(i % 7);
    for (int attempt = 0;; ++attempt) {
      auto put = store->Put(key, std::to_string(i), *lease);
      if (put.ok()) {
        acknowledged.push_back(*put);
        break;
      }
      ++write_errors;
      ASSERT_LT(attempt, 20) << put.status().ToString();
    }
  }
  stop_background = true;
  background.join();
  {
    std::lock_guard lock(background_mu);
    acknowledged.insert(acknowledged.end(), background_acknowledged.begin(),
                        background_acknowledged.end());
  }
  auto end = store->Put(prefix + "end", "done");
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  ASSERT_TRUE(log.WaitForKey(prefix + "end"));
  ASSERT_TRUE(Eventually([&] { return keepalive_ok_after_kill.load() >= 3; }));
  stop = true;
  keeper.join();

  // The authoritative history, replayed by a fresh watch on the surviving members.
  WatchLog replay;
  auto replay_watch = store->Watch(prefix, *start, replay.Callback());
  ASSERT_TRUE(replay_watch.ok()) << replay_watch.status().ToString();
  ASSERT_TRUE(replay.WaitForKey(prefix + "end"));
  replay_watch->reset();
  watch->reset();

  auto live = log.events();
  auto truth = replay.events();
  ASSERT_EQ(live.size(), truth.size());
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_EQ(live[i].kv.key, truth[i].kv.key) << i;
    EXPECT_EQ(live[i].kv.mod_revision, truth[i].kv.mod_revision) << i;
    EXPECT_EQ(live[i].kv.value, truth[i].kv.value) << i;
    EXPECT_EQ(live[i].type, truth[i].type) << i;
    if (i > 0) {
      EXPECT_GT(live[i].kv.mod_revision, live[i - 1].kv.mod_revision) << i;
    }
  }
  std::set<int64_t> delivered;
  for (const Event& e : live) delivered.insert(e.kv.mod_revision);
  for (int64_t rev : acknowledged) EXPECT_TRUE(delivered.count(rev)) << "lost revision " << rev;
  EXPECT_TRUE(log.finals().empty());
  EXPECT_FALSE(log.overlapped());

  {
    std::lock_guard lock(errors_mu);
    EXPECT_TRUE(keepalive_errors.empty()) << keepalive_errors.front();
  }
  EXPECT_GT(keepalive_ok.load(), 0);
  auto ttl = store->KeepAlive(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status().ToString();
  EXPECT_EQ(ttl->count(), 10);
  ::testing::Test::RecordProperty("write_errors", write_errors);
  ::testing::Test::RecordProperty("background_write_errors", background_errors.load());

  // A dead member comes back and catches up.
  if (killed_ >= 0) {
    int member = killed_;
    ASSERT_TRUE(Ctl("start-member", member));
    EtcdOptions only_member;
    only_member.endpoints = {testing::SplitComma(endpoints_).at(static_cast<size_t>(member - 1))};
    auto restarted = OpenEtcdStore(only_member);
    ASSERT_TRUE(restarted.ok());
    ASSERT_TRUE(Eventually([&] {
      auto kv = (*restarted)->Get(prefix + "end");
      return kv.ok() && kv->has_value();
    }));
  }
  EXPECT_TRUE(store->RevokeLease(*lease).ok());
}

// Member 1 is the first endpoint: the store, its watch and its keep-alives talk to it.
TEST_F(EtcdClusterTest, WatchAndKeepAliveSurviveMemberDeath) {
  WriteThrough(60, [&](int i) {
    if (i == 20) {
      ASSERT_TRUE(Ctl("kill-member", 1));
    }
  });
}

// Each member dies in turn (so the leader dies too), each time the one the client has just
// failed over to; the previous one is restarted first so the cluster keeps its quorum.
TEST_F(EtcdClusterTest, SurvivesEachMemberDyingInTurn) {
  WriteThrough(120, [&](int i) {
    if (i == 15) {
      ASSERT_TRUE(Ctl("kill-member", 1));
    }
    if (i == 35) {
      ASSERT_TRUE(Ctl("start-member", 1));
    }
    if (i == 45) {
      ASSERT_TRUE(Ctl("kill-member", 2));
    }
    if (i == 65) {
      ASSERT_TRUE(Ctl("start-member", 2));
    }
    if (i == 75) {
      ASSERT_TRUE(Ctl("kill-member", 3));
    }
  });
}

// The single member dies and comes back on its data: the same store (its one channel
// reconnects) and the same watch carry on, the watch without losing or repeating an event.
TEST_F(EtcdClusterTest, SingleMemberRestartResumesWatchAndCalls) {
  std::string endpoint = testing::EnvOr("BERTH_TEST_ETCD");
  ASSERT_FALSE(endpoint.empty()) << "$BERTH_TEST_ETCD is unset: run through scripts/test.sh";
  EtcdOptions options;
  options.endpoints = {endpoint};
  auto store = OpenEtcdStore(options);
  ASSERT_TRUE(store.ok());
  const std::string prefix = UniquePrefix(TestName());
  auto start = (*store)->Put(prefix + "a", "before");
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  WatchLog log;
  auto watch = (*store)->Watch(prefix, *start, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE(log.WaitForEvents(1));

  ASSERT_TRUE(Ctl("kill-member", 0));
  auto down = (*store)->Get(prefix + "a");
  EXPECT_EQ(down.status().code(), Code::kUnavailable) << down.status().ToString();
  ASSERT_TRUE(Ctl("start-member", 0));

  // The store's own channel must find the member again (no new store).
  ASSERT_TRUE(Eventually([&] { return (*store)->Put(prefix + "b", "after").ok(); }));
  ASSERT_TRUE((*store)->Put(prefix + "c", "end").ok());
  ASSERT_TRUE(log.WaitForKey(prefix + "c"));

  WatchLog replay;
  auto replay_watch = (*store)->Watch(prefix, *start, replay.Callback());
  ASSERT_TRUE(replay_watch.ok());
  ASSERT_TRUE(replay.WaitForKey(prefix + "c"));
  auto live = log.events();
  auto truth = replay.events();
  ASSERT_EQ(live.size(), truth.size());
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_EQ(live[i].kv.key, truth[i].kv.key) << i;
    EXPECT_EQ(live[i].kv.mod_revision, truth[i].kv.mod_revision) << i;
  }
  EXPECT_TRUE(log.finals().empty());
}

}  // namespace
}  // namespace berth::store
