#include "store/embedded_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace berth::store {
namespace {

// ---------------------------------------------------------------------------------------------
// SQLite plumbing. The on-disk format is described in docs/store-embedded.md.

constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS kv(
  key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS history(
  rev INTEGER NOT NULL, sub INTEGER NOT NULL, type INTEGER NOT NULL, key BLOB NOT NULL,
  value BLOB NOT NULL, create_rev INTEGER NOT NULL, version INTEGER NOT NULL,
  lease INTEGER NOT NULL, PRIMARY KEY(rev, sub)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES
  ('revision', 1), ('compacted', 0), ('next_lease', 1);
)sql";

// Every statement berth runs, prepared once per connection at open.
enum StmtId : int {
  kBeginWrite,
  kBeginRead,
  kCommit,
  kRollback,
  kSavepoint,
  kRelease,
  kRollbackTo,
  kGetKv,
  kRangeTo,
  kRangeAll,
  kCountTo,
  kCountAll,
  kUpsertKv,
  kDeleteKey,
  kDeleteTo,
  kDeleteAll,
  kDeleteLeaseKeys,
  kInsertHistory,
  kHistoryFrom,
  kCompactHistory,
  kGetMeta,
  kSetMeta,
  kInsertLease,
  kDeleteLease,
  kAllLeases,
  kCurrentRevision,
  kNumStmts,
};

constexpr std::array<const char*, kNumStmts> kStmtSql = {
    "BEGIN IMMEDIATE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT op",
    "RELEASE op",
    "ROLLBACK TO op",
    "SELECT value, create_rev, mod_rev, version, lease FROM kv WHERE key = ?1",
    "SELECT key, value, create_rev, mod_rev, version, lease FROM kv"
    " WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
    "SELECT key, value, create_rev, mod_rev, version, lease FROM kv"
    " WHERE key >= ?1 ORDER BY key LIMIT ?3",
    "SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < ?2",
    "SELECT COUNT(*) FROM kv WHERE key >= ?1",
    "INSERT OR REPLACE INTO kv(key, value, create_rev, mod_rev, version, lease)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    "DELETE FROM kv WHERE key = ?1",
    "DELETE FROM kv WHERE key >= ?1 AND key < ?2 RETURNING key",
    "DELETE FROM kv WHERE key >= ?1 RETURNING key",
    "DELETE FROM kv WHERE lease = ?1 AND lease != 0 RETURNING key",
    "INSERT INTO history(rev, sub, type, key, value, create_rev, version, lease)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "SELECT rev, type, key, value, create_rev, version, lease FROM history"
    " WHERE rev >= ?1 ORDER BY rev, sub",
    "DELETE FROM history WHERE rev < ?1",
    "SELECT value FROM meta WHERE name = ?1",
    "UPDATE meta SET value = ?2 WHERE name = ?1",
    "INSERT INTO leases(id, ttl) VALUES (?1, ?2)",
    "DELETE FROM leases WHERE id = ?1",
    "SELECT id, ttl FROM leases",
    // The current revision is that of the newest history row (compaction never removes it);
    // meta's row is only the floor for a store with no history yet.
    "SELECT max((SELECT value FROM meta WHERE name = 'revision'),"
    " coalesce((SELECT max(rev) FROM history), 0))",
};

Status SqlError(sqlite3* db, std::string_view what) {
  std::string msg = "embedded store: ";
  msg += what;
  msg += ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
  return Internal(std::move(msg));
}

// One SQLite connection and its prepared statements. Not thread-safe: the owner serializes use.
class Conn {
 public:
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    for (sqlite3_stmt* s : stmts_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  Status Open(const std::string& path, bool sync, bool writer) {
    const std::string name = path.empty() ? ":memory:" : path;
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(name.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      return SqlError(db_, "open " + name);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 10'000);
    std::string pragmas = "PRAGMA temp_store=MEMORY;";

    if (!path.empty()) {
      pragmas += "PRAGMA journal_mode=WAL;";
      // In WAL mode FULL fsyncs the log on every commit; NORMAL only at checkpoints.
      pragmas += sync ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
    }
    BERTH_RETURN_IF_ERROR(Exec(pragmas.c_str()));
    if (writer) {
      BERTH_RETURN_IF_ERROR(Exec(kSchema));
      BERTH_RETURN_IF_ERROR(
          Exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";").c_str()));
    }
    for (int i = 0; i < kNumStmts; ++i) {
      if (sqlite3_prepare_v3(db_, kStmtSql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i],
                             nullptr) != SQLITE_OK) {
        return SqlError(db_, std::string("prepare ") + kStmtSql[i]);
      }
    }
    return Status::Ok();
  }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = std::string("embedded store: ") + (err != nullptr ? err : "exec failed");
      sqlite3_free(err);
      return Internal(std::move(msg));
    }
    return Status::Ok();
  }

  sqlite3* db() const { return db_; }
  sqlite3_stmt* stmt(StmtId id) const { return stmts_[id]; }

 private:
  sqlite3* db_ = nullptr;
  std::array<sqlite3_stmt*, kNumStmts> stmts_{};
};

// Runs one cached statement: binds, steps, reads columns, and resets on scope exit so the
// statement never holds a read snapshot open past its use.
class Query {
 public:
  Query(const Conn& conn, StmtId id) : db_(conn.db()), s_(conn.stmt(id)) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  ~Query() { sqlite3_reset(s_); }

