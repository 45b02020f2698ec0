// Tests of what is specific to EmbeddedStore: durability across reopen, lease expiry by the
// injected clock, group commit under concurrent writers, watch replay joined to live events,
// compaction. The Store semantics shared with etcd are in store_conformance_test.cc.
#include "store/embedded_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace berth::store {
namespace {

using std::chrono::seconds;

// A fresh directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "berth-embedded-XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Collects watch responses; tests wait on it for a condition (the bound is only a failure
// guard for a hung test, not a timing assertion).
class Collector {
 public:
  WatchCallback Callback() {
    return [this](const WatchResponse& r) {
      std::lock_guard lk(mu_);
      responses_.push_back(r);
      cv_.notify_all();
    };
  }
  template <typename Pred>
  bool WaitUntil(Pred pred) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(60), [&] { return pred(responses_); });
  }
  std::vector<WatchResponse> Responses() {
    std::lock_guard lk(mu_);
    return responses_;
  }
  // Every event's revision, in delivery order.
  std::vector<int64_t> Revisions() {
    std::lock_guard lk(mu_);
    std::vector<int64_t> out;
    for (const auto& r : responses_) {
      for (const auto& e : r.events) out.push_back(e.kv.mod_revision);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WatchResponse> responses_;
};

int64_t LastRevision(const std::vector<WatchResponse>& rs) {
  return rs.empty() || rs.back().events.empty() ? 0 : rs.back().events.back().kv.mod_revision;
}

std::unique_ptr<EmbeddedStore> OpenOrDie(const std::string& path,
                                         ClockPtr clock = SystemClock::Shared(), bool sync = true) {
  auto s = EmbeddedStore::Open(EmbeddedOptions{path, std::move(clock), false, sync});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

TEST(EmbeddedStoreTest, DescribeNamesTheFile) {
  TempDir dir;
  auto disk = OpenOrDie(dir.File("store.db"));
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->Describe(), "embedded:" + dir.File("store.db"));
  auto mem = OpenOrDie("");
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->Describe(), "memory:");
}

TEST(EmbeddedStoreTest, OpenFailsCleanlyOnBadPath) {
  auto s = EmbeddedStore::Open(EmbeddedOptions{"/nonexistent-dir/x/store.db"});
  EXPECT_FALSE(s.ok());
}

TEST(EmbeddedStoreTest, RevisionStartsAtOneAndBumpsOncePerWrite) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  auto r = s->Range("");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, 1);
  EXPECT_EQ(*s->Put("a", "1"), 2);
  // A transaction with several ops is one revision; all its keys share it.
  auto t = s->Txn({}, {TxnOp::Put("b", "2"), TxnOp::Put("c", "3"), TxnOp::Delete("a")});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->revision, 3);
  EXPECT_EQ(s->Get("b")->value().mod_revision, 3);
  EXPECT_EQ(s->Get("c")->value().mod_revision, 3);
  // No-op delete, failed compare without failure ops: no new revision.
  EXPECT_EQ(*s->Delete("zzz"), 0);
  EXPECT_EQ(*s->DeletePrefix("nothing/"), 0);
  auto f = s->Txn({Compare::Present("zzz")}, {TxnOp::Put("d", "4")});
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->succeeded);
  EXPECT_EQ(f->revision, 3);
  EXPECT_EQ(s->Range("")->revision, 3);
}

TEST(EmbeddedStoreTest, FailedTxnOpLeavesNothingBehind) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->Put("a", "1").ok());
  // The second op names an unknown lease: the first must not be applied either.
  auto t = s->Txn({}, {TxnOp::Put("a", "2"), TxnOp::Put("b", "x", 12345)});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kNotFound);
  EXPECT_EQ(s->Get("a")->value().value, "1");
  EXPECT_FALSE(s->Get("b")->has_value());
  EXPECT_EQ(s->Range("")->revision, 2);
}

