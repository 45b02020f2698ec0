// The Store conformance suite: one set of tests, run against every backend.
//
//   memory  EmbeddedStore in memory, ManualClock, leases expired by ExpireLeases()
//   sqlite  EmbeddedStore on a file in a temporary directory, same clock
//   etcd    a single-member etcd ($BERTH_TEST_ETCD)
//   etcd3   a 3-member etcd cluster ($BERTH_TEST_ETCD_CLUSTER)
//
// etcd is the reference: where a backend and etcd disagree, the backend is wrong. Every test
// works under its own key prefix, so the etcd clusters need not be emptied between tests.
// Time: embedded backends advance a manual clock; etcd waits for real, and tests poll for the
// expected state with a generous deadline rather than asserting after a fixed sleep.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "common/clock.h"
#include "store/embedded_store.h"
#include "store/etcd_store.h"
#include "store_test_util.h"

namespace berth::store {
namespace {

using std::chrono::seconds;
using testing::Eventually;
using testing::UniquePrefix;
using testing::WatchLog;

// What the suite needs from a backend besides the Store itself.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Store& store() = 0;
  // Lets `d` pass for leases: a manual clock jumps, real time is waited for.
  virtual void AdvanceTime(seconds d) = 0;
};

class EmbeddedBackend final : public Backend {
 public:
  static Result<std::unique_ptr<EmbeddedBackend>> Open(bool on_disk) {
    auto backend = std::unique_ptr<EmbeddedBackend>(new EmbeddedBackend());
    EmbeddedOptions options;
    options.clock = backend->clock_;
    options.expiry_thread = false;
    if (on_disk) {
      std::string tmpl =
          (std::filesystem::temp_directory_path() / "berth-conformance-XXXXXX").string();
      if (mkdtemp(tmpl.data()) == nullptr) return Internal("mkdtemp failed");
      backend->dir_ = tmpl;
      options.path = tmpl + "/store.db";
      options.sync = false;  // durability is tested elsewhere; keep the suite quick
    }
    BERTH_ASSIGN_OR_RETURN(backend->store_, EmbeddedStore::Open(options));
    return backend;
  }
  ~EmbeddedBackend() override {
    store_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  Store& store() override { return *store_; }
  void AdvanceTime(seconds d) override {
    clock_->Advance(d);
    (void)store_->ExpireLeases();
  }

 private:
  EmbeddedBackend() = default;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::string dir_;
  std::unique_ptr<EmbeddedStore> store_;
};

class EtcdBackend final : public Backend {
 public:
  static Result<std::unique_ptr<EtcdBackend>> Open(const std::string& endpoints) {
    EtcdOptions options;
    options.endpoints = testing::SplitComma(endpoints);
    options.request_timeout = std::chrono::milliseconds(10000);
    auto backend = std::unique_ptr<EtcdBackend>(new EtcdBackend());
    BERTH_ASSIGN_OR_RETURN(backend->store_, OpenEtcdStore(options));
    return backend;
  }
  Store& store() override { return *store_; }
  void AdvanceTime(seconds d) override { std::this_thread::sleep_for(d); }