  Query& Bind(int i, std::string_view blob) {
    // A null pointer would bind SQL NULL; an empty key or value is a zero-length blob.
    static const char kEmpty = 0;
    sqlite3_bind_blob64(s_, i, blob.empty() ? &kEmpty : blob.data(), blob.size(), SQLITE_STATIC);
    return *this;
  }
  Query& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Query& BindText(int i, const char* text) {
    sqlite3_bind_text(s_, i, text, -1, SQLITE_STATIC);
    return *this;
  }

  // Returns true for a row, false when done.
  Result<bool> Step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(db_, sqlite3_sql(s_));
  }
  // For statements that return no rows.
  Status Run() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::Ok();
    return SqlError(db_, sqlite3_sql(s_));
  }

  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    const int n = sqlite3_column_bytes(s_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
};

Status RunStmt(const Conn& conn, StmtId id) {
  return Query(conn, id).Run();
}

bool HasPrefix(std::string_view key, std::string_view prefix) {
  return key.size() >= prefix.size() && key.compare(0, prefix.size(), prefix) == 0;
}

// ---------------------------------------------------------------------------------------------
// Watches: state shared between the store (which publishes), the dispatcher thread (which
// delivers) and the WatchPtr handle (which cancels, possibly after the store is gone).

struct WatchState {
  std::string prefix;
  int64_t min_revision = 0;  // live events before this are not delivered
  WatchCallback callback;
  // Guarded by WatchHub::mu_.
  std::deque<WatchResponse> queue;  // unbounded: a slow consumer loses nothing
  bool queued = false;              // present in the hub's ready list
  bool running = false;             // its callback runs right now
  bool cancelled = false;
};

struct RevisionEvents {
  int64_t revision = 0;
  std::vector<Event> events;
};

// Owns the dispatcher thread: one thread delivers every watch's responses, one at a time, in
// the order they were published. Thread-safe.
class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  void Start() {
    // The thread holds the hub alive so that it may be detached if the store is destroyed
    // from inside a callback.
    thread_ = std::thread([self = shared_from_this()] { self->Run(); });
    thread_id_ = thread_.get_id();
  }

  void Shutdown() {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& w : watches_) w->cancelled = true;
      watches_.clear();
    }
    work_cv_.notify_all();
    idle_cv_.notify_all();
    if (std::this_thread::get_id() == thread_id_) {
      thread_.detach();
    } else if (thread_.joinable()) {
      thread_.join();
    }
  }

  // Queues `initial` (history replay or a final error) and, if `live`, registers the watch for
  // events published from now on. The caller holds the store's write lock, so nothing is
  // published in between: no gap, no duplicate.
  void Add(const std::shared_ptr<WatchState>& w, std::vector<WatchResponse> initial, bool live) {
    bool notify = false;
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      for (auto& r : initial) w->queue.push_back(std::move(r));
      if (live) watches_.push_back(w);
      notify = MarkReady(w);
    }
    if (notify) work_cv_.notify_one();
  }

  void Publish(const std::vector<RevisionEvents>& revisions) {
    if (revisions.empty()) return;
    bool notify = false;
    {
      std::lock_guard lk(mu_);
      for (auto& w : watches_) {
        for (const RevisionEvents& rev : revisions) {
          if (rev.revision < w->min_revision) continue;
          WatchResponse resp;
          for (const Event& e : rev.events) {
            if (HasPrefix(e.kv.key, w->prefix)) resp.events.push_back(e);
          }
          if (!resp.events.empty()) w->queue.push_back(std::move(resp));
        }
        notify |= MarkReady(w);
      }
    }
    if (notify) work_cv_.notify_one();
  }

  void Cancel(const std::shared_ptr<WatchState>& w) {
    std::unique_lock lk(mu_);
    w->cancelled = true;
    w->queue.clear();
    auto it = std::find(watches_.begin(), watches_.end(), w);
    if (it != watches_.end()) watches_.erase(it);
    // From a callback (on the dispatcher) the watch cannot be running unless it is the
    // caller's own watch, which would wait forever; elsewhere, wait for its callback to end.
    if (std::this_thread::get_id() != thread_id_) {
      idle_cv_.wait(lk, [&] { return !w->running; });
    }
  }

 private:
  // Requires mu_. Returns whether the dispatcher needs a wake-up.
  bool MarkReady(const std::shared_ptr<WatchState>& w) {
    if (w->queued || w->queue.empty() || w->cancelled) return false;
    w->queued = true;
    ready_.push_back(w);
    return true;
  }

  void Run() {
    std::unique_lock lk(mu_);
    while (true) {
      work_cv_.wait(lk, [&] { return stopping_ || !ready_.empty(); });
      if (stopping_) break;
      std::shared_ptr<WatchState> w = std::move(ready_.front());
      ready_.pop_front();
      if (w->cancelled || w->queue.empty()) {
        w->queued = false;
        continue;
      }
      WatchResponse resp = std::move(w->queue.front());
      w->queue.pop_front();
      const bool final = !resp.status.ok();
      if (final) {
        auto it = std::find(watches_.begin(), watches_.end(), w);
        if (it != watches_.end()) watches_.erase(it);
        w->queue.clear();
      }
      w->running = true;
      lk.unlock();
      try {
        w->callback(resp);
      } catch (...) {
        // A throwing callback must not take the dispatcher down; its watch goes on.
      }
      lk.lock();
      w->running = false;
      if (final) w->cancelled = true;
      idle_cv_.notify_all();
      // One response per turn, then to the back of the line: one slow watch cannot starve
      // the others.
      if (!w->cancelled && !w->queue.empty()) {
        ready_.push_back(std::move(w));
      } else {
        w->queued = false;
      }
    }
    // Release references to user callbacks while the store is going away.
    ready_.clear();
  }

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::vector<std::shared_ptr<WatchState>> watches_;  // live watches, guarded by mu_
  std::deque<std::shared_ptr<WatchState>> ready_;     // watches with queued responses
  bool stopping_ = false;
  std::thread thread_;
  std::thread::id thread_id_;
};

