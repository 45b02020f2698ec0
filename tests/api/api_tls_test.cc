// The API over TLS through the CLI's real ApiClient: a server certificate the client verifies
// (against a CA file; its name against the address), and client certificates the server
// requires when given a client CA. Certificates are made here, at test time, with OpenSSL.
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "api/api_service.h"
#include "cli/api_client.h"
#include "store/embedded_store.h"

namespace berth::api {
namespace {

namespace fs = std::filesystem;

struct KeyAndCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  ~KeyAndCert() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

void AddExt(X509* x, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` signed by `issuer` (self-signed when null); a CA when `ca`.
void Make(KeyAndCert& out, const std::string& cn, const KeyAndCert* issuer, bool ca,
          const char* san, long serial) {
  out.key = EVP_EC_gen("P-256");
  out.cert = X509_new();
  X509* x = out.cert;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, out.key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer->cert : x;
  X509_set_issuer_name(x, X509_get_subject_name(signer));
  AddExt(x, signer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca) AddExt(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (san != nullptr) AddExt(x, signer, NID_subject_alt_name, san);
  X509_sign(x, issuer ? issuer->key : out.key, EVP_sha256());
}

void WriteCert(const KeyAndCert& k, const fs::path& p) {
  FILE* f = std::fopen(p.c_str(), "w");
  PEM_write_X509(f, k.cert);
  std::fclose(f);
}
void WriteKey(const KeyAndCert& k, const fs::path& p) {
  FILE* f = std::fopen(p.c_str(), "w");
  PEM_write_PrivateKey(f, k.key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

class ApiTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("berth-api-tls-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    Make(ca_, "berth test CA", nullptr, true, nullptr, 1);
    Make(server_cert_, "agent", &ca_, false, "IP:127.0.0.1,DNS:localhost", 2);
    Make(client_ca_, "berth client CA", nullptr, true, nullptr, 3);
    Make(client_, "operator", &client_ca_, false, nullptr, 4);
    Make(other_ca_, "another CA", nullptr, true, nullptr, 5);
    Make(stranger_, "stranger", &other_ca_, false, nullptr, 6);
    WriteCert(ca_, dir_ / "ca.pem");
    WriteCert(server_cert_, dir_ / "server.pem");
    WriteKey(server_cert_, dir_ / "server.key");
    WriteCert(client_ca_, dir_ / "client-ca.pem");
    WriteCert(client_, dir_ / "client.pem");
    WriteKey(client_, dir_ / "client.key");
    WriteCert(stranger_, dir_ / "stranger.pem");
    WriteKey(stranger_, dir_ / "stranger.key");
    WriteKey(stranger_, dir_ / "other.key");

    store::EmbeddedOptions o;
    o.expiry_thread = false;
    store_ = std::move(*store::EmbeddedStore::Open(o));
    registry_ = std::make_unique<jobs::JobRegistry>(*store_, keys_, SystemClock::Shared());
    access_ = std::make_shared<acl::AccessControl>(*store_, keys_, acl::AccessControl::Options{});
    auto t = access_->tokens().Create("reader", acl::Policy::kRead, "");
    ASSERT_TRUE(t.ok());
    token_ = t->token;
  }
  void TearDown() override {
    if (server_) server_->Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Status StartServer(TlsFiles tls) {
    HttpServer::Options o;
    o.tls = std::move(tls);
    server_ = std::make_unique<HttpServer>(o);
    ApiContext ctx;
    ctx.store = store_.get();
    ctx.keys = keys_;
    ctx.jobs = registry_.get();
    ctx.access = access_;
    ctx.api_scheme = "https";
    RegisterApiRoutes(*server_, ctx);
    return server_->Start();
  }
  TlsFiles ServerFiles(bool client_ca) {
    TlsFiles f;
    f.cert_file = dir_ / "server.pem";
    f.key_file = dir_ / "server.key";
    if (client_ca) f.client_ca_file = dir_ / "client-ca.pem";
    return f;
  }
  cli::ApiClientOptions ClientOptions(const std::string& scheme = "https") {
    cli::ApiClientOptions o;
    o.address = scheme + "://127.0.0.1:" + std::to_string(server_->port());
    o.token = token_;
    o.ca_file = dir_ / "ca.pem";
    o.timeout = std::chrono::seconds(10);
    return o;
  }
  Result<nlohmann::json> Get(const cli::ApiClientOptions& o, const std::string& path = "/v1/jobs") {
    cli::ApiClient c(o);
    return c.CallJson("GET", path);
  }

  fs::path dir_;
  KeyAndCert ca_, server_cert_, client_ca_, client_, other_ca_, stranger_;
  store::Keys keys_{"/tls-test/"};
  std::unique_ptr<store::EmbeddedStore> store_;
  std::unique_ptr<jobs::JobRegistry> registry_;
  acl::AccessControlPtr access_;
  std::unique_ptr<HttpServer> server_;
  std::string token_;
};

TEST_F(ApiTlsTest, ServesHttpsToAClientThatTrustsItsCa) {
  ASSERT_TRUE(StartServer(ServerFiles(false)).ok());
  EXPECT_TRUE(server_->tls());
  auto r = Get(ClientOptions());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->is_array());
  // Tokens are still required over TLS.
  auto o = ClientOptions();
  o.token.clear();
  EXPECT_EQ(Get(o).status().code(), Code::kUnauthenticated);
  // A stream works over TLS too.
  cli::ApiClient c(ClientOptions());
  std::string got;
  Status st = c.Stream("/v1/events", [&](std::string_view d) {
    got += d;
    return false;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_NE(got.find("ready"), std::string::npos) << got;
}

TEST_F(ApiTlsTest, AClientThatDoesNotTrustTheCertificateOrSpeaksPlainHttpIsRefused) {
  ASSERT_TRUE(StartServer(ServerFiles(false)).ok());
  auto o = ClientOptions();
  o.ca_file = dir_ / "client-ca.pem";  // the wrong CA
  auto r = Get(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("certificate verify failed"), std::string::npos)
      << r.status().message();
  o.ca_file.clear();  // the system's CAs do not know the test CA either
  EXPECT_EQ(Get(o).status().code(), Code::kUnavailable);
  // Plain HTTP to the TLS port gets nothing useful, and the server keeps serving.
  auto plain = Get(ClientOptions("http"));
  EXPECT_FALSE(plain.ok());
  EXPECT_TRUE(Get(ClientOptions()).ok());
}

TEST_F(ApiTlsTest, TheCertificateMustNameTheAddress) {
  ASSERT_TRUE(StartServer(ServerFiles(false)).ok());
  auto o = ClientOptions();
  o.address = "https://localhost:" + std::to_string(server_->port());
  EXPECT_TRUE(Get(o).ok()) << "DNS:localhost is in the certificate";
  // A certificate from the trusted CA, but for another name: refused.
  KeyAndCert other;
  Make(other, "elsewhere", &ca_, false, "DNS:elsewhere.example", 9);
  WriteCert(other, dir_ / "elsewhere.pem");
  WriteKey(other, dir_ / "elsewhere.key");
  server_->Stop();
  TlsFiles f;
  f.cert_file = dir_ / "elsewhere.pem";
  f.key_file = dir_ / "elsewhere.key";
  ASSERT_TRUE(StartServer(f).ok());
  auto r = Get(ClientOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST_F(ApiTlsTest, WithAClientCaOnlyClientsWithACertificateItSignedGetIn) {
  ASSERT_TRUE(StartServer(ServerFiles(true)).ok());
  auto none = Get(ClientOptions());
  EXPECT_EQ(none.status().code(), Code::kUnavailable) << none.status().ToString();

  auto o = ClientOptions();
  o.client_cert_file = dir_ / "stranger.pem";
  o.client_key_file = dir_ / "stranger.key";
  EXPECT_EQ(Get(o).status().code(), Code::kUnavailable) << "signed by another CA";

  o.client_cert_file = dir_ / "client.pem";
  o.client_key_file = dir_ / "client.key";
  auto r = Get(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // The certificate gets the client to the API; the token still decides what it may do.
  o.token.clear();
  EXPECT_EQ(Get(o).status().code(), Code::kUnauthenticated);
  // The health probe needs a certificate too, but no token.
  EXPECT_TRUE(Get(o, "/v1/health").ok());
}

TEST_F(ApiTlsTest, BadFilesAreClearErrors) {
  TlsFiles f = ServerFiles(false);
  f.cert_file = dir_ / "missing.pem";
  Status st = StartServer(f);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("missing.pem"), std::string::npos) << st.message();

  f = ServerFiles(false);
  f.key_file = dir_ / "other.key";
  st = StartServer(f);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("mismatch"), std::string::npos) << st.message();

  f = ServerFiles(false);
  f.key_file.clear();
  EXPECT_EQ(StartServer(f).code(), Code::kInvalidArgument);

  f = ServerFiles(true);
  f.client_ca_file = dir_ / "nope.pem";
  st = StartServer(f);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("nope.pem"), std::string::npos) << st.message();
  server_.reset();

  // Client side: a certificate without its key, or over plain HTTP.
  cli::ApiClientOptions o;
  o.address = "https://127.0.0.1:1";
  o.client_cert_file = dir_ / "client.pem";
  EXPECT_EQ(cli::ApiClient(o).Call("GET", "/v1/health").status().code(), Code::kInvalidArgument);
  o.client_key_file = dir_ / "client.key";
  o.address = "http://127.0.0.1:1";
  EXPECT_EQ(cli::ApiClient(o).Call("GET", "/v1/health").status().code(), Code::kInvalidArgument);
  o = {};
  o.address = "https://127.0.0.1:1";
  o.ca_file = dir_ / "missing-ca.pem";
  auto r = cli::ApiClient(o).Call("GET", "/v1/health");
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("missing-ca.pem"), std::string::npos);
}

TEST_F(ApiTlsTest, ARedirectFromHttpsToPlainHttpIsNotFollowed) {
  // A tiny server that redirects every stream to a plain-http address.
  HttpServer::Options so;
  so.tls = ServerFiles(false);
  server_ = std::make_unique<HttpServer>(so);
  server_->RouteStream("GET", "/v1/r", "text/plain", acl::Permission::Public(),
                       [](const HttpRequest&, ChunkSink& sink) {
                         HttpResponse r;
                         r.status = 307;
                         r.headers.emplace_back("Location", "http://127.0.0.1:1/v1/r");
                         sink.Respond(std::move(r));
                       });
  ASSERT_TRUE(server_->Start().ok());
  cli::ApiClient c(ClientOptions());
  Status st = c.Stream("/v1/r", [](std::string_view) { return true; });
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("refusing to leave TLS"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace berth::api