 private:
  EtcdBackend() = default;
  StorePtr store_;
};

class StoreConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& name = GetParam();
    Result<std::unique_ptr<Backend>> backend = Internal("unknown backend " + name);
    if (name == "memory" || name == "sqlite") {
      auto embedded = EmbeddedBackend::Open(name == "sqlite");
      if (embedded.ok()) {
        backend = std::unique_ptr<Backend>(std::move(embedded).value());
      } else {
        backend = embedded.status();
      }
    } else {
      const char* var = name == "etcd" ? "BERTH_TEST_ETCD" : "BERTH_TEST_ETCD_CLUSTER";
      std::string endpoints = testing::EnvOr(var);
      ASSERT_FALSE(endpoints.empty())
          << "$" << var << " is unset: run through scripts/test.sh (starts etcd), or "
          << "scripts/etcd-test-cluster.sh start DIR && . DIR/env";
      auto etcd = EtcdBackend::Open(endpoints);
      if (etcd.ok()) {
        backend = std::unique_ptr<Backend>(std::move(etcd).value());
      } else {
        backend = etcd.status();
      }
    }
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    backend_ = std::move(backend).value();
    prefix_ = UniquePrefix(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  Store& store() { return backend_->store(); }
  std::string Key(const std::string& name) const { return prefix_ + name; }

  int64_t MustPut(const std::string& key, const std::string& value, LeaseId lease = 0) {
    auto rev = store().Put(key, value, lease);
    EXPECT_TRUE(rev.ok()) << rev.status().ToString();
    return rev.value_or(0);
  }
  std::optional<KeyValue> MustGet(const std::string& key) {
    auto kv = store().Get(key);
    EXPECT_TRUE(kv.ok()) << kv.status().ToString();
    return kv.value_or(std::nullopt);
  }
  bool Exists(const std::string& key) { return MustGet(key).has_value(); }

  std::unique_ptr<Backend> backend_;
  std::string prefix_;
};

// ---------------------------------------------------------------------------------------------
// Get, Put, Range, Delete

TEST_P(StoreConformanceTest, GetMissingKey) {
  auto kv = store().Get(Key("missing"));
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  EXPECT_FALSE(kv->has_value());
}

TEST_P(StoreConformanceTest, GetPresentKey) {
  int64_t rev = MustPut(Key("a"), "hello");
  auto kv = MustGet(Key("a"));
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->key, Key("a"));
  EXPECT_EQ(kv->value, "hello");
  EXPECT_EQ(kv->create_revision, rev);
  EXPECT_EQ(kv->mod_revision, rev);
  EXPECT_EQ(kv->version, 1);
  EXPECT_EQ(kv->lease, 0);
}

TEST_P(StoreConformanceTest, BinaryKeysAndValues) {
  std::string key = Key(std::string("bin\0\xff\x01", 6));
  std::string value("\0\x80\xfe zero", 8);
  MustPut(key, value);
  auto kv = MustGet(key);
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->key, key);
  EXPECT_EQ(kv->value, value);
  int64_t rev = MustPut(Key("empty"), "");
  auto empty = MustGet(Key("empty"));
  ASSERT_TRUE(empty.has_value());  // an empty value is still a key
  EXPECT_EQ(empty->value, "");
  EXPECT_EQ(empty->mod_revision, rev);
}

TEST_P(StoreConformanceTest, PutReturnsIncreasingRevisions) {
  int64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    int64_t rev = MustPut(Key("k" + std::to_string(i % 3)), std::to_string(i));
    EXPECT_GT(rev, last);
    last = rev;
  }
  auto range = store().Range(prefix_);
  ASSERT_TRUE(range.ok());
  EXPECT_GE(range->revision, last);
}

TEST_P(StoreConformanceTest, VersionAndRevisionBookkeeping) {
  int64_t r1 = MustPut(Key("k"), "v1");
  int64_t r2 = MustPut(Key("k"), "v2");
  auto kv = MustGet(Key("k"));
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->value, "v2");
  EXPECT_EQ(kv->create_revision, r1);
  EXPECT_EQ(kv->mod_revision, r2);
  EXPECT_EQ(kv->version, 2);

  int64_t r3 = MustPut(Key("k"), "v3");
  kv = MustGet(Key("k"));
  EXPECT_EQ(kv->version, 3);
  EXPECT_EQ(kv->mod_revision, r3);
  EXPECT_EQ(kv->create_revision, r1);

  // Deleting and re-creating starts the key afresh.
  auto deleted = store().Delete(Key("k"));
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  EXPECT_FALSE(Exists(Key("k")));
  int64_t r5 = MustPut(Key("k"), "again");
  kv = MustGet(Key("k"));
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->version, 1);
  EXPECT_EQ(kv->create_revision, r5);
  EXPECT_EQ(kv->mod_revision, r5);
  EXPECT_GT(r5, r3 + 1);  // the delete took a revision of its own
}

TEST_P(StoreConformanceTest, RangeByPrefixInKeyOrder) {
  MustPut(Key("r/c"), "3");
  MustPut(Key("r/a"), "1");
  MustPut(Key("r/b"), "2");
  MustPut(Key("r/aa"), "11");
  // Neighbours that must not show up.
  MustPut(Key("r"), "parent");
  MustPut(Key("r0"), "sibling");
  int64_t last = MustPut(Key("s/a"), "other");

  auto range = store().Range(Key("r/"));
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  std::vector<std::string> keys;
  for (const KeyValue& kv : range->kvs) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{Key("r/a"), Key("r/aa"), Key("r/b"), Key("r/c")}));
  EXPECT_EQ(range->kvs[1].value, "11");
  EXPECT_EQ(range->count, 4);
  EXPECT_FALSE(range->more);
  EXPECT_GE(range->revision, last);

  auto empty = store().Range(Key("nothing/"));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->kvs.empty());
  EXPECT_EQ(empty->count, 0);
  EXPECT_FALSE(empty->more);
  EXPECT_GE(empty->revision, last);
}

