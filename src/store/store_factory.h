// Opens a Store from a URL: "etcd://HOST:PORT[,HOST:PORT...]", "embedded:DIR" (SQLite file
// DIR/store.db) or "memory:" (in-memory, for tests).
// Thread-safety: OpenStore is reentrant; the returned store is thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/clock.h"
#include "store/store.h"

namespace berth::store {

struct StoreTls {
  std::string ca_file;    // PEM CA bundle to verify the etcd servers; empty = plaintext
  std::string cert_file;  // PEM client certificate (optional)
  std::string key_file;   // PEM client key (optional)
};

Result<StorePtr> OpenStore(std::string_view url, const StoreTls& tls = {},
                           ClockPtr clock = SystemClock::Shared());

}  // namespace berth::store
