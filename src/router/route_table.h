// The route table: which backends serve a request, by Host and path.
//
// A route is one store key, routes/<host>/<route-id>, whose JSON value names one backend
// (docs/router.md). Routes with the same host and path prefix form a RouteGroup whose backends
// share the load (round-robin or least-connections). A RouteTable is an immutable snapshot of
// every group; worker threads read it without locks while RouteTableBuilder, on the watcher's
// thread, makes the next one. Between snapshots the builder shares every host entry that did
// not change, and Backend objects (their dead-until time and open-request count) live on
// across snapshots, so passive health and balancing state survive route changes.
//
// Matching: the Host is lower-cased, its port and a trailing dot removed; an exact host wins
// over wildcards, `*.b.example.com` over `*.example.com`, and `*` catches every host. Within a
// host the longest path prefix that matches on a segment boundary wins; a host whose prefixes
// do not match the path falls through to the next, less specific, host pattern.
//
// Thread-safety: RouteTable, RouteGroup and Backend are shared between threads (their mutable
// parts are atomics). RouteTableBuilder is used by one thread. RouteTableHolder publishes
// snapshots from any thread to any number of readers.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace berth::router {

enum class Balance : uint8_t { kRoundRobin, kLeastConnections };

// One backend address. Shared by every group (and every snapshot) that names it.
struct Backend {
  uint64_t id = 0;      // unique in the process; keys the workers' connection pools
  std::string address;  // "127.0.0.1:8080" or "[::1]:8080"
  std::string ip;       // "127.0.0.1"
  uint16_t port = 0;
  // Passive health: steady_clock nanoseconds until which the backend is not tried.
  std::atomic<int64_t> dead_until_ns{0};
  std::atomic<int32_t> active{0};  // requests in flight (least-connections)
};
using BackendPtr = std::shared_ptr<Backend>;

// One route key's value, as parsed from the store.
struct RouteSpec {
  std::string host;         // normalized: lower case, "*.example.com", or "*"
  std::string id;           // the key's last segment
  std::string backend;      // "http://127.0.0.1:8080"
  std::string path_prefix;  // "/" or "/api" (no trailing slash but for "/")
  Balance balance = Balance::kRoundRobin;
  bool balance_set = false;

  bool operator==(const RouteSpec& o) const = default;
};

// Parses the key's <host>/<route-id> (after routes/) and its JSON value.
Result<RouteSpec> ParseRoute(std::string_view host_and_id, std::string_view json);

struct BackendAddress {
  std::string ip;
  uint16_t port = 0;
  std::string address;  // ip:port, brackets around IPv6
};
// "http://127.0.0.1:8080", "127.0.0.1:8080", "http://[::1]:80/", "http://localhost:9000".
// Only IP literals and localhost: the router resolves no names on its hot path.
Result<BackendAddress> ParseBackendUrl(std::string_view url);

// Lower-cases `raw` (a Host value or target authority) into `out`, without the port and a
// trailing dot. Returns the length, or 0 if the host is empty, too long (> 255) or malformed.
size_t NormalizeHost(std::string_view raw, char (&out)[256]);
// A host pattern as keys and certificates name it: "Example.COM" -> "example.com",
// "*.Example.com" -> "*.example.com", "*" stays; anything malformed is an error naming it.
Result<std::string> NormalizeHostPattern(std::string_view host);

struct RouteGroup {
  std::string prefix;  // "/" matches every path
  Balance balance = Balance::kRoundRobin;
  std::vector<BackendPtr> backends;       // ordered by route id
  mutable std::atomic<uint32_t> next{0};  // round-robin cursor
};

struct HostEntry {
  std::vector<std::unique_ptr<RouteGroup>> groups;  // longest prefix first

  const RouteGroup* Match(std::string_view path) const;
};
using HostEntryPtr = std::shared_ptr<const HostEntry>;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using HostMap = std::unordered_map<std::string, HostEntryPtr, StringHash, std::equal_to<>>;

// Host → entry, in shards, so that the next snapshot copies only the shards an update touches
// (a table of 10,000 hosts is not copied for one route change). A published map's shards are
// never modified again; the builder copies a shard before its first change in a snapshot.
class ShardedHostMap {
 public:
  static constexpr size_t kShards = 256;
  using Copied = std::vector<bool>;  // which shards this snapshot already owns