TEST_P(StoreConformanceTest, RangeWithLimit) {
  for (const char* k : {"d", "b", "e", "a", "c"}) MustPut(Key(std::string("l/") + k), k);
  auto range = store().Range(Key("l/"), 2);
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, Key("l/a"));
  EXPECT_EQ(range->kvs[1].key, Key("l/b"));
  EXPECT_TRUE(range->more);
  EXPECT_EQ(range->count, 5);

  range = store().Range(Key("l/"), 5);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->kvs.size(), 5u);
  EXPECT_FALSE(range->more);
  EXPECT_EQ(range->count, 5);

  range = store().Range(Key("l/"), 0);  // no limit
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->kvs.size(), 5u);
  EXPECT_FALSE(range->more);
}

TEST_P(StoreConformanceTest, RangeOfEmptyPrefixIsWholeKeyspace) {
  MustPut(Key("x"), "1");
  auto range = store().Range("", 1);
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_EQ(range->kvs.size(), 1u);
  EXPECT_GE(range->count, 1);
  auto all = store().Range("");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(std::any_of(all->kvs.begin(), all->kvs.end(),
                          [&](const KeyValue& kv) { return kv.key == Key("x"); }));
  EXPECT_TRUE(std::is_sorted(all->kvs.begin(), all->kvs.end(),
                             [](const KeyValue& a, const KeyValue& b) { return a.key < b.key; }));
}

TEST_P(StoreConformanceTest, RangeOfPrefixEndingInFF) {
  // PrefixEnd of "...\xff" carries into the byte before it.
  std::string p = Key("ff\xff");
  MustPut(p + "a", "1");
  MustPut(p + "\xff", "2");
  MustPut(Key("fg"), "outside");
  auto range = store().Range(p);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->count, 2);
}

TEST_P(StoreConformanceTest, DeleteKeyAndPrefix) {
  auto none = store().Delete(Key("missing"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);

  MustPut(Key("d/1"), "1");
  MustPut(Key("d/2"), "2");
  MustPut(Key("d/3/x"), "3");
  MustPut(Key("d"), "parent");
  MustPut(Key("e/1"), "other");

  auto one = store().Delete(Key("d/1"));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, 1);
  EXPECT_FALSE(Exists(Key("d/1")));

  auto many = store().DeletePrefix(Key("d/"));
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(*many, 2);
  EXPECT_EQ(store().Range(Key("d/"))->count, 0);
  EXPECT_TRUE(Exists(Key("d")));
  EXPECT_TRUE(Exists(Key("e/1")));

  auto again = store().DeletePrefix(Key("d/"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
}

// ---------------------------------------------------------------------------------------------
// Transactions

TEST_P(StoreConformanceTest, TxnCreateIfAbsent) {
  auto first = store().Txn({Compare::Absent(Key("k"))}, {TxnOp::Put(Key("k"), "mine")},
                           {TxnOp::Put(Key("lost"), "1")});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->succeeded);
  EXPECT_EQ(MustGet(Key("k"))->mod_revision, first->revision);

  auto second = store().Txn({Compare::Absent(Key("k"))}, {TxnOp::Put(Key("k"), "theirs")},
                            {TxnOp::Put(Key("lost"), "1")});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->succeeded);
  EXPECT_EQ(MustGet(Key("k"))->value, "mine");
  EXPECT_EQ(MustGet(Key("lost"))->mod_revision, second->revision);
  EXPECT_TRUE(store().Txn({Compare::Present(Key("k"))}, {})->succeeded);
}