TEST(EmbeddedStoreTest, RestartKeepsDataRevisionAndLeasesWithFreshTtl) {
  TempDir dir;
  auto clock = std::make_shared<ManualClock>();
  LeaseId lease = 0;
  int64_t rev = 0;
  {
    auto s = OpenOrDie(dir.File("store.db"), clock);
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->Put("/k/a", "alpha").ok());
    ASSERT_TRUE(s->Put("/k/a", "alpha2").ok());
    ASSERT_TRUE(s->Put("/k/gone", "x").ok());
    ASSERT_TRUE(s->Delete("/k/gone").ok());
    auto l = s->GrantLease(seconds(10));
    ASSERT_TRUE(l.ok());
    lease = *l;
    auto p = s->Put("/k/leased", "v", lease);
    ASSERT_TRUE(p.ok());
    rev = *p;
    clock->Advance(seconds(8));  // most of the TTL used up before the "crash"
  }
  auto s = OpenOrDie(dir.File("store.db"), clock);
  ASSERT_NE(s, nullptr);
  auto r = s->Range("/k/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, rev);
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[0].key, "/k/a");
  EXPECT_EQ(r->kvs[0].value, "alpha2");
  EXPECT_EQ(r->kvs[0].version, 2);
  EXPECT_EQ(r->kvs[1].lease, lease);
  // The lease came back with its full TTL: 8 more seconds do not end it, 3 after that do.
  clock->Advance(seconds(8));
  EXPECT_EQ(s->ExpireLeases(), 0);
  EXPECT_TRUE(s->Get("/k/leased")->has_value());
  clock->Advance(seconds(3));
  EXPECT_EQ(s->ExpireLeases(), 1);
  EXPECT_FALSE(s->Get("/k/leased")->has_value());
  EXPECT_EQ(s->Range("")->revision, rev + 1);
  // Revisions and lease ids keep counting from where they were.
  EXPECT_EQ(*s->Put("/k/b", "b"), rev + 2);
  auto l2 = s->GrantLease(seconds(5));
  ASSERT_TRUE(l2.ok());
  EXPECT_GT(*l2, lease);
}

TEST(EmbeddedStoreTest, ManyPagesThroughBackgroundCheckpointsSurviveReopen) {
  TempDir dir;
  const std::string value(2000, 'x');  // ~1 page per put: many checkpoint rounds
  constexpr int kPuts = 3000;
  int64_t last = 0;
  {
    auto s = OpenOrDie(dir.File("store.db"), SystemClock::Shared(), /*sync=*/false);
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < kPuts; ++i) {
      auto r = s->Put("/big/" + std::to_string(i % 500), value + std::to_string(i));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      last = *r;
    }
    ASSERT_TRUE(s->Compact(last - 10).ok());
  }
  auto s = OpenOrDie(dir.File("store.db"));
  ASSERT_NE(s, nullptr);
  auto r = s->Range("/big/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, last);
  EXPECT_EQ(r->count, 500);
  EXPECT_EQ(s->Get("/big/499")->value().value, value + std::to_string(kPuts - 1));
  EXPECT_EQ(s->Get("/big/499")->value().version, kPuts / 500);
  Collector c;
  auto w = s->Watch("/big/", last - 10, c.Callback());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(c.WaitUntil([&](auto& rs) { return LastRevision(rs) == last; }));
  EXPECT_EQ(c.Revisions().size(), 11u);
}

// A process killed mid-write (no destructor, no close, no final checkpoint) loses no
// acknowledged write, and the file opens cleanly. (A kill leaves the page cache intact, so
// this checks that nothing relies on an orderly close; fsync is what covers power loss.)
TEST(EmbeddedStoreTest, KilledProcessLosesNoAcknowledgedWrite) {
  TempDir dir;
  const std::string path = dir.File("store.db");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto opened = EmbeddedStore::Open(EmbeddedOptions{path, SystemClock::Shared(), false, true});
    if (!opened.ok()) _exit(3);
    EmbeddedStore& s = **opened;
    // Two writers so the kill lands while commits are in flight.
    std::thread other([&] {
      for (int i = 0;; ++i) (void)s.Put("/crash/other", std::to_string(i));
    });
    for (int32_t i = 0;; ++i) {
      if (!s.Put("/crash/" + std::to_string(i), std::to_string(i)).ok()) _exit(4);
      if (write(fds[1], &i, sizeof(i)) != sizeof(i)) _exit(5);
      if (i == 300) kill(getpid(), SIGKILL);
    }
  }
  close(fds[1]);
  std::vector<int32_t> acked;
  int32_t i = 0;
  while (read(fds[0], &i, sizeof(i)) == sizeof(i)) acked.push_back(i);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_FALSE(acked.empty());

  auto s = OpenOrDie(path);
  ASSERT_NE(s, nullptr);
  for (int32_t k : acked) {
    auto kv = s->Get("/crash/" + std::to_string(k));
    ASSERT_TRUE(kv.ok() && kv->has_value()) << "acknowledged write " << k << " lost";
    EXPECT_EQ((*kv)->value, std::to_string(k));
  }
  // Still writable, with revisions going on from the recovered one.
  const int64_t rev = s->Range("")->revision;
  EXPECT_EQ(*s->Put("/crash/after", "x"), rev + 1);
}