  ShardedHostMap() : shards_(kShards) {}
  const HostEntry* Find(std::string_view host) const {
    const auto& shard = shards_[ShardOf(host)];
    if (!shard) return nullptr;
    auto it = shard->find(host);
    return it == shard->end() ? nullptr : it->second.get();
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Sets (or with nullptr removes) `host`, copying its shard first unless `copied` says so.
  void Set(const std::string& host, HostEntryPtr entry, Copied& copied);

 private:
  static size_t ShardOf(std::string_view host) { return (StringHash{}(host) >> 24) % kShards; }
  std::vector<std::shared_ptr<HostMap>> shards_;
  size_t size_ = 0;
};

class RouteTable {
 public:
  // `host` must be normalized (NormalizeHost). nullptr: no route.
  const RouteGroup* Match(std::string_view host, std::string_view path) const;
  size_t host_count() const { return exact_.size() + wildcard_.size() + (any_ ? 1 : 0); }
  size_t route_count() const { return routes_; }
  int64_t revision() const { return revision_; }

 private:
  friend class RouteTableBuilder;
  ShardedHostMap exact_;     // "a.example.com"
  ShardedHostMap wildcard_;  // "*.example.com" is stored as "example.com"
  HostEntryPtr any_;         // "*"
  size_t routes_ = 0;
  int64_t revision_ = 0;  // the store revision the table reflects
};
using RouteTablePtr = std::shared_ptr<const RouteTable>;

// Makes snapshots from store listings and watch events. Keeps every route by key, and the
// previous snapshot to copy host entries from.
class RouteTableBuilder {
 public:
  // `routes_prefix`: the store prefix of route keys ("/berth/routes/"). `default_backend`: a
  // backend URL serving hosts no route matches ("" = 404), unless a "*" route exists.
  explicit RouteTableBuilder(std::string routes_prefix, std::string default_backend = "");

  // Replaces every route with the listing's. Malformed routes are skipped (and counted).
  RouteTablePtr Reset(const store::RangeResult& listing);
  // Applies watch events to a copy of the last snapshot: only the hosts they touch are rebuilt.
  RouteTablePtr Apply(const std::vector<store::Event>& events);

  uint64_t rejected() const { return rejected_; }
  const std::string& last_error() const { return last_error_; }

 private:
  // Parses one key; returns false (and counts it) if malformed.
  bool Parse(const store::KeyValue& kv, RouteSpec* spec);
  HostEntryPtr BuildHost(const std::map<std::string, RouteSpec>& routes);
  BackendPtr GetBackend(const BackendAddress& addr);
  void SetHost(RouteTable& t, const std::string& host, HostEntryPtr entry,
               ShardedHostMap::Copied& exact_copied, ShardedHostMap::Copied& wildcard_copied);
  void AddDefault(RouteTable& t);

  const std::string prefix_;
  const std::string default_backend_;
  // host -> route id -> spec, and the host of each key (for deletes).
  std::map<std::string, std::map<std::string, RouteSpec>> hosts_;
  std::unordered_map<std::string, std::string> key_host_;
  std::unordered_map<std::string, std::weak_ptr<Backend>> backends_;  // by address
  uint64_t next_backend_id_ = 1;
  RouteTablePtr last_;
  size_t routes_ = 0;
  uint64_t rejected_ = 0;
  std::string last_error_;
};

// Publishes the current snapshot. Readers keep their own copy and check `version()` (one
// relaxed atomic load) per request, taking the mutex only when it moved.
class RouteTableHolder {
 public:
  RouteTableHolder();
  void Publish(RouteTablePtr table);
  RouteTablePtr Get() const;
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  // Keeps a reader's copy current; cheap when nothing changed.
  class Reader {
   public:
    explicit Reader(const RouteTableHolder& holder) : holder_(holder) {}
    const RouteTable& Current() { return *CurrentPtr(); }
    // The snapshot itself, for a reader that keeps it across a suspension point.
    const RouteTablePtr& CurrentPtr() {
      uint64_t v = holder_.version();
      if (v != version_ || !table_) {
        table_ = holder_.Get();
        version_ = v;
      }
      return table_;
    }

   private:
    const RouteTableHolder& holder_;
    RouteTablePtr table_;
    uint64_t version_ = 0;
  };

 private:
  mutable std::mutex mu_;
  RouteTablePtr table_;  // guarded by mu_
  std::atomic<uint64_t> version_{0};
};

}  // namespace berth::router