// Every target with every operator, against a lower, equal and higher operand: the success
// branch must run exactly when the comparison holds, the failure branch otherwise.
TEST_P(StoreConformanceTest, TxnCompareEveryTargetAndOperator) {
  int64_t create = MustPut(Key("k"), "m");
  int64_t mod = MustPut(Key("k"), "m");  // version 2, create != mod
  ASSERT_GT(mod, create);

  struct Target {
    Compare::Target target;
    int64_t actual;
  };
  const Target targets[] = {{Compare::Target::kVersion, 2},
                            {Compare::Target::kCreateRevision, create},
                            {Compare::Target::kModRevision, mod},
                            {Compare::Target::kValue, 0}};
  const Compare::Op ops[] = {Compare::Op::kEqual, Compare::Op::kNotEqual, Compare::Op::kLess,
                             Compare::Op::kGreater};
  auto expected = [](Compare::Op op, int cmp) {  // cmp: actual <=> operand
    switch (op) {
      case Compare::Op::kEqual:
        return cmp == 0;
      case Compare::Op::kNotEqual:
        return cmp != 0;
      case Compare::Op::kLess:
        return cmp < 0;
      case Compare::Op::kGreater:
        return cmp > 0;
    }
    return false;
  };
  int n = 0;
  for (const Target& t : targets) {
    for (Compare::Op op : ops) {
      for (int delta : {-1, 0, 1}) {  // operand = actual + delta, so actual <=> operand = -delta
        Compare c;
        c.key = Key("k");
        c.target = t.target;
        c.op = op;
        if (t.target == Compare::Target::kValue) {
          c.value = delta < 0 ? "l" : delta == 0 ? "m" : "n";
        } else {
          c.number = t.actual + delta;
        }
        std::string branch = Key("branch" + std::to_string(n++));
        auto txn =
            store().Txn({c}, {TxnOp::Put(branch, "success")}, {TxnOp::Put(branch, "failure")});
        ASSERT_TRUE(txn.ok()) << txn.status().ToString();
        bool want = expected(op, -delta);
        EXPECT_EQ(txn->succeeded, want) << "target " << static_cast<int>(t.target) << " op "
                                        << static_cast<int>(op) << " delta " << delta;
        auto kv = MustGet(branch);
        ASSERT_TRUE(kv.has_value());
        EXPECT_EQ(kv->value, want ? "success" : "failure");
        EXPECT_EQ(kv->mod_revision, txn->revision);
      }
    }
  }
}

TEST_P(StoreConformanceTest, TxnCompareOnMissingKey) {
  // A missing key has version, create and mod revision 0...
  EXPECT_TRUE(store().Txn({Compare::VersionEquals(Key("none"), 0)}, {})->succeeded);
  EXPECT_TRUE(store().Txn({Compare::ModRevisionEquals(Key("none"), 0)}, {})->succeeded);
  Compare create{Key("none"), Compare::Target::kCreateRevision, Compare::Op::kEqual, {}, 0};
  EXPECT_TRUE(store().Txn({create}, {})->succeeded);
  // ...but no value: as in etcd, a value comparison on a missing key never holds.
  EXPECT_FALSE(store().Txn({Compare::ValueEquals(Key("none"), "")}, {})->succeeded);
  Compare not_equal{Key("none"), Compare::Target::kValue, Compare::Op::kNotEqual, "x", 0};
  EXPECT_FALSE(store().Txn({not_equal}, {})->succeeded);
}

TEST_P(StoreConformanceTest, TxnAllComparesMustHold) {
  MustPut(Key("a"), "1");
  MustPut(Key("b"), "2");
  auto both =
      store().Txn({Compare::ValueEquals(Key("a"), "1"), Compare::ValueEquals(Key("b"), "2")},
                  {TxnOp::Put(Key("ok"), "yes")});
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->succeeded);
  auto one = store().Txn({Compare::ValueEquals(Key("a"), "1"), Compare::ValueEquals(Key("b"), "3")},
                         {TxnOp::Put(Key("bad"), "yes")});
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE(one->succeeded);
  EXPECT_FALSE(Exists(Key("bad")));
}

