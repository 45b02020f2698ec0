#include "router/tls_certificates.h"

#include <utility>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ssl.hpp>
#include <nlohmann/json.hpp>

#include "router/route_table.h"

namespace berth::router {

struct TlsCertificates::Entry {
  SSL_CTX* ctx = nullptr;
  ~Entry() {
    if (ctx != nullptr) SSL_CTX_free(ctx);
  }
};

namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

int OnServerName(SSL* ssl, int* alert, void* arg) {
  auto* certs = static_cast<TlsCertificates*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  SSL_CTX* ctx = certs->Find(name == nullptr ? std::string_view() : std::string_view(name));
  if (ctx == nullptr) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  SSL_set_SSL_CTX(ssl, ctx);  // takes its own reference
  SSL_CTX_free(ctx);
  return SSL_TLSEXT_ERR_OK;
}

void Harden(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

}  // namespace

TlsCertificates::TlsCertificates() = default;
TlsCertificates::~TlsCertificates() = default;

Status TlsCertificates::Set(std::string_view host, std::string_view cert_pem,
                            std::string_view key_pem) {
  BERTH_ASSIGN_OR_RETURN(std::string h, NormalizeHostPattern(host));
  auto e = std::make_shared<Entry>();
  e->ctx = SSL_CTX_new(TLS_server_method());
  if (e->ctx == nullptr) return Internal("SSL_CTX_new: " + OpenSslError());
  Harden(e->ctx);
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  bool ok = cert != nullptr && SSL_CTX_use_certificate(e->ctx, cert) == 1;
  X509_free(cert);
  // The rest of the chain.
  while (ok) {
    X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (extra == nullptr) break;
    if (SSL_CTX_add_extra_chain_cert(e->ctx, extra) != 1) {
      X509_free(extra);
      ok = false;
    }
  }
  BIO_free(bio);
  ERR_clear_error();  // the end of the chain reads as an error
  if (!ok) return InvalidArgument("certificate for " + h + " does not load");
  bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ok = key != nullptr && SSL_CTX_use_PrivateKey(e->ctx, key) == 1 &&
       SSL_CTX_check_private_key(e->ctx) == 1;
  EVP_PKEY_free(key);
  if (!ok) return InvalidArgument("key for " + h + ": " + OpenSslError());
  std::lock_guard lock(mu_);
  by_host_[h] = std::move(e);
  return Status::Ok();
}

void TlsCertificates::Remove(std::string_view host) {
  auto h = NormalizeHostPattern(host);
  if (!h.ok()) return;
  std::lock_guard lock(mu_);
  by_host_.erase(*h);
}

void TlsCertificates::Clear() {
  std::lock_guard lock(mu_);
  by_host_.clear();
}

size_t TlsCertificates::size() const {
  std::lock_guard lock(mu_);
  return by_host_.size();
}

SSL_CTX* TlsCertificates::Find(std::string_view server_name) const {
  char buf[256];
  size_t n = server_name.empty() ? 0 : NormalizeHost(server_name, buf);
  std::string_view host(buf, n);
  std::lock_guard lock(mu_);
  auto take = [](const std::shared_ptr<Entry>& e) {
    SSL_CTX_up_ref(e->ctx);
    return e->ctx;
  };
  if (n > 0) {
    if (auto it = by_host_.find(host); it != by_host_.end()) return take(it->second);
    std::string pattern;
    for (size_t dot = host.find('.'); dot != std::string_view::npos;
         dot = host.find('.', dot + 1)) {
      pattern.assign("*.").append(host.substr(dot + 1));
      if (auto it = by_host_.find(pattern); it != by_host_.end()) return take(it->second);
    }
  }
  if (auto it = by_host_.find(std::string_view("*")); it != by_host_.end()) {
    return take(it->second);
  }
  return nullptr;
}

Result<std::shared_ptr<boost::asio::ssl::context>> TlsCertificates::MakeServerContext() {
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  Harden(c);
  SSL_CTX_callback_ctrl(c, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                        reinterpret_cast<void (*)()>(&OnServerName));
  SSL_CTX_set_tlsext_servername_arg(c, this);
  return ctx;
}

CertWatcher::CertWatcher(store::Store& store, const std::string& key_prefix,
                         std::shared_ptr<TlsCertificates> certs,
                         store::PrefixWatcher::Options options)
    : prefix_(key_prefix + "certs/"), certs_(std::move(certs)) {
  store::PrefixWatcher::Callbacks cb;
  cb.on_list = [this](const store::RangeResult& listing) {
    certs_->Clear();
    for (const auto& kv : listing.kvs) Apply(kv, true);
  };
  cb.on_events = [this](const std::vector<store::Event>& events) {
    for (const auto& ev : events) Apply(ev.kv, ev.type == store::Event::Type::kPut);
  };
  cb.on_error = [](const Status& st) {
    spdlog::warn("router: certificate watch failed ({}); keeping the certificates loaded",
                 st.ToString());
  };
  watcher_ = std::make_unique<store::PrefixWatcher>(store, prefix_, std::move(cb), options);
}

CertWatcher::~CertWatcher() {
  Stop();
}

void CertWatcher::Start() {
  watcher_->Start();
}

void CertWatcher::Stop() {
  watcher_->Stop();
}

void CertWatcher::Apply(const store::KeyValue& kv, bool put) {
  std::string_view host = std::string_view(kv.key).substr(prefix_.size());
  if (!put) {
    certs_->Remove(host);
    return;
  }
  auto j = nlohmann::json::parse(kv.value, nullptr, /*allow_exceptions=*/false);
  Status st = Status::Ok();
  if (j.is_discarded() || !j.is_object() || !j.contains("cert_pem") || !j.contains("key_pem") ||
      !j["cert_pem"].is_string() || !j["key_pem"].is_string()) {
    st = InvalidArgument("not a JSON object with cert_pem and key_pem strings");
  } else {
    st = certs_->Set(host, j["cert_pem"].get<std::string>(), j["key_pem"].get<std::string>());
  }
  if (!st.ok()) {
    certs_->Remove(host);
    spdlog::warn("router: ignoring certificate {}: {}", kv.key, st.message());
  }
}

}  // namespace berth::router
