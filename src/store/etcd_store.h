// EtcdStore: the Store backend that speaks etcd's v3 gRPC API to a real etcd cluster.
//
// One gRPC channel per endpoint. Calls go to the current endpoint; when it is unreachable (or
// answers with a transient error such as "no leader") the call moves to the next endpoint and
// retries, all within `request_timeout`. Reads, keep-alives and watches fail over freely; writes
// (Put, Delete, Txn, lease grant/revoke) fail over only when the request provably never reached
// a member, so a write is never applied twice: otherwise the error is returned and the caller
// re-reads. When no endpoint can be reached the result is kUnavailable, naming the endpoints.
// Each Watch owns one bidi stream and one reader thread; when the stream breaks it resumes on
// another endpoint from the last delivered revision + 1, so no event is lost or repeated.
//
// Thread-safety: every method may be called from any thread concurrently. Watches may outlive
// the store (they share its channels).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "store/store.h"

namespace berth::store {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "127.0.0.1:2379"
  std::string ca_file;                 // PEM CA bundle; TLS is used when set
  std::string cert_file;               // PEM client certificate (optional, with key_file)
  std::string key_file;                // PEM client key
  std::chrono::milliseconds request_timeout{
      5000};  // overall budget of one call, fail-over included
};

class EtcdConnection;  // the endpoints and their channels, shared with watches

class EtcdStore final : public Store {
 public:
  // Connects lazily: opening succeeds without a reachable member (the first call reports it).
  // Fails only on bad options (no endpoints, unreadable TLS files).
  static Result<std::unique_ptr<EtcdStore>> Open(const EtcdOptions& options);
  ~EtcdStore() override;

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

 private:
  explicit EtcdStore(std::shared_ptr<EtcdConnection> connection);
  std::shared_ptr<EtcdConnection> connection_;
};

// Same as EtcdStore::Open, as a StorePtr.
Result<StorePtr> OpenEtcdStore(const EtcdOptions& options);

}  // namespace berth::store