TEST_P(StoreConformanceTest, TxnOpsApplyAtomicallyAsOneRevision) {
  MustPut(Key("gone"), "x");
  MustPut(Key("dir/1"), "x");
  MustPut(Key("dir/2"), "x");
  WatchLog log;
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();

  auto txn = store().Txn({}, {TxnOp::Put(Key("a"), "1"), TxnOp::Put(Key("b"), "2"),
                              TxnOp::Delete(Key("gone")), TxnOp::DeletePrefix(Key("dir/"))});
  ASSERT_TRUE(txn.ok()) << txn.status().ToString();
  EXPECT_TRUE(txn->succeeded);
  EXPECT_EQ(MustGet(Key("a"))->mod_revision, txn->revision);
  EXPECT_EQ(MustGet(Key("b"))->mod_revision, txn->revision);
  EXPECT_FALSE(Exists(Key("gone")));
  EXPECT_EQ(store().Range(Key("dir/"))->count, 0);

  ASSERT_TRUE(log.WaitForEvents(5));
  auto events = log.events();
  ASSERT_EQ(events.size(), 5u);
  std::set<std::string> deleted;
  for (const Event& e : events) {
    EXPECT_EQ(e.kv.mod_revision, txn->revision) << e.kv.key;
    if (e.type == Event::Type::kDelete) deleted.insert(e.kv.key);
  }
  EXPECT_EQ(deleted, (std::set<std::string>{Key("gone"), Key("dir/1"), Key("dir/2")}));

  // A transaction that fails its compares and has no failure ops writes nothing.
  auto before = store().Range(prefix_);
  auto noop = store().Txn({Compare::Absent(Key("a"))}, {TxnOp::Put(Key("c"), "3")});
  ASSERT_TRUE(noop.ok());
  EXPECT_FALSE(noop->succeeded);
  EXPECT_FALSE(Exists(Key("c")));
  EXPECT_EQ(store().Range(prefix_)->count, before->count);
}

TEST_P(StoreConformanceTest, CompareAndSwapRaceHasOneWinner) {
  for (int round = 0; round < 10; ++round) {
    std::string key = Key("cas" + std::to_string(round));
    int64_t rev = MustPut(key, "start");
    std::atomic<int> ready{0};
    std::atomic<int> wins{0};
    std::atomic<int> errors{0};
    auto contender = [&](const std::string& name) {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      auto txn = store().Txn({Compare::ModRevisionEquals(key, rev)}, {TxnOp::Put(key, name)});
      if (!txn.ok()) {
        errors.fetch_add(1);
      } else if (txn->succeeded) {
        wins.fetch_add(1);
      }
    };
    std::thread a(contender, "a");
    std::thread b(contender, "b");
    a.join();
    b.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(wins.load(), 1) << "round " << round;
    auto kv = MustGet(key);
    ASSERT_TRUE(kv.has_value());
    EXPECT_EQ(kv->version, 2);
    EXPECT_TRUE(kv->value == "a" || kv->value == "b");
  }
}

// ---------------------------------------------------------------------------------------------
// Leases

TEST_P(StoreConformanceTest, LeaseKeysCarryTheLease) {
  auto lease = store().GrantLease(seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_NE(*lease, 0);
  MustPut(Key("a"), "1", *lease);
  EXPECT_EQ(MustGet(Key("a"))->lease, *lease);
  // Putting again without a lease detaches the key.
  MustPut(Key("a"), "2");
  EXPECT_EQ(MustGet(Key("a"))->lease, 0);
  EXPECT_TRUE(store().RevokeLease(*lease).ok());
  EXPECT_TRUE(Exists(Key("a")));
}

TEST_P(StoreConformanceTest, PutWithUnknownLeaseIsNotFound) {
  auto lease = store().GrantLease(seconds(30));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(store().RevokeLease(*lease).ok());
  auto put = store().Put(Key("a"), "1", *lease);
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), Code::kNotFound) << put.status().ToString();
  EXPECT_FALSE(Exists(Key("a")));
}

TEST_P(StoreConformanceTest, RevokeDeletesTheLeasesKeys) {
  auto lease = store().GrantLease(seconds(60));
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  MustPut(Key("a"), "1", *lease);
  MustPut(Key("b"), "2", *lease);
  MustPut(Key("c"), "3");
  WatchLog log;
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok());

  ASSERT_TRUE(store().RevokeLease(*lease).ok());
  EXPECT_FALSE(Exists(Key("a")));
  EXPECT_FALSE(Exists(Key("b")));
  EXPECT_TRUE(Exists(Key("c")));
  ASSERT_TRUE(log.WaitForEvents(2));
  for (const Event& e : log.events()) EXPECT_EQ(e.type, Event::Type::kDelete) << e.kv.key;

  Status again = store().RevokeLease(*lease);
  EXPECT_EQ(again.code(), Code::kNotFound) << again.ToString();
  auto keep = store().KeepAlive(*lease);
  ASSERT_FALSE(keep.ok());
  EXPECT_EQ(keep.status().code(), Code::kNotFound) << keep.status().ToString();
}