class EmbeddedWatch final : public Watch {
 public:
  EmbeddedWatch(std::shared_ptr<WatchHub> hub, std::shared_ptr<WatchState> state)
      : hub_(std::move(hub)), state_(std::move(state)) {}
  ~EmbeddedWatch() override { Cancel(); }
  void Cancel() override { hub_->Cancel(state_); }

 private:
  std::shared_ptr<WatchHub> hub_;
  std::shared_ptr<WatchState> state_;
};

struct LeaseState {
  int64_t ttl_seconds = 0;
  TimePoint deadline;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct EmbeddedStore::Impl {
  // The state one write operation builds inside the batch transaction.
  struct OpCtx {
    int64_t revision = 0;  // the revision this op writes at, if it changes anything
    int64_t sub = 0;       // index of the next event within the revision
    std::vector<Event> events;
  };
  using ApplyFn = std::function<Status(OpCtx&)>;

  // One caller's write, waiting for a group commit.
  struct WriteRequest {
    const ApplyFn* apply = nullptr;
    Status status;
    int64_t revision = 0;  // store revision after this op
    bool done = false;
  };

  explicit Impl(EmbeddedOptions opts) : options_(std::move(opts)) {}

  ~Impl() {
    {
      std::lock_guard lk(expiry_mu_);
      stopping_ = true;
    }
    expiry_cv_.notify_all();
    if (expiry_thread_.joinable()) expiry_thread_.join();
    if (hub_) hub_->Shutdown();
    {
      std::lock_guard lk(checkpoint_mu_);
      checkpoint_stop_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  }

  Status Init() {
    writer_ = std::make_unique<Conn>();
    BERTH_RETURN_IF_ERROR(writer_->Open(options_.path, options_.sync, /*writer_=*/true));
    std::lock_guard wl(write_mu_);
    BERTH_RETURN_IF_ERROR(ReloadState(/*fresh=*/true));
    if (!options_.path.empty()) {
      // Checkpoints (copying the WAL back into the database, with its own fsync) run on a
      // connection of their own in the background, never inside a writer's commit: a commit
      // costs one WAL append and one fsync, with no periodic multi-millisecond stall.
      checkpointer_ = std::make_unique<Conn>();
      BERTH_RETURN_IF_ERROR(checkpointer_->Open(options_.path, options_.sync, /*writer_=*/false));
      BERTH_RETURN_IF_ERROR(writer_->Exec("PRAGMA wal_autocheckpoint=0;"));
      sqlite3_wal_hook(writer_->db(), &Impl::OnWalCommit, this);
      checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
    }
    hub_ = std::make_shared<WatchHub>();
    hub_->Start();
    if (options_.expiry_thread) {
      expiry_thread_ = std::thread([this] { ExpiryLoop(); });
    }
    return Status::Ok();
  }

  // Requires write_mu_. Reads revision, compaction, lease counter and leases back from the
  // database (at open, or after a failed transaction rolled back). Leases not already known
  // get a fresh full TTL: the clock does not survive a restart.
  Status ReloadState(bool fresh) {
    {
      Query q(*writer_, kCurrentRevision);
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) return Internal("embedded store: no current revision");
      revision_ = q.Int(0);
    }
    BERTH_ASSIGN_OR_RETURN(compacted_, GetMeta("compacted"));
    BERTH_ASSIGN_OR_RETURN(next_lease_, GetMeta("next_lease"));
    std::unordered_map<LeaseId, LeaseState> loaded;
    const TimePoint now = options_.clock->Now();
    Query q(*writer_, kAllLeases);
    while (true) {
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      LeaseState l{q.Int(1), now + std::chrono::seconds(q.Int(1))};
      loaded.emplace(q.Int(0), l);
    }
    std::lock_guard ll(lease_mu_);
    if (!fresh) {
      for (auto& [id, l] : loaded) {
        auto it = leases_.find(id);
        if (it != leases_.end()) l.deadline = it->second.deadline;
      }
    }
    leases_ = std::move(loaded);
    return Status::Ok();
  }

  Result<int64_t> GetMeta(const char* name) {
    Query q(*writer_, kGetMeta);
    q.BindText(1, name);
    BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return Internal(std::string("embedded store: meta row missing: ") + name);
    return q.Int(0);
  }

  Status SetMeta(const char* name, int64_t value) {
    Query q(*writer_, kSetMeta);
    q.BindText(1, name).Bind(2, value);
    return q.Run();
  }

  // --- group commit -------------------------------------------------------------------------

  // Runs `apply` inside a write transaction, possibly together with other callers' writes
  // (group commit: one transaction and one fsync for the lot). Returns the store revision
  // after the op once the transaction is durable and its events are published.
  Result<int64_t> Submit(const ApplyFn& apply) {
    WriteRequest req;
    req.apply = &apply;
    std::unique_lock lk(queue_mu_);
    pending_.push_back(&req);
    queue_cv_.wait(lk, [&] { return req.done || !committing_; });
    if (!req.done) {
      // This caller leads: it commits everything queued so far, its own write included.
      committing_ = true;
      std::vector<WriteRequest*> batch;
      batch.swap(pending_);
      lk.unlock();
      RunBatch(batch);
      lk.lock();
      committing_ = false;
      for (WriteRequest* r : batch) r->done = true;
      lk.unlock();
      queue_cv_.notify_all();
    }
    if (!req.status.ok()) return req.status;
    return req.revision;
  }

  void RunBatch(const std::vector<WriteRequest*>& batch) {
    std::lock_guard wl(write_mu_);
    auto fail_all = [&](const Status& s) {
      for (WriteRequest* r : batch) r->status = s;
    };
    Status s = RunStmt(*writer_, kBeginWrite);
    if (!s.ok()) return fail_all(s);
    // Savepoints isolate one op's failure from the rest of a batch; a lone op just rolls
    // back the whole transaction.
    const bool single = batch.size() == 1;
    bool reload = false;
    std::vector<RevisionEvents> published;
    for (WriteRequest* r : batch) {
      OpCtx ctx;
      ctx.revision = revision_ + 1;
      if (!single) {
        s = RunStmt(*writer_, kSavepoint);
        if (!s.ok()) {
          r->status = s;
          continue;
        }
      }
      r->status = (*r->apply)(ctx);
      if (r->status.ok()) {
        if (!single) r->status = RunStmt(*writer_, kRelease);
      } else if (!single) {
        RunStmt(*writer_, kRollbackTo).IgnoreError();
        RunStmt(*writer_, kRelease).IgnoreError();
      }
      if (!r->status.ok()) {
        reload |= r->status.code() == Code::kInternal;
        continue;
      }
      if (!ctx.events.empty()) {
        revision_ = ctx.revision;
        published.push_back({ctx.revision, std::move(ctx.events)});
      }
      r->revision = revision_;
    }
    if (single && !batch[0]->status.ok()) {
      RunStmt(*writer_, kRollback).IgnoreError();
      if (reload) ReloadState(false).IgnoreError();
      return;
    }
    // The revision is not written anywhere but in the history rows: one page less per commit.
    s = RunStmt(*writer_, kCommit);
    if (!s.ok()) {
      RunStmt(*writer_, kRollback).IgnoreError();
      ReloadState(false).IgnoreError();
      for (WriteRequest* r : batch) {
        if (r->status.ok()) r->status = s;
      }
      return;
    }
    if (reload) ReloadState(false).IgnoreError();
    // Still under write_mu_: watches see revisions in order, and none registers in between.
    hub_->Publish(published);
  }

  // --- operations inside a write transaction (write_mu_ held) ---------------------------------

  Status CheckLease(LeaseId lease) {
    if (lease == 0) return Status::Ok();
    std::lock_guard ll(lease_mu_);
    auto it = leases_.find(lease);
    if (it == leases_.end() || it->second.deadline <= options_.clock->Now()) {
      return NotFound("lease " + std::to_string(lease) + " not found");
    }
    return Status::Ok();
  }

  Status AddHistory(OpCtx& ctx, const Event& e) {
    Query q(*writer_, kInsertHistory);
    q.Bind(1, ctx.revision)
        .Bind(2, ctx.sub++)
        .Bind(3, static_cast<int64_t>(e.type == Event::Type::kPut ? 0 : 1))
        .Bind(4, e.kv.key)
        .Bind(5, e.kv.value)
        .Bind(6, e.kv.create_revision)
        .Bind(7, e.kv.version)
        .Bind(8, e.kv.lease);
    return q.Run();
  }

  Status PutKey(OpCtx& ctx, std::string_view key, std::string_view value, LeaseId lease) {
    BERTH_RETURN_IF_ERROR(CheckLease(lease));
    Event e;
    e.type = Event::Type::kPut;
    e.kv.key = std::string(key);
    e.kv.value = std::string(value);
    e.kv.mod_revision = ctx.revision;
    e.kv.lease = lease;
    {
      Query q(*writer_, kGetKv);
      q.Bind(1, key);
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      e.kv.create_revision = row ? q.Int(1) : ctx.revision;
      e.kv.version = row ? q.Int(3) + 1 : 1;
    }
    {
      Query q(*writer_, kUpsertKv);
      q.Bind(1, key)
          .Bind(2, value)
          .Bind(3, e.kv.create_revision)
          .Bind(4, e.kv.mod_revision)
          .Bind(5, e.kv.version)
          .Bind(6, lease);
      BERTH_RETURN_IF_ERROR(q.Run());
    }
    BERTH_RETURN_IF_ERROR(AddHistory(ctx, e));
    ctx.events.push_back(std::move(e));
    return Status::Ok();
  }

  Status RecordDeletes(OpCtx& ctx, std::vector<std::string>& keys) {
    std::sort(keys.begin(), keys.end());  // etcd reports a range's deletes in key order
    for (std::string& key : keys) {
      Event e;
      e.type = Event::Type::kDelete;
      e.kv.key = std::move(key);
      e.kv.mod_revision = ctx.revision;
      BERTH_RETURN_IF_ERROR(AddHistory(ctx, e));
      ctx.events.push_back(std::move(e));
    }
    return Status::Ok();
  }

  Result<int64_t> DeleteKey(OpCtx& ctx, std::string_view key) {
    Query q(*writer_, kDeleteKey);
    q.Bind(1, key);
    BERTH_RETURN_IF_ERROR(q.Run());
    if (sqlite3_changes(writer_->db()) == 0) return int64_t{0};
    std::vector<std::string> keys{std::string(key)};
    BERTH_RETURN_IF_ERROR(RecordDeletes(ctx, keys));
    return int64_t{1};
  }

  // Collects the keys a DELETE ... RETURNING key removed.
  Status CollectKeys(Query& q, std::vector<std::string>& keys) {
    while (true) {
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) return Status::Ok();
      keys.push_back(q.Blob(0));
    }
  }

