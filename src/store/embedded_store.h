// EmbeddedStore: the single-node Store backend, SQLite in WAL mode on disk (or in memory).
//
// It keeps etcd's model: one global revision bumped by every write transaction, per-key
// create/mod revision and version, a history of changes (for watches from past revisions)
// trimmed by Compact(), leases that expire by the injected Clock, and in-process watches.
// Every acknowledged write has been committed (and, with `sync`, fsynced) before the call
// returns, so a restart loses nothing acknowledged. On open, live leases are given a fresh TTL
// (as etcd does after a restart), since the clock does not survive the process.
//
// Thread-safety: all methods are thread-safe. Writes are serialized by one mutex; watch
// callbacks run on one dispatcher thread owned by the store, in revision order.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "store/store.h"

namespace berth::store {

struct EmbeddedOptions {
  std::string path;  // SQLite database file; "" = in memory (lost on close)
  ClockPtr clock = SystemClock::Shared();
  bool expiry_thread = true;  // expire leases from a background thread; false: call ExpireLeases()
  bool sync = true;           // fsync every commit (PRAGMA synchronous=FULL)
};

class EmbeddedStore final : public Store {
 public:
  static Result<std::unique_ptr<EmbeddedStore>> Open(const EmbeddedOptions& options);
  ~EmbeddedStore() override;

  Result<std::optional<KeyValue>> Get(std::string_view key) override;
  Result<RangeResult> Range(std::string_view prefix, int64_t limit = 0) override;
  Result<int64_t> Put(std::string_view key, std::string_view value, LeaseId lease = 0) override;
  Result<int64_t> Delete(std::string_view key) override;
  Result<int64_t> DeletePrefix(std::string_view prefix) override;
  Result<TxnResult> Txn(const std::vector<Compare>& compares, const std::vector<TxnOp>& success,
                        const std::vector<TxnOp>& failure = {}) override;
  Result<LeaseId> GrantLease(std::chrono::seconds ttl) override;
  Result<std::chrono::seconds> KeepAlive(LeaseId lease) override;
  Status RevokeLease(LeaseId lease) override;
  Result<WatchPtr> Watch(std::string_view prefix, int64_t start_revision,
                         WatchCallback callback) override;
  Status Compact(int64_t revision) override;
  std::string Describe() const override;

  // Ends every lease whose TTL has passed by the clock, deleting its keys (one revision per
  // lease). Returns how many leases ended. Called by the expiry thread, or by tests.
  int ExpireLeases();

 private:
  struct Impl;
  explicit EmbeddedStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::store