TEST_P(StoreConformanceTest, KeepAliveKeepsTheLease) {
  // Keep-alives every 3 s hold a lease of 8 s for 9 s: the key must survive.
  auto lease = store().GrantLease(seconds(8));
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  MustPut(Key("alive"), "1", *lease);
  for (int i = 0; i < 3; ++i) {
    backend_->AdvanceTime(seconds(3));
    auto ttl = store().KeepAlive(*lease);
    ASSERT_TRUE(ttl.ok()) << ttl.status().ToString();
    EXPECT_EQ(ttl->count(), 8);
    EXPECT_TRUE(Exists(Key("alive")));
  }
  EXPECT_TRUE(store().RevokeLease(*lease).ok());
}

TEST_P(StoreConformanceTest, ExpiryDeletesTheLeasesKeys) {
  auto lease = store().GrantLease(seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  MustPut(Key("a"), "1", *lease);
  MustPut(Key("b"), "2");
  WatchLog log;
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok());

  backend_->AdvanceTime(seconds(3));
  EXPECT_TRUE(Eventually([&] { return !Exists(Key("a")); }));
  EXPECT_TRUE(Exists(Key("b")));
  ASSERT_TRUE(log.WaitForEvents(1));
  auto events = log.events();
  EXPECT_EQ(events[0].type, Event::Type::kDelete);
  EXPECT_EQ(events[0].kv.key, Key("a"));

  auto keep = store().KeepAlive(*lease);
  ASSERT_FALSE(keep.ok());
  EXPECT_EQ(keep.status().code(), Code::kNotFound) << keep.status().ToString();
}

TEST_P(StoreConformanceTest, KeepAliveOfUnknownLeaseIsNotFound) {
  auto keep = store().KeepAlive(0x7e57'0000'0000'0001);
  ASSERT_FALSE(keep.ok());
  EXPECT_EQ(keep.status().code(), Code::kNotFound) << keep.status().ToString();
  Status revoke = store().RevokeLease(0x7e57'0000'0000'0001);
  EXPECT_EQ(revoke.code(), Code::kNotFound) << revoke.ToString();
}

// ---------------------------------------------------------------------------------------------
// Watches

// Checks that `events` have strictly increasing revisions except within one transaction.
void ExpectOrdered(const std::vector<Event>& events) {
  std::set<std::pair<int64_t, std::string>> seen;
  int64_t last = 0;
  for (const Event& e : events) {
    EXPECT_GE(e.kv.mod_revision, last) << e.kv.key;
    EXPECT_TRUE(seen.insert({e.kv.mod_revision, e.kv.key}).second)
        << "duplicate event " << e.kv.key << "@" << e.kv.mod_revision;
    last = e.kv.mod_revision;
  }
}

TEST_P(StoreConformanceTest, WatchFromNow) {
  MustPut(Key("before"), "old");
  WatchLog log;
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  int64_t r1 = MustPut(Key("a"), "1");
  int64_t r2 = MustPut(Key("a"), "2");
  ASSERT_TRUE(log.WaitForEvents(2));
  auto events = log.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, Event::Type::kPut);
  EXPECT_EQ(events[0].kv.key, Key("a"));
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[0].kv.mod_revision, r1);
  EXPECT_EQ(events[0].kv.create_revision, r1);
  EXPECT_EQ(events[0].kv.version, 1);
  EXPECT_EQ(events[1].kv.value, "2");
  EXPECT_EQ(events[1].kv.mod_revision, r2);
  EXPECT_EQ(events[1].kv.version, 2);
  EXPECT_FALSE(log.overlapped());
  EXPECT_FALSE(log.empty_batches());
  EXPECT_TRUE(log.finals().empty());
}