  Result<int64_t> DeleteRange(OpCtx& ctx, std::string_view prefix) {
    const std::string end = PrefixEnd(prefix);
    std::vector<std::string> keys;
    {
      Query q(*writer_, end.empty() ? kDeleteAll : kDeleteTo);
      q.Bind(1, prefix);
      if (!end.empty()) q.Bind(2, end);
      BERTH_RETURN_IF_ERROR(CollectKeys(q, keys));
    }
    const auto n = static_cast<int64_t>(keys.size());
    BERTH_RETURN_IF_ERROR(RecordDeletes(ctx, keys));
    return n;
  }

  // Ends a lease: deletes its keys (one revision, if any) and its row.
  Status EndLease(OpCtx& ctx, LeaseId lease) {
    {
      std::lock_guard ll(lease_mu_);
      leases_.erase(lease);
    }
    std::vector<std::string> keys;
    {
      Query q(*writer_, kDeleteLeaseKeys);
      q.Bind(1, lease);
      BERTH_RETURN_IF_ERROR(CollectKeys(q, keys));
    }
    BERTH_RETURN_IF_ERROR(RecordDeletes(ctx, keys));
    Query q(*writer_, kDeleteLease);
    q.Bind(1, lease);
    return q.Run();
  }

  Result<bool> Holds(const Compare& c) {
    Query q(*writer_, kGetKv);
    q.Bind(1, c.key);
    BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
    int cmp = 0;
    if (c.target == Compare::Target::kValue) {
      // As in etcd: a value compare on a missing key fails, whatever the operator.
      if (!row) return false;
      const std::string value = q.Blob(0);
      const int r = value.compare(c.value);  // bytewise, like etcd
      cmp = r < 0 ? -1 : (r > 0 ? 1 : 0);
    } else {
      int64_t actual = 0;
      if (row) {
        switch (c.target) {
          case Compare::Target::kVersion:
            actual = q.Int(3);
            break;
          case Compare::Target::kCreateRevision:
            actual = q.Int(1);
            break;
          case Compare::Target::kModRevision:
            actual = q.Int(2);
            break;
          case Compare::Target::kValue:
            break;
        }
      }
      cmp = actual < c.number ? -1 : (actual > c.number ? 1 : 0);
    }
    switch (c.op) {
      case Compare::Op::kEqual:
        return cmp == 0;
      case Compare::Op::kNotEqual:
        return cmp != 0;
      case Compare::Op::kLess:
        return cmp < 0;
      case Compare::Op::kGreater:
        return cmp > 0;
    }
    return InvalidArgument("unknown compare operator");
  }

