// Store: the one interface to everything the cluster knows.
//
// A revisioned key/value store with the semantics of etcd v3: every write bumps one global
// revision; keys carry create/mod revisions and a version; leases (TTL, keep-alive, revoke)
// delete their keys when they end; watches deliver every change under a prefix, in revision
// order, from any revision not yet compacted. Two implementations pass one conformance suite
// (tests/store/store_conformance_test.cc): EtcdStore (a real etcd cluster over gRPC) and
// EmbeddedStore (SQLite in WAL mode, or in memory).
//
// Thread-safety: every method may be called from any thread concurrently. Watch callbacks run
// on a thread owned by the store, one at a time per watch, in revision order; they must be
// quick (post work elsewhere) and must not call Cancel() on their own watch.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace berth::store {

using LeaseId = int64_t;

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // number of puts since the key was (re)created; 0 = absent
  LeaseId lease = 0;
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // in key order
  int64_t revision = 0;       // the store revision this listing was read at
  bool more = false;          // true if `limit` cut the listing short
  int64_t count = 0;          // number of keys under the prefix (before the limit)
};

// One condition of a transaction, evaluated atomically with its operations.
// A key that does not exist has version, create and mod revision 0; any kValue compare on a
// missing key is false, whatever the operator (as in etcd).
struct Compare {
  enum class Target { kValue, kVersion, kCreateRevision, kModRevision };
  enum class Op { kEqual, kNotEqual, kLess, kGreater };

  std::string key;
  Target target = Target::kVersion;
  Op op = Op::kEqual;
  std::string value;   // for kValue
  int64_t number = 0;  // for the others

  static Compare ValueEquals(std::string key, std::string value) {
    return {std::move(key), Target::kValue, Op::kEqual, std::move(value), 0};
  }
  static Compare ModRevisionEquals(std::string key, int64_t rev) {
    return {std::move(key), Target::kModRevision, Op::kEqual, {}, rev};
  }
  static Compare VersionEquals(std::string key, int64_t version) {
    return {std::move(key), Target::kVersion, Op::kEqual, {}, version};
  }
  static Compare Absent(std::string key) { return VersionEquals(std::move(key), 0); }
  static Compare Present(std::string key) {
    return {std::move(key), Target::kVersion, Op::kGreater, {}, 0};
  }
};

struct TxnOp {
  enum class Kind { kPut, kDelete, kDeletePrefix };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  LeaseId lease = 0;

  static TxnOp Put(std::string key, std::string value, LeaseId lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease};
  }
  static TxnOp Delete(std::string key) { return {Kind::kDelete, std::move(key), {}, 0}; }
  static TxnOp DeletePrefix(std::string prefix) {
    return {Kind::kDeletePrefix, std::move(prefix), {}, 0};
  }
};

struct TxnResult {
  bool succeeded = false;  // whether the compares held (and `success` ops were applied)
  int64_t revision = 0;    // store revision after the transaction
};

struct Event {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: key and mod_revision (the deleting revision) only
};

// What a watch callback receives: a batch of events in revision order, or a final error.
// After a callback with !status.ok() the watch delivers nothing more. Code::kCompacted means
// the start revision was compacted away: list again and watch from the listing's revision + 1.
struct WatchResponse {
  std::vector<Event> events;
  Status status;
  int64_t compact_revision = 0;  // set with Code::kCompacted
};
using WatchCallback = std::function<void(const WatchResponse&)>;

class Watch {
 public:
  virtual ~Watch() = default;  // implementations cancel on destruction
  // Stops delivery. When Cancel returns, no callback is running or will run.
  virtual void Cancel() = 0;
};
using WatchPtr = std::unique_ptr<Watch>;

class Store {
 public:
  virtual ~Store() = default;

  // Returns nullopt if the key does not exist.
  virtual Result<std::optional<KeyValue>> Get(std::string_view key) = 0;
  // Every key starting with `prefix` ("" = all keys), in key order; limit 0 = no limit.
  virtual Result<RangeResult> Range(std::string_view prefix, int64_t limit = 0) = 0;
  // Returns the revision of the write.
  virtual Result<int64_t> Put(std::string_view key, std::string_view value, LeaseId lease = 0) = 0;
  // Return the number of keys deleted.
  virtual Result<int64_t> Delete(std::string_view key) = 0;
  virtual Result<int64_t> DeletePrefix(std::string_view prefix) = 0;
  // If every compare holds, applies `success`, else `failure`; atomically, as one revision.
  virtual Result<TxnResult> Txn(const std::vector<Compare>& compares,
                                const std::vector<TxnOp>& success,
                                const std::vector<TxnOp>& failure = {}) = 0;

  // Leases. A key put with a lease is deleted when the lease expires or is revoked.
  virtual Result<LeaseId> GrantLease(std::chrono::seconds ttl) = 0;
  // Refreshes the lease to its full TTL and returns that TTL; NotFound if it already ended.
  virtual Result<std::chrono::seconds> KeepAlive(LeaseId lease) = 0;
  virtual Status RevokeLease(LeaseId lease) = 0;

  // Watches every key under `prefix`, delivering events with revision >= start_revision
  // (0 = only changes after now). A compacted start revision is reported through the
  // callback as Code::kCompacted.
  virtual Result<WatchPtr> Watch(std::string_view prefix, int64_t start_revision,
                                 WatchCallback callback) = 0;

  // Discards history before `revision`; watches from earlier revisions then fail.
  virtual Status Compact(int64_t revision) = 0;

  // "embedded:/var/lib/berth/store.db", "etcd://127.0.0.1:2379,..."
  virtual std::string Describe() const = 0;
};
using StorePtr = std::unique_ptr<Store>;

// The smallest key greater than every key starting with `prefix` ("" if there is none):
// etcd's range_end for a prefix.
std::string PrefixEnd(std::string_view prefix);

}  // namespace berth::store