TEST_P(StoreConformanceTest, WatchFromPastRevisionReplaysThenGoesLive) {
  int64_t r1 = MustPut(Key("w/a"), "1");
  int64_t r2 = MustPut(Key("w/b"), "2");
  int64_t r3 = MustPut(Key("w/a"), "3");
  auto del = store().Delete(Key("w/b"));
  ASSERT_TRUE(del.ok());
  int64_t r4 = MustGet(Key("w/a"))->mod_revision;  // unchanged: r3
  EXPECT_EQ(r4, r3);

  WatchLog log;
  auto watch = store().Watch(Key("w/"), r2, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  int64_t r6 = MustPut(Key("w/c"), "live");
  ASSERT_TRUE(log.WaitForEvents(4));
  auto events = log.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kv.key, Key("w/b"));
  EXPECT_EQ(events[0].kv.mod_revision, r2);
  EXPECT_EQ(events[1].kv.key, Key("w/a"));
  EXPECT_EQ(events[1].kv.mod_revision, r3);
  EXPECT_EQ(events[1].kv.value, "3");
  EXPECT_EQ(events[1].kv.version, 2);
  EXPECT_EQ(events[1].kv.create_revision, r1);
  EXPECT_EQ(events[2].type, Event::Type::kDelete);
  EXPECT_EQ(events[2].kv.key, Key("w/b"));
  EXPECT_GT(events[2].kv.mod_revision, r3);
  EXPECT_EQ(events[3].kv.key, Key("w/c"));
  EXPECT_EQ(events[3].kv.mod_revision, r6);
  ExpectOrdered(events);
  EXPECT_FALSE(log.overlapped());
}

TEST_P(StoreConformanceTest, WatchFiltersByPrefix) {
  WatchLog log;
  auto watch = store().Watch(Key("p/a/"), 0, log.Callback());
  ASSERT_TRUE(watch.ok());
  MustPut(Key("p/a"), "parent");
  MustPut(Key("p/ab"), "sibling");
  MustPut(Key("p/b/x"), "other");
  MustPut(Key("p/a/x"), "mine");
  MustPut(Key("p/a/y/z"), "mine too");
  ASSERT_TRUE(log.WaitForKey(Key("p/a/y/z")));
  auto events = log.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv.key, Key("p/a/x"));
  EXPECT_EQ(events[1].kv.key, Key("p/a/y/z"));
}

TEST_P(StoreConformanceTest, WatchDeliversDeleteEvents) {
  MustPut(Key("a"), "1");
  MustPut(Key("b"), "2");
  MustPut(Key("c/1"), "3");
  MustPut(Key("c/2"), "4");
  WatchLog log;
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_EQ(*store().Delete(Key("a")), 1);
  auto by_prefix = store().DeletePrefix(Key("c/"));
  ASSERT_TRUE(by_prefix.ok());
  EXPECT_EQ(*by_prefix, 2);
  ASSERT_TRUE(log.WaitForEvents(3));
  auto events = log.events();
  ASSERT_EQ(events.size(), 3u);
  for (const Event& e : events) EXPECT_EQ(e.type, Event::Type::kDelete);
  EXPECT_EQ(events[0].kv.key, Key("a"));
  EXPECT_EQ(events[1].kv.key, Key("c/1"));
  EXPECT_EQ(events[2].kv.key, Key("c/2"));
  EXPECT_LT(events[0].kv.mod_revision, events[1].kv.mod_revision);
  EXPECT_EQ(events[1].kv.mod_revision, events[2].kv.mod_revision);  // one DeletePrefix
}

TEST_P(StoreConformanceTest, CancelStopsDelivery) {
  WatchLog log;
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok());
  MustPut(Key("a"), "1");
  ASSERT_TRUE(log.WaitForEvents(1));
  (*watch)->Cancel();
  int calls = log.calls();
  size_t seen = log.events().size();

  // A second watch proves later events were delivered to whoever still listens.
  WatchLog witness;
  auto other = store().Watch(prefix_, 0, witness.Callback());
  ASSERT_TRUE(other.ok());
  MustPut(Key("b"), "2");
  MustPut(Key("c"), "3");
  ASSERT_TRUE(witness.WaitForKey(Key("c")));
  EXPECT_EQ(log.calls(), calls);
  EXPECT_EQ(log.events().size(), seen);
  (*watch)->Cancel();  // twice is fine
  watch->reset();      // and so is destroying it after
}