TEST(EmbeddedStoreTest, HistorySurvivesRestartForWatchReplay) {
  TempDir dir;
  {
    auto s = OpenOrDie(dir.File("store.db"));
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->Put("/w/" + std::to_string(i), "v").ok());
    ASSERT_TRUE(s->Delete("/w/0").ok());
  }
  auto s = OpenOrDie(dir.File("store.db"));
  ASSERT_NE(s, nullptr);
  Collector c;
  auto w = s->Watch("/w/", 2, c.Callback());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(c.WaitUntil([](auto& rs) { return LastRevision(rs) == 7; }));
  EXPECT_EQ(c.Revisions(), (std::vector<int64_t>{2, 3, 4, 5, 6, 7}));
  auto rs = c.Responses();
  EXPECT_EQ(rs.back().events[0].type, Event::Type::kDelete);
  EXPECT_EQ(rs.back().events[0].kv.key, "/w/0");
}

TEST(EmbeddedStoreTest, LeaseExpiresByInjectedClock) {
  auto clock = std::make_shared<ManualClock>();
  auto s = OpenOrDie("", clock);
  ASSERT_NE(s, nullptr);
  auto lease = s->GrantLease(seconds(5));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(s->Put("/l/a", "1", *lease).ok());
  auto last = s->Put("/l/b", "2", *lease);
  ASSERT_TRUE(last.ok());
  Collector c;
  auto w = s->Watch("/l/", 0, c.Callback());
  ASSERT_TRUE(w.ok());

  clock->Advance(seconds(4));
  EXPECT_EQ(s->ExpireLeases(), 0);
  auto ttl = s->KeepAlive(*lease);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, seconds(5));
  clock->Advance(seconds(4));
  EXPECT_EQ(s->ExpireLeases(), 0);  // the keep-alive moved the deadline
  clock->Advance(seconds(2));
  // Past the deadline the lease is over even before the scan runs.
  EXPECT_EQ(s->KeepAlive(*lease).status().code(), Code::kNotFound);
  EXPECT_EQ(s->ExpireLeases(), 1);
  EXPECT_EQ(s->ExpireLeases(), 0);
  EXPECT_FALSE(s->Get("/l/a")->has_value());
  EXPECT_FALSE(s->Get("/l/b")->has_value());
  EXPECT_EQ(s->KeepAlive(*lease).status().code(), Code::kNotFound);
  EXPECT_EQ(s->Put("/l/c", "3", *lease).status().code(), Code::kNotFound);
  EXPECT_EQ(s->RevokeLease(*lease).code(), Code::kNotFound);

  // Both deletes in one revision, one response.
  ASSERT_TRUE(c.WaitUntil([](auto& rs) { return !rs.empty(); }));
  auto rs = c.Responses();
  ASSERT_EQ(rs.size(), 1u);
  ASSERT_EQ(rs[0].events.size(), 2u);
  EXPECT_EQ(rs[0].events[0].type, Event::Type::kDelete);
  EXPECT_EQ(rs[0].events[0].kv.mod_revision, *last + 1);
  EXPECT_EQ(rs[0].events[1].kv.mod_revision, *last + 1);
}

TEST(EmbeddedStoreTest, ExpiryThreadEndsLeases) {
  auto clock = std::make_shared<ManualClock>();
  auto opened = EmbeddedStore::Open(EmbeddedOptions{"", clock, /*expiry_thread=*/true, true});
  ASSERT_TRUE(opened.ok());
  auto& s = *opened;
  auto lease = s->GrantLease(seconds(1));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(s->Put("/e/a", "1", *lease).ok());
  Collector c;
  auto w = s->Watch("/e/", 0, c.Callback());
  ASSERT_TRUE(w.ok());
  clock->Advance(seconds(2));
  ASSERT_TRUE(c.WaitUntil([](auto& rs) { return !rs.empty(); }));
  EXPECT_FALSE(s->Get("/e/a")->has_value());
}

