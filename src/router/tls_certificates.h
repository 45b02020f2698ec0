// TlsCertificates: the router's HTTPS certificates by server name, chosen per connection by
// SNI, replaceable while connections are being served.
//
// Each entry is a host pattern (as routes use them: "a.example.com", "*.example.com", or "*"
// for clients that send no or an unknown server name) with its PEM certificate chain and
// private key, held as a ready OpenSSL context. A handshake looks the name up (exact, then the
// wildcards from the most specific, then "*") and switches the connection to that context;
// without a match the handshake fails with unrecognized_name. Replacing or removing an entry
// affects new handshakes only; established connections keep the context they started with
// (OpenSSL reference-counts it).
//
// CertWatcher keeps a TlsCertificates current with the store's certs/<host> keys, whose JSON
// value is {"cert_pem": "...", "key_pem": "..."} (docs/router.md).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/status.h"
#include "store/prefix_watcher.h"
#include "store/store.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace boost::asio::ssl {
class context;
}

namespace berth::router {

class TlsCertificates : public std::enable_shared_from_this<TlsCertificates> {
 public:
  TlsCertificates();
  ~TlsCertificates();

  // Adds or replaces the certificate for `host` (InvalidArgument if the PEMs do not load or
  // the key does not match the certificate).
  Status Set(std::string_view host, std::string_view cert_pem, std::string_view key_pem);
  void Remove(std::string_view host);
  void Clear();
  size_t size() const;

  // The context a listener's connections start with: its SNI callback picks the certificate.
  Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerContext();

  // The context for a server name (nullptr: none); the caller holds a reference.
  SSL_CTX* Find(std::string_view server_name) const;

 private:
  struct Entry;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> by_host_;  // guarded by mu_
};

class CertWatcher {
 public:
  CertWatcher(store::Store& store, const std::string& key_prefix,
              std::shared_ptr<TlsCertificates> certs,
              store::PrefixWatcher::Options options = store::PrefixWatcher::Options());
  ~CertWatcher();
  void Start();
  void Stop();

 private:
  void Apply(const store::KeyValue& kv, bool put);

  const std::string prefix_;  // <key_prefix>certs/
  std::shared_ptr<TlsCertificates> certs_;
  std::unique_ptr<store::PrefixWatcher> watcher_;
};

}  // namespace berth::router