TEST_P(StoreConformanceTest, DestroyingAWatchCancelsIt) {
  auto log = std::make_unique<WatchLog>();
  auto watch = store().Watch(prefix_, 0, log->Callback());
  ASSERT_TRUE(watch.ok());
  MustPut(Key("a"), "1");
  ASSERT_TRUE(log->WaitForEvents(1));
  watch->reset();
  log.reset();  // a callback after this would touch freed memory (caught under ASan)
  MustPut(Key("b"), "2");
  WatchLog witness;
  auto other = store().Watch(prefix_, 0, witness.Callback());
  ASSERT_TRUE(other.ok());
  MustPut(Key("c"), "3");
  ASSERT_TRUE(witness.WaitForKey(Key("c")));
}

TEST_P(StoreConformanceTest, WatchFromCompactedRevisionReportsCompacted) {
  int64_t r1 = MustPut(Key("a"), "1");
  MustPut(Key("a"), "2");
  int64_t r3 = MustPut(Key("b"), "3");
  ASSERT_TRUE(store().Compact(r3).ok());

  WatchLog log;
  auto watch = store().Watch(prefix_, r1, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE(log.WaitForFinal());
  auto finals = log.finals();
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].status.code(), Code::kCompacted) << finals[0].status.ToString();
  EXPECT_GE(finals[0].compact_revision, r3);
  EXPECT_TRUE(log.events().empty());

  // Nothing more after the error, even when keys under the prefix change.
  WatchLog witness;
  auto other = store().Watch(prefix_, 0, witness.Callback());
  ASSERT_TRUE(other.ok());
  MustPut(Key("c"), "4");
  ASSERT_TRUE(witness.WaitForKey(Key("c")));
  EXPECT_EQ(log.calls(), 1);

  // Watching from the compaction revision itself still works.
  WatchLog from_compaction;
  auto ok = store().Watch(Key("b"), r3, from_compaction.Callback());
  ASSERT_TRUE(ok.ok());
  ASSERT_TRUE(from_compaction.WaitForEvents(1));
  EXPECT_EQ(from_compaction.events()[0].kv.mod_revision, r3);
  EXPECT_TRUE(from_compaction.finals().empty());

  // Compacting again at or below the compaction point is not an error.
  EXPECT_TRUE(store().Compact(r3).ok());
  EXPECT_TRUE(store().Compact(r1).ok());
}

TEST_P(StoreConformanceTest, SlowConsumerGetsEveryEventInOrder) {
  constexpr int kWrites = 300;
  WatchLog log;
  log.SetDelay(std::chrono::milliseconds(2));
  auto watch = store().Watch(prefix_, 0, log.Callback());
  ASSERT_TRUE(watch.ok());
  std::vector<int64_t> revisions;
  for (int i = 0; i < kWrites; ++i) {
    revisions.push_back(MustPut(Key("k" + std::to_string(i % 17)), std::to_string(i)));
  }
  ASSERT_TRUE(log.WaitForEvents(kWrites));
  auto events = log.events();
  ASSERT_EQ(events.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(events[i].kv.mod_revision, revisions[i]);
    EXPECT_EQ(events[i].kv.value, std::to_string(i));
  }
  EXPECT_FALSE(log.overlapped());
}

TEST_P(StoreConformanceTest, ManyWatchesOnOnePrefix) {
  constexpr int kWatches = 8;
  std::vector<std::unique_ptr<WatchLog>> logs;
  std::vector<WatchPtr> watches;
  for (int i = 0; i < kWatches; ++i) {
    logs.push_back(std::make_unique<WatchLog>());
    auto w = store().Watch(prefix_, 0, logs.back()->Callback());
    ASSERT_TRUE(w.ok());
    watches.push_back(std::move(w).value());
  }
  for (int i = 0; i < 20; ++i) MustPut(Key("k"), std::to_string(i));
  for (auto& log : logs) {
    ASSERT_TRUE(log->WaitForEvents(20));
    ExpectOrdered(log->events());
  }
  watches.clear();
}

TEST_P(StoreConformanceTest, DescribeNamesTheBackend) {
  std::string d = store().Describe();
  EXPECT_FALSE(d.empty());
  if (GetParam().rfind("etcd", 0) == 0) {
    EXPECT_EQ(d.rfind("etcd://", 0), 0u) << d;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformanceTest,
                         ::testing::Values("memory", "sqlite", "etcd", "etcd3"),
                         [](const ::testing::TestParamInfo<std::string>& backend) {
                           return backend.param;
                         });

}  // namespace
}  // namespace berth::store