TEST(EmbeddedStoreTest, RevokeDeletesKeysInOneRevision) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  auto lease = s->GrantLease(seconds(60));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(s->Put("/r/a", "1", *lease).ok());
  ASSERT_TRUE(s->Put("/r/b", "1", *lease).ok());
  ASSERT_TRUE(s->Put("/r/c", "1").ok());
  const int64_t before = s->Range("")->revision;
  ASSERT_TRUE(s->RevokeLease(*lease).ok());
  EXPECT_EQ(s->Range("")->revision, before + 1);
  auto r = s->Range("/r/");
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, "/r/c");
  // A lease with no keys ends without a revision.
  auto empty = s->GrantLease(seconds(60));
  ASSERT_TRUE(empty.ok());
  ASSERT_TRUE(s->RevokeLease(*empty).ok());
  EXPECT_EQ(s->Range("")->revision, before + 1);
  // Ids are never reused.
  std::set<LeaseId> ids{*lease, *empty};
  for (int i = 0; i < 10; ++i) {
    auto l = s->GrantLease(seconds(1));
    ASSERT_TRUE(l.ok());
    EXPECT_TRUE(ids.insert(*l).second);
  }
}

TEST(EmbeddedStoreTest, ConcurrentWritersLoseNothing) {
  TempDir dir;
  auto s = OpenOrDie(dir.File("store.db"), SystemClock::Shared(), /*sync=*/false);
  ASSERT_NE(s, nullptr);
  constexpr int kThreads = 8;
  constexpr int kPuts = 150;
  std::vector<std::vector<int64_t>> revs(kThreads);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPuts; ++i) {
        // Every third write of odd threads fails (unknown lease): it must not disturb the
        // writes committed in the same group.
        if (t % 2 == 1 && i % 3 == 0) {
          if (s->Put("/c/bad", "x", 999999).ok()) ++errors;
          continue;
        }
        auto r = s->Put("/c/" + std::to_string(t) + "/" + std::to_string(i), "v");
        if (!r.ok()) {
          ++errors;
          continue;
        }
        revs[t].push_back(*r);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::set<int64_t> all;
  size_t total = 0;
  for (const auto& v : revs) {
    for (size_t i = 1; i < v.size(); ++i) EXPECT_LT(v[i - 1], v[i]);
    all.insert(v.begin(), v.end());
    total += v.size();
  }
  EXPECT_EQ(all.size(), total);  // no two writes share a revision
  auto r = s->Range("/c/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count, static_cast<int64_t>(total));
  EXPECT_EQ(r->revision, 1 + static_cast<int64_t>(total));
  EXPECT_FALSE(s->Get("/c/bad")->has_value());
}

TEST(EmbeddedStoreTest, WatchReplayJoinsLiveEventsUnderConcurrentWrites) {
  TempDir dir;
  auto s = OpenOrDie(dir.File("store.db"), SystemClock::Shared(), /*sync=*/false);
  ASSERT_NE(s, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPuts = 200;
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPuts; ++i) {
        ASSERT_TRUE(s->Put("/o/" + std::to_string(t), std::to_string(i)).ok());
        ++started;
      }
    });
  }
  // Start watching from revision 2 while the writers run: replay joins live delivery.
  // (Bounded only so that a writer failing early cannot hang the test.)
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (started.load() < 50 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  Collector c;
  auto w = s->Watch("/o/", 2, c.Callback());
  ASSERT_TRUE(w.ok());
  for (auto& th : threads) th.join();
  const int64_t last = 1 + kThreads * kPuts;
  ASSERT_TRUE(c.WaitUntil([&](auto& rs) { return LastRevision(rs) == last; }));
  std::vector<int64_t> want;
  for (int64_t r = 2; r <= last; ++r) want.push_back(r);
  EXPECT_EQ(c.Revisions(), want);
  // Per key, values arrive in write order.
  std::map<std::string, int> next;
  for (const auto& r : c.Responses()) {
    for (const auto& e : r.events) EXPECT_EQ(e.kv.value, std::to_string(next[e.kv.key]++));
  }
}

TEST(EmbeddedStoreTest, SlowConsumerLosesNothing) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<int64_t> got;
  auto w = s->Watch("/s/", 0, [&](const WatchResponse& r) {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return release; });  // blocks the first delivery until all are written
    for (const auto& e : r.events) got.push_back(e.kv.mod_revision);
    cv.notify_all();
  });
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < 500; ++i) ASSERT_TRUE(s->Put("/s/k", std::to_string(i)).ok());
  std::unique_lock lk(mu);
  release = true;
  cv.notify_all();
  ASSERT_TRUE(cv.wait_for(lk, seconds(60), [&] { return got.size() == 500; }));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], 2 + static_cast<int64_t>(i));
}