  Status ApplyOp(OpCtx& ctx, const TxnOp& op) {
    switch (op.kind) {
      case TxnOp::Kind::kPut:
        return PutKey(ctx, op.key, op.value, op.lease);
      case TxnOp::Kind::kDelete:
        return DeleteKey(ctx, op.key).status();
      case TxnOp::Kind::kDeletePrefix:
        return DeleteRange(ctx, op.key).status();
    }
    return InvalidArgument("unknown transaction op");
  }

  // --- reads ---------------------------------------------------------------------------------

  // On disk, reads run on their own WAL connections (one per concurrent reader) and never wait
  // for a commit's fsync; in memory there is only the writer connection.
  class Reader {
   public:
    Reader(Impl& impl) : impl_(impl) {}  // NOLINT(google-explicit-constructor)
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader() {
      if (conn_ != nullptr) {
        std::lock_guard lk(impl_.reader_mu_);
        impl_.readers_.push_back(std::move(conn_));
      } else if (locked_) {
        impl_.write_mu_.unlock();
      }
    }
    Status Acquire() {
      if (impl_.options_.path.empty()) {
        impl_.write_mu_.lock();
        locked_ = true;
        return Status::Ok();
      }
      {
        std::lock_guard lk(impl_.reader_mu_);
        if (!impl_.readers_.empty()) {
          conn_ = std::move(impl_.readers_.back());
          impl_.readers_.pop_back();
          return Status::Ok();
        }
      }
      auto conn = std::make_unique<Conn>();
      BERTH_RETURN_IF_ERROR(conn->Open(impl_.options_.path, impl_.options_.sync, false));
      conn_ = std::move(conn);
      return Status::Ok();
    }
    const Conn& conn() const { return conn_ != nullptr ? *conn_ : *impl_.writer_; }
    bool shared_writer() const { return locked_; }

