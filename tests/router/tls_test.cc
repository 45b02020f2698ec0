// HTTPS termination: certificates chosen by SNI (exact, wildcard, catch-all), replaced live,
// loaded from the store. Certificates are made at test time with OpenSSL.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "router/http_proxy.h"
#include "router/tls_certificates.h"
#include "store/embedded_store.h"
#include "test_http.h"

namespace berth::router {
namespace {

using testing::FieldOf;
using testing::TestBackend;

struct Pem {
  std::string cert;
  std::string key;
};

std::string BioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(n));
  BIO_free(bio);
  return s;
}

// A self-signed certificate for `cn` (also its DNS subjectAltName), with an EC P-256 key.
Pem MakeCert(const std::string& cn, long serial) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  std::string san = "DNS:" + cn;
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x, key, EVP_sha256());
  Pem p;
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  p.cert = BioString(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  p.key = BioString(b);
  X509_free(x);
  EVP_PKEY_free(key);
  return p;
}

struct TlsResult {
  bool handshake = false;
  std::string cn;  // the certificate's common name
  long serial = 0;
  int status = 0;
  std::string head;
  std::string body;
};

// Connects with `sni` (none if empty), sends one GET with Host `sni`, reads the response.
TlsResult HttpsGet(uint16_t port, const std::string& sni, const std::string& path = "/") {
  TlsResult r;
  int fd = testing::Connect(port);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (!sni.empty()) {
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(sni.c_str()));
  }
  if (SSL_connect(ssl) == 1) {
    r.handshake = true;
    X509* peer = SSL_get1_peer_certificate(ssl);
    char cn[256] = {0};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
    r.cn = cn;
    r.serial = ASN1_INTEGER_get(X509_get_serialNumber(peer));
    X509_free(peer);
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + sni + "\r\nConnection: close\r\n\r\n";
    SSL_write(ssl, req.data(), static_cast<int>(req.size()));
    std::string all;
    char buf[16384];
    int n;
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) all.append(buf, static_cast<size_t>(n));
    size_t end = all.find("\r\n\r\n");
    if (end != std::string::npos) {
      r.head = all.substr(0, end + 4);
      r.body = all.substr(end + 4);
      r.status = testing::StatusOf(r.head);
    }
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return r;
}

class TlsTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::pair<std::string, std::string>> routes) {
    store::RangeResult listing;
    for (auto& [k, v] : routes) {
      store::KeyValue kv;
      kv.key = "/berth/routes/" + k;
      kv.value = v;
      listing.kvs.push_back(kv);
    }
    holder_.Publish(builder_.Reset(listing));
    ProxyOptions o;
    o.threads = 2;
    o.tls = certs_;
    proxy_ = std::make_unique<HttpProxy>(o, holder_);
    Status st = proxy_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void TearDown() override {
    if (proxy_) proxy_->Stop();
  }
  std::shared_ptr<TlsCertificates> certs_ = std::make_shared<TlsCertificates>();
  RouteTableHolder holder_;
  RouteTableBuilder builder_{"/berth/routes/"};
  std::unique_ptr<HttpProxy> proxy_;
};

std::string To(const TestBackend& b) {
  return R"({"backend": ")" + b.url() + "\"}";
}

TEST_F(TlsTest, CertificateBySniAndLiveReplacement) {
  TestBackend a("a"), b("b");
  Pem ca = MakeCert("a.test", 1), cb = MakeCert("*.b.test", 2);
  ASSERT_TRUE(certs_->Set("a.test", ca.cert, ca.key).ok());
  ASSERT_TRUE(certs_->Set("*.b.test", cb.cert, cb.key).ok());
  EXPECT_FALSE(certs_->Set("c.test", ca.cert, cb.key).ok()) << "key does not match";
  EXPECT_FALSE(certs_->Set("c.test", "junk", ca.key).ok());
  Start({{"a.test/1", To(a)}, {"*.b.test/1", To(b)}});

  TlsResult r = HttpsGet(proxy_->port(), "a.test");
  ASSERT_TRUE(r.handshake);
  EXPECT_EQ(r.cn, "a.test");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(FieldOf(r.head, "X-Backend"), "a");
  EXPECT_EQ(FieldOf(r.body, "X-Forwarded-Proto"), "https");

  r = HttpsGet(proxy_->port(), "www.b.test");
  ASSERT_TRUE(r.handshake);
  EXPECT_EQ(r.cn, "*.b.test");
  EXPECT_EQ(FieldOf(r.head, "X-Backend"), "b");

  // Unknown name, no name: no certificate, no handshake (until a catch-all exists).
  EXPECT_FALSE(HttpsGet(proxy_->port(), "other.test").handshake);
  EXPECT_FALSE(HttpsGet(proxy_->port(), "").handshake);
  Pem any = MakeCert("fallback", 3);
  ASSERT_TRUE(certs_->Set("*", any.cert, any.key).ok());
  r = HttpsGet(proxy_->port(), "other.test");
  ASSERT_TRUE(r.handshake);
  EXPECT_EQ(r.cn, "fallback");
  EXPECT_EQ(r.status, 404);

  // Replaced while serving: new handshakes get the new certificate.
  Pem ca2 = MakeCert("a.test", 42);
  ASSERT_TRUE(certs_->Set("a.test", ca2.cert, ca2.key).ok());
  r = HttpsGet(proxy_->port(), "a.test");
  ASSERT_TRUE(r.handshake);
  EXPECT_EQ(r.serial, 42);
  EXPECT_EQ(r.status, 200);
}

TEST_F(TlsTest, CertificatesFromTheStore) {
  auto st = store::EmbeddedStore::Open({});
  ASSERT_TRUE(st.ok());
  store::Store& s = **st;
  TestBackend a("a");
  Pem c1 = MakeCert("one.test", 1), c2 = MakeCert("two.test", 2);
  auto value = [](const Pem& p) {
    return nlohmann::json{{"cert_pem", p.cert}, {"key_pem", p.key}}.dump();
  };
  ASSERT_TRUE(s.Put("/berth/certs/one.test", value(c1)).ok());
  store::PrefixWatcher::Options wo;
  wo.min_backoff = std::chrono::milliseconds(10);
  CertWatcher w(s, "/berth/", certs_, wo);
  w.Start();
  Start({{"one.test/1", To(a)}, {"two.test/1", To(a)}});
  auto eventually = [](const std::function<bool()>& f) {
    for (int i = 0; i < 500; ++i) {
      if (f()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  EXPECT_TRUE(eventually([&] { return HttpsGet(proxy_->port(), "one.test").status == 200; }));
  EXPECT_FALSE(HttpsGet(proxy_->port(), "two.test").handshake);
  ASSERT_TRUE(s.Put("/berth/certs/two.test", value(c2)).ok());
  EXPECT_TRUE(eventually([&] { return HttpsGet(proxy_->port(), "two.test").cn == "two.test"; }));
  ASSERT_TRUE(s.Put("/berth/certs/bad.test", "{}").ok());
  ASSERT_TRUE(s.Delete("/berth/certs/one.test").ok());
  EXPECT_TRUE(eventually([&] { return !HttpsGet(proxy_->port(), "one.test").handshake; }));
  EXPECT_EQ(certs_->size(), 1u);
  w.Stop();
}

}  // namespace
}  // namespace berth::router