TEST(EmbeddedStoreTest, CancelWaitsForRunningCallback) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool release = false;
  std::atomic<bool> finished{false};
  std::atomic<int> calls{0};
  auto w = s->Watch("/x/", 0, [&](const WatchResponse&) {
    ++calls;
    std::unique_lock lk(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lk, [&] { return release; });
    finished = true;
  });
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(s->Put("/x/a", "1").ok());
  ASSERT_TRUE(s->Put("/x/b", "1").ok());
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, seconds(60), [&] { return entered; }));
  }
  std::atomic<int> calls_at_cancel{-1};
  std::thread canceller([&] {
    (*w)->Cancel();
    // Cancel returned: the running callback must be over.
    EXPECT_TRUE(finished.load());
    calls_at_cancel = calls.load();
  });
  // Give Cancel a chance to start waiting first; the checks hold whichever order it runs in.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::lock_guard lk(mu);
    release = true;
  }
  cv.notify_all();
  canceller.join();
  ASSERT_GE(calls_at_cancel.load(), 1);
  // Nothing is delivered after Cancel: a later watch, served by the same dispatcher in
  // publication order, sees the next revision only after the cancelled one would have.
  Collector barrier;
  auto w2 = s->Watch("/x/", 0, barrier.Callback());
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE(s->Put("/x/c", "1").ok());
  ASSERT_TRUE(barrier.WaitUntil([](auto& rs) { return !rs.empty(); }));
  EXPECT_EQ(calls.load(), calls_at_cancel.load());
}

TEST(EmbeddedStoreTest, CompactionPersistsAndFailsOldWatches) {
  TempDir dir;
  {
    auto s = OpenOrDie(dir.File("store.db"));
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->Put("/p/k", std::to_string(i)).ok());  // 2..6
    ASSERT_TRUE(s->Compact(4).ok());
    EXPECT_TRUE(s->Compact(3).ok());  // already compacted past it: nothing to do
    EXPECT_FALSE(s->Compact(100).ok());
  }
  auto s = OpenOrDie(dir.File("store.db"));
  ASSERT_NE(s, nullptr);
  Collector old_watch;
  auto w1 = s->Watch("/p/", 2, old_watch.Callback());
  ASSERT_TRUE(w1.ok());
  Collector ok_watch;
  auto w2 = s->Watch("/p/", 4, ok_watch.Callback());
  ASSERT_TRUE(w2.ok());
  ASSERT_TRUE(ok_watch.WaitUntil([](auto& rs) { return LastRevision(rs) == 6; }));
  EXPECT_EQ(ok_watch.Revisions(), (std::vector<int64_t>{4, 5, 6}));
  ASSERT_TRUE(old_watch.WaitUntil([](auto& rs) { return !rs.empty(); }));
  // After the compacted error, nothing more: a later put reaches w2 but not w1.
  ASSERT_TRUE(s->Put("/p/k", "x").ok());
  ASSERT_TRUE(ok_watch.WaitUntil([](auto& rs) { return LastRevision(rs) == 7; }));
  auto rs = old_watch.Responses();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].status.code(), Code::kCompacted);
  EXPECT_EQ(rs[0].compact_revision, 4);
  EXPECT_TRUE(rs[0].events.empty());
  EXPECT_TRUE(s->Compact(4).ok());
  // Compacting again did not move the point back: a watch from 3 still fails.
  Collector again;
  auto w3 = s->Watch("/p/", 3, again.Callback());
  ASSERT_TRUE(w3.ok());
  ASSERT_TRUE(again.WaitUntil([](auto& got) { return !got.empty(); }));
  EXPECT_EQ(again.Responses()[0].status.code(), Code::kCompacted);
}

TEST(EmbeddedStoreTest, WatchHandleMayOutliveStore) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  Collector c;
  auto w = s->Watch("", 0, c.Callback());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(s->Put("a", "1").ok());
  s.reset();
  (*w)->Cancel();  // no crash, no hang
  w->reset();
}

TEST(EmbeddedStoreTest, BinaryKeysAndValues) {
  auto s = OpenOrDie("");
  ASSERT_NE(s, nullptr);
  const std::string key("/b/\x00\xff", 5);
  const std::string value("\x00\x01\x02", 3);
  ASSERT_TRUE(s->Put(key, value).ok());
  ASSERT_TRUE(s->Put("/b/", "").ok());
  auto g = s->Get(key);
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->value, value);
  auto e = s->Get("/b/");
  ASSERT_TRUE(e.ok() && e->has_value());
  EXPECT_EQ((*e)->value, "");
  auto r = s->Range("/b/");
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[0].key, "/b/");
  EXPECT_EQ(r->kvs[1].key, key);
  auto lim = s->Range("/b/", 1);
  EXPECT_EQ(lim->kvs.size(), 1u);
  EXPECT_TRUE(lim->more);
  EXPECT_EQ(lim->count, 2);
}

}  // namespace
}  // namespace berth::store