   private:
    Impl& impl_;
    std::unique_ptr<Conn> conn_;
    bool locked_ = false;
  };

  static KeyValue ReadKv(const Query& q, int first) {
    KeyValue kv;
    kv.value = q.Blob(first);
    kv.create_revision = q.Int(first + 1);
    kv.mod_revision = q.Int(first + 2);
    kv.version = q.Int(first + 3);
    kv.lease = q.Int(first + 4);
    return kv;
  }

  Result<std::optional<KeyValue>> Get(std::string_view key) {
    Reader r(*this);
    BERTH_RETURN_IF_ERROR(r.Acquire());
    Query q(r.conn(), kGetKv);
    q.Bind(1, key);
    BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) return std::optional<KeyValue>();
    KeyValue kv = ReadKv(q, 0);
    kv.key = std::string(key);
    return std::optional<KeyValue>(std::move(kv));
  }

  Result<RangeResult> Range(std::string_view prefix, int64_t limit) {
    if (limit < 0) return InvalidArgument("negative range limit");
    Reader r(*this);
    BERTH_RETURN_IF_ERROR(r.Acquire());
    const Conn& c = r.conn();
    // A read transaction makes the listing and its revision one snapshot.
    if (!r.shared_writer()) BERTH_RETURN_IF_ERROR(RunStmt(c, kBeginRead));
    Result<RangeResult> res = RangeIn(c, prefix, limit, r.shared_writer());
    if (!r.shared_writer()) RunStmt(c, kCommit).IgnoreError();
    return res;
  }

  Result<RangeResult> RangeIn(const Conn& c, std::string_view prefix, int64_t limit,
                              bool under_write_lock) {
    RangeResult out;
    if (under_write_lock) {
      out.revision = revision_;
    } else {
      Query q(c, kCurrentRevision);
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) return Internal("embedded store: no current revision");
      out.revision = q.Int(0);
    }
    const std::string end = PrefixEnd(prefix);
    {
      Query q(c, end.empty() ? kRangeAll : kRangeTo);
      q.Bind(1, prefix).Bind(3, limit == 0 ? int64_t{-1} : limit);
      if (!end.empty()) q.Bind(2, end);
      while (true) {
        BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
        if (!row) break;
        KeyValue kv = ReadKv(q, 1);
        kv.key = q.Blob(0);
        out.kvs.push_back(std::move(kv));
      }
    }
    out.count = static_cast<int64_t>(out.kvs.size());
    if (limit > 0 && out.count == limit) {
      Query q(c, end.empty() ? kCountAll : kCountTo);
      q.Bind(1, prefix);
      if (!end.empty()) q.Bind(2, end);
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      if (row) out.count = q.Int(0);
    }
    out.more = out.count > static_cast<int64_t>(out.kvs.size());
    return out;
  }

  // --- watches -------------------------------------------------------------------------------

  Result<WatchPtr> AddWatch(std::string_view prefix, int64_t start_revision,
                            WatchCallback callback) {
    if (start_revision < 0) return InvalidArgument("negative watch start revision");
    if (!callback) return InvalidArgument("watch without a callback");
    auto w = std::make_shared<WatchState>();
    w->prefix = std::string(prefix);
    w->callback = std::move(callback);
    std::vector<WatchResponse> initial;
    bool live = true;
    {
      // Under the write lock no commit publishes, so history up to `revision` plus every
      // later publication is each event exactly once.
      std::lock_guard wl(write_mu_);
      if (start_revision > 0 && start_revision < compacted_) {
        WatchResponse resp;
        resp.status = Compacted("embedded store: revision " + std::to_string(start_revision) +
                                " has been compacted (at " + std::to_string(compacted_) + ")");
        resp.compact_revision = compacted_;
        initial.push_back(std::move(resp));
        live = false;
      } else {
        const int64_t from = start_revision == 0 ? revision_ + 1 : start_revision;
        w->min_revision = from;
        if (from <= revision_) BERTH_RETURN_IF_ERROR(ReadHistory(*w, from, initial));
      }
      hub_->Add(w, std::move(initial), live);
    }
    return WatchPtr(std::make_unique<EmbeddedWatch>(hub_, std::move(w)));
  }

  // Requires write_mu_. One response per revision, events under the watch's prefix only.
  Status ReadHistory(const WatchState& w, int64_t from, std::vector<WatchResponse>& out) {
    Query q(*writer_, kHistoryFrom);
    q.Bind(1, from);
    int64_t last = 0;
    while (true) {
      BERTH_ASSIGN_OR_RETURN(bool row, q.Step());
      if (!row) break;
      std::string key = q.Blob(2);
      if (!HasPrefix(key, w.prefix)) continue;
      const int64_t rev = q.Int(0);
      if (rev != last || out.empty()) out.emplace_back();
      last = rev;
      Event e;
      e.type = q.Int(1) == 0 ? Event::Type::kPut : Event::Type::kDelete;
      e.kv.key = std::move(key);
      e.kv.mod_revision = rev;
      if (e.type == Event::Type::kPut) {
        e.kv.value = q.Blob(3);
        e.kv.create_revision = q.Int(4);
        e.kv.version = q.Int(5);
        e.kv.lease = q.Int(6);
      }
      out.back().events.push_back(std::move(e));
    }
    return Status::Ok();
  }

  // --- checkpoints ---------------------------------------------------------------------------

  // SQLite calls this after each commit on the writer, with the WAL's size in pages.
  static int OnWalCommit(void* arg, sqlite3* /*db*/, const char* /*name*/, int pages) {
    auto* self = static_cast<Impl*>(arg);
    if (pages >= kCheckpointPages) {
      {
        std::lock_guard lk(self->checkpoint_mu_);
        self->checkpoint_wanted_ = true;
      }
      self->checkpoint_cv_.notify_one();
    }
    return SQLITE_OK;
  }

  void CheckpointLoop() {
    std::unique_lock lk(checkpoint_mu_);
    while (true) {
      checkpoint_cv_.wait(lk, [&] { return checkpoint_stop_ || checkpoint_wanted_; });
      if (checkpoint_stop_) return;
      checkpoint_wanted_ = false;
      lk.unlock();
      // PASSIVE: never blocks readers or the writer. The first pass copies the bulk of the
      // log without any lock; under continuous writes it can never catch up, so the WAL would
      // never start over and would grow without bound (each fsync then also pays for the file
      // growing). A second pass under the write lock copies only the frames appended
      // meanwhile, after which the writer's next transaction restarts the log from the top.
      sqlite3_wal_checkpoint_v2(checkpointer_->db(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                nullptr);
      {
        std::lock_guard wl(write_mu_);
        sqlite3_wal_checkpoint_v2(checkpointer_->db(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                  nullptr);
      }
      lk.lock();
    }
  }

  // --- leases ------------------------------------------------------------------------------

  int ExpireLeases() {
    std::vector<LeaseId> due;
    {
      std::lock_guard ll(lease_mu_);
      const TimePoint now = options_.clock->Now();
      for (const auto& [id, l] : leases_) {
        if (l.deadline <= now) due.push_back(id);
      }
    }
    std::sort(due.begin(), due.end());
    int ended = 0;
    for (LeaseId id : due) {
      bool expired = false;
      const ApplyFn apply = [&](OpCtx& ctx) -> Status {
        {
          // A keep-alive may have come in since the scan.
          std::lock_guard ll(lease_mu_);
          auto it = leases_.find(id);
          if (it == leases_.end() || it->second.deadline > options_.clock->Now()) {
            return Status::Ok();
          }
        }
        expired = true;
        return EndLease(ctx, id);
      };
      if (Submit(apply).ok() && expired) ++ended;
    }
    return ended;
  }

  void ExpiryLoop() {
    std::unique_lock lk(expiry_mu_);
    while (!stopping_) {
      // Real time paces the scan; the injected clock decides what has expired.
      expiry_cv_.wait_for(lk, std::chrono::milliseconds(100), [&] { return stopping_; });
      if (stopping_) break;
      lk.unlock();
      ExpireLeases();
      lk.lock();
    }
  }

  EmbeddedOptions options_;

  std::mutex write_mu_;  // serializes the writer connection and everything below it
  std::unique_ptr<Conn> writer_;
  int64_t revision_ = 1;    // guarded by write_mu_; etcd's revision also starts at 1
  int64_t compacted_ = 0;   // guarded by write_mu_
  int64_t next_lease_ = 1;  // guarded by write_mu_

  std::mutex lease_mu_;  // guards `leases_`; taken after write_mu_, or alone by KeepAlive
  std::unordered_map<LeaseId, LeaseState> leases_;

  std::mutex queue_mu_;  // group commit: guards pending_, committing_, WriteRequest::done
  std::condition_variable queue_cv_;
  std::vector<WriteRequest*> pending_;
  bool committing_ = false;

  std::mutex reader_mu_;  // guards readers_: idle read connections (on disk only)
  std::vector<std::unique_ptr<Conn>> readers_;

  std::shared_ptr<WatchHub> hub_;

  static constexpr int kCheckpointPages = 1000;  // SQLite's own auto-checkpoint default
  std::unique_ptr<Conn> checkpointer_;           // used by checkpoint_thread_ only
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;  // guarded by checkpoint_mu_
  bool checkpoint_stop_ = false;    // guarded by checkpoint_mu_
  std::thread checkpoint_thread_;

  std::mutex expiry_mu_;
  std::condition_variable expiry_cv_;
  bool stopping_ = false;  // guarded by expiry_mu_
  std::thread expiry_thread_;
};

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<EmbeddedStore>> EmbeddedStore::Open(const EmbeddedOptions& options) {
  if (options.clock == nullptr) return InvalidArgument("embedded store: no clock");
  auto impl = std::make_unique<Impl>(options);
  BERTH_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<EmbeddedStore>(new EmbeddedStore(std::move(impl)));
}

EmbeddedStore::EmbeddedStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EmbeddedStore::~EmbeddedStore() = default;

Result<std::optional<KeyValue>> EmbeddedStore::Get(std::string_view key) {
  return impl_->Get(key);
}

Result<RangeResult> EmbeddedStore::Range(std::string_view prefix, int64_t limit) {
  return impl_->Range(prefix, limit);
}

Result<int64_t> EmbeddedStore::Put(std::string_view key, std::string_view value, LeaseId lease) {
  if (key.empty()) return InvalidArgument("empty key");
  return impl_->Submit([&](Impl::OpCtx& ctx) { return impl_->PutKey(ctx, key, value, lease); });
}

Result<int64_t> EmbeddedStore::Delete(std::string_view key) {
  if (key.empty()) return InvalidArgument("empty key");
  int64_t deleted = 0;
  const Impl::ApplyFn apply = [&](Impl::OpCtx& ctx) -> Status {
    BERTH_ASSIGN_OR_RETURN(deleted, impl_->DeleteKey(ctx, key));
    return Status::Ok();
  };
  BERTH_RETURN_IF_ERROR(impl_->Submit(apply).status());
  return deleted;
}

Result<int64_t> EmbeddedStore::DeletePrefix(std::string_view prefix) {
  int64_t deleted = 0;
  const Impl::ApplyFn apply = [&](Impl::OpCtx& ctx) -> Status {
    BERTH_ASSIGN_OR_RETURN(deleted, impl_->DeleteRange(ctx, prefix));
    return Status::Ok();
  };
  BERTH_RETURN_IF_ERROR(impl_->Submit(apply).status());
  return deleted;
}

Result<TxnResult> EmbeddedStore::Txn(const std::vector<Compare>& compares,
                                     const std::vector<TxnOp>& success,
                                     const std::vector<TxnOp>& failure) {
  for (const auto* ops : {&success, &failure}) {
    for (const TxnOp& op : *ops) {
      if (op.key.empty() && op.kind != TxnOp::Kind::kDeletePrefix) {
        return InvalidArgument("empty key in transaction");
      }
    }
  }
  TxnResult result;
  BERTH_ASSIGN_OR_RETURN(result.revision, impl_->Submit([&](Impl::OpCtx& ctx) -> Status {
    bool held = true;
    for (const Compare& c : compares) {
      BERTH_ASSIGN_OR_RETURN(held, impl_->Holds(c));
      if (!held) break;
    }
    result.succeeded = held;
    for (const TxnOp& op : held ? success : failure) {
      BERTH_RETURN_IF_ERROR(impl_->ApplyOp(ctx, op));
    }
    return Status::Ok();
  }));
  return result;
}

Result<LeaseId> EmbeddedStore::GrantLease(std::chrono::seconds ttl) {
  if (ttl.count() <= 0) return InvalidArgument("lease TTL must be positive");
  LeaseId id = 0;
  Impl& s = *impl_;
  const Impl::ApplyFn apply = [&](Impl::OpCtx&) -> Status {
    id = s.next_lease_;  // ids only grow, persisted: never reused, even across restarts
    {
      Query q(*s.writer_, kInsertLease);
      q.Bind(1, id).Bind(2, static_cast<int64_t>(ttl.count()));
      BERTH_RETURN_IF_ERROR(q.Run());
    }
    BERTH_RETURN_IF_ERROR(s.SetMeta("next_lease", id + 1));
    s.next_lease_ = id + 1;
    std::lock_guard ll(s.lease_mu_);
    s.leases_[id] = {ttl.count(), s.options_.clock->Now() + ttl};
    return Status::Ok();
  };
  BERTH_RETURN_IF_ERROR(s.Submit(apply).status());
  return id;
}

Result<std::chrono::seconds> EmbeddedStore::KeepAlive(LeaseId lease) {
  std::lock_guard ll(impl_->lease_mu_);
  auto it = impl_->leases_.find(lease);
  const TimePoint now = impl_->options_.clock->Now();
  // Past its deadline a lease has ended, even if the expiry scan has not removed it yet.
  if (it == impl_->leases_.end() || it->second.deadline <= now) {
    return NotFound("lease " + std::to_string(lease) + " not found");
  }
  const std::chrono::seconds ttl(it->second.ttl_seconds);
  it->second.deadline = now + ttl;
  return ttl;
}

Status EmbeddedStore::RevokeLease(LeaseId lease) {
  return impl_
      ->Submit([&](Impl::OpCtx& ctx) -> Status {
        {
          std::lock_guard ll(impl_->lease_mu_);
          if (impl_->leases_.count(lease) == 0) {
            return NotFound("lease " + std::to_string(lease) + " not found");
          }
        }
        return impl_->EndLease(ctx, lease);
      })
      .status();
}

Result<WatchPtr> EmbeddedStore::Watch(std::string_view prefix, int64_t start_revision,
                                      WatchCallback callback) {
  return impl_->AddWatch(prefix, start_revision, std::move(callback));
}

Status EmbeddedStore::Compact(int64_t revision) {
  return impl_
      ->Submit([&](Impl::OpCtx&) -> Status {
        Impl& s = *impl_;
        // At or below the compaction point there is nothing left to do: not an error (etcd
        // itself answers ErrCompacted, which EtcdStore also maps to success).
        if (revision <= s.compacted_) return Status::Ok();
        if (revision > s.revision_) {
          return InvalidArgument("embedded store: compact revision " + std::to_string(revision) +
                                 " is in the future (current " + std::to_string(s.revision_) + ")");
        }
        {
          Query q(*s.writer_, kCompactHistory);
          q.Bind(1, revision);
          BERTH_RETURN_IF_ERROR(q.Run());
        }
        BERTH_RETURN_IF_ERROR(s.SetMeta("compacted", revision));
        s.compacted_ = revision;
        return Status::Ok();
      })
      .status();
}

std::string EmbeddedStore::Describe() const {
  return impl_->options_.path.empty() ? "memory:" : "embedded:" + impl_->options_.path;
}

int EmbeddedStore::ExpireLeases() {
  return impl_->ExpireLeases();
}

}  // namespace berth::store
