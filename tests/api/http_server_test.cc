#include "api/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cli/api_client.h"

namespace berth::api {
namespace {

// Sends raw bytes and reads until the server closes the connection (or 30 s pass).
std::string RawExchange(uint16_t port, const std::string& bytes, bool* closed_by_server = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      // 0: orderly close by the server; -1 with EAGAIN: our 30 s receive timeout.
      if (closed_by_server != nullptr) *closed_by_server = n == 0 || errno == ECONNRESET;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServer::Options o = {}) {
    server_ = std::make_unique<HttpServer>(o);
    server_->Route("GET", "/v1/things/:id", acl::Permission::Public(), [](const HttpRequest& r) {
      HttpResponse res;
      res.body = R"({"id":")" + r.params.at("id") + R"(","q":")" + r.Query("q") + R"("})";
      return res;
    });
    server_->Route("GET", "/v1/tree/*path", acl::Permission::Public(), [](const HttpRequest& r) {
      HttpResponse res;
      res.body = nlohmann::json{{"path", r.params.at("path")}}.dump();
      return res;
    });
    server_->Route("POST", "/v1/echo", acl::Permission::Public(), [](const HttpRequest& r) {
      HttpResponse res;
      res.content_type = "text/plain";
      res.body = r.body;
      return res;
    });
    server_->Route("GET", "/v1/throw", acl::Permission::Public(),
                   [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
    server_->RouteStream("GET", "/v1/stream", "application/x-ndjson", acl::Permission::Public(),
                         [](const HttpRequest&, ChunkSink& sink) {
                           for (int i = 0; i < 3; ++i)
                             sink.Write("line" + std::to_string(i) + "\n");
                         });
    server_->RouteStream("GET", "/v1/maybe", "text/plain", acl::Permission::Public(),
                         [](const HttpRequest& r, ChunkSink& sink) {
                           if (r.Query("fail") == "1") {
                             sink.Respond(ErrorResponse(NotFound("no such thing")));
                             return;
                           }
                           sink.Write("data\n");
                           // Too late to answer otherwise: refused, and the stream goes on.
                           if (sink.Respond(ErrorResponse(404, "late"))) sink.Write("BUG\n");
                           sink.Write("more\n");
                         });
    server_->RouteStream("GET", "/v1/forever", "application/x-ndjson", acl::Permission::Public(),
                         [](const HttpRequest&, ChunkSink& sink) {
                           sink.Write("start\n");
                           while (!sink.Closed()) {
                             std::this_thread::sleep_for(std::chrono::milliseconds(20));
                           }
                         });
    ASSERT_TRUE(server_->Start().ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  std::unique_ptr<HttpServer> server_;
  std::string addr_;
};

TEST_F(HttpServerTest, RoutesParamsAndQuery) {
  StartServer();
  cli::ApiClient c(addr_);
  auto r = c.Call("GET", "/v1/things/a%20b?q=x%2By&other=1");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->json["id"], "a b");
  EXPECT_EQ(r->json["q"], "x+y");
  // '+' means a space in a query string only, never in the path.
  r = c.Call("GET", "/v1/things/a+b?q=c+d");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->json["id"], "a+b");
  EXPECT_EQ(r->json["q"], "c d");
}

TEST_F(HttpServerTest, ARestPatternCapturesTheRemainingSegments) {
  StartServer();
  cli::ApiClient c(addr_);
  auto r = c.Call("GET", "/v1/tree/a");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->json["path"], "a");
  r = c.Call("GET", "/v1/tree/db/prod/password");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->json["path"], "db/prod/password");
  r = c.Call("GET", "/v1/tree");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404) << "a rest pattern needs at least one segment";
}

TEST_F(HttpServerTest, UnknownRouteAndWrongMethodAreJsonErrors) {
  StartServer();
  cli::ApiClient c(addr_);
  auto r = c.Call("GET", "/v1/nope");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(r->json.contains("error"));
  r = c.Call("DELETE", "/v1/things/1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 405);
}

TEST_F(HttpServerTest, HandlerExceptionIs500AndServerKeepsRunning) {
  StartServer();
  cli::ApiClient c(addr_);
  auto r = c.Call("GET", "/v1/throw");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(c.Call("GET", "/v1/things/1")->status, 200);
}

TEST_F(HttpServerTest, OversizedBodyIs413) {
  HttpServer::Options o;
  o.max_body_bytes = 1000;
  StartServer(o);
  cli::ApiClient c(addr_);
  auto r = c.Call("POST", "/v1/echo", std::string(999, 'x'), "text/plain");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), 999u);
  std::string out = RawExchange(
      server_->port(),
      "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'));
  EXPECT_NE(out.find("HTTP/1.1 413"), std::string::npos) << out;
}

TEST_F(HttpServerTest, OversizedHeadersAre431) {
  HttpServer::Options o;
  o.max_header_bytes = 1024;
  StartServer(o);
  std::string out = RawExchange(server_->port(), "GET /v1/things/1 HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                                     std::string(4000, 'a') + "\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 431"), std::string::npos) << out;
}

TEST_F(HttpServerTest, MalformedRequestsGet400AndClose) {
  StartServer();
  for (const std::string& bad :
       {std::string("GARBAGE\r\n\r\n"), std::string("GET /x HTTP/9.9\r\n\r\n"),
        std::string("GET /v1/things/1 HTTP/1.1\r\nBad Header\r\n\r\n"),
        std::string("POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"),
        std::string(
            "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n")}) {
    std::string out = RawExchange(server_->port(), bad);
    EXPECT_NE(out.find("HTTP/1.1 400"), std::string::npos) << "for: " << bad << "\ngot: " << out;
  }
  cli::ApiClient c(addr_);
  EXPECT_EQ(c.Call("GET", "/v1/things/1")->status, 200);
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  StartServer();
  std::string two =
      "GET /v1/things/1 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /v1/things/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string out = RawExchange(server_->port(), two);
  EXPECT_NE(out.find(R"("id":"1")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("id":"2")"), std::string::npos) << out;
}

TEST_F(HttpServerTest, SlowClientIsCutOff) {
  HttpServer::Options o;
  o.read_timeout = std::chrono::milliseconds(200);
  StartServer(o);
  // Sends half a request and never finishes it: the server must close the connection.
  bool closed = false;
  std::string out =
      RawExchange(server_->port(), "GET /v1/things/1 HTTP/1.1\r\nHost: x\r\n", &closed);
  EXPECT_EQ(out.find("200 OK"), std::string::npos);
  EXPECT_TRUE(closed);
}

TEST_F(HttpServerTest, StreamsChunks) {
  StartServer();
  cli::ApiClient c(addr_);
  std::string got;
  Status st = c.Stream("/v1/stream", [&](std::string_view d) {
    got.append(d);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "line0\nline1\nline2\n");
}

TEST_F(HttpServerTest, StreamHandlerCanRespondInsteadOfStreaming) {
  StartServer();
  cli::ApiClient c(addr_);
  std::string got;
  Status st = c.Stream("/v1/maybe?fail=1", [&](std::string_view d) {
    got.append(d);
    return true;
  });
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();
  EXPECT_EQ(st.message(), "no such thing");
  EXPECT_TRUE(got.empty());
  auto plain = c.Call("GET", "/v1/maybe?fail=1");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->status, 404);
  EXPECT_EQ(plain->json["code"], "not found");

  st = c.Stream("/v1/maybe", [&](std::string_view d) {
    got.append(d);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "data\nmore\n");
}

TEST_F(HttpServerTest, StopEndsOpenStreams) {
  StartServer();
  std::thread client([&] {
    cli::ApiClient c(addr_);
    c.Stream("/v1/forever", [](std::string_view) { return true; }).IgnoreError();
  });
  // Wait until the stream is open, then stop: Stop must return and end the client's stream.
  cli::ApiClient probe(addr_);
  for (int i = 0; i < 100; ++i) {
    if (probe.Call("GET", "/v1/things/1").ok()) break;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server_->Stop();
  client.join();
  server_.reset();
}

TEST_F(HttpServerTest, BindFailureIsAClearError) {
  StartServer();
  HttpServer::Options o;
  o.port = server_->port();
  o.address = "127.0.0.1";
  HttpServer second(o);
  // reuse_address lets two sockets bind on Linux only if the first is not listening.
  Status st = second.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(std::to_string(server_->port())), std::string::npos) << st.ToString();
}

TEST(HttpServerAccessTest, ARouteThatNeedsAPermissionNeedsAnAuthorizer) {
  HttpServer server(HttpServer::Options{});
  server.Route("GET", "/v1/open", acl::Permission::Public(),
               [](const HttpRequest&) { return HttpResponse{}; });
  server.Route("PUT", "/v1/things/:id", acl::Permission::Admin(),
               [](const HttpRequest&) { return HttpResponse{}; });
  Status st = server.Start();
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_NE(st.message().find("PUT /v1/things/:id"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("authorizer"), std::string::npos) << st.message();
}

TEST(HttpServerAccessTest, ARouteRegisteredTwiceIsRefused) {
  HttpServer server(HttpServer::Options{});
  server.SetAuthorizer([](HttpRequest&, const acl::Permission&) { return std::nullopt; });
  for (int i = 0; i < 2; ++i) {
    server.Route("GET", "/v1/x", acl::Permission::Read(),
                 [](const HttpRequest&) { return HttpResponse{}; });
  }
  Status st = server.Start();
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_NE(st.message().find("GET /v1/x registered twice"), std::string::npos) << st.message();
}

TEST(HttpServerAccessTest, TheAuthorizerRunsBeforeEveryHandlerAndStreamButNotPublicRoutes) {
  HttpServer server(HttpServer::Options{});
  std::atomic<int> asked{0};
  std::atomic<int> ran{0};
  // Lets in "Bearer good" (naming the caller), refuses everything else with 401.
  server.SetAuthorizer(
      [&](HttpRequest& req, const acl::Permission& p) -> std::optional<HttpResponse> {
        ++asked;
        if (req.Header("authorization") == "Bearer good") {
          req.caller.name = "good (" + p.Describe() + ")";
          return std::nullopt;
        }
        return ErrorResponse(Unauthenticated("no"));
      });
  server.Route("GET", "/v1/who", acl::Permission::Read(), [&](const HttpRequest& r) {
    ++ran;
    HttpResponse res;
    res.body = nlohmann::json{{"caller", r.caller.name}}.dump();
    return res;
  });
  server.Route("GET", "/v1/health", acl::Permission::Public(), [&](const HttpRequest& r) {
    ++ran;
    HttpResponse res;
    res.body = nlohmann::json{{"anonymous", r.caller.anonymous}}.dump();
    return res;
  });
  server.RouteStream("GET", "/v1/feed", "text/plain", acl::Permission::Jobs("name"),
                     [&](const HttpRequest&, ChunkSink& sink) {
                       ++ran;
                       sink.Write("data\n");
                     });
  ASSERT_TRUE(server.Start().ok());
  auto routes = server.Routes();
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[2].method, "GET");
  EXPECT_EQ(routes[2].pattern, "/v1/feed");
  EXPECT_EQ(routes[2].permission, acl::Permission::Jobs("name"));
  EXPECT_TRUE(routes[2].stream);

  cli::ApiClient anon("127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(anon.Call("GET", "/v1/who")->status, 401);
  EXPECT_EQ(anon.Stream("/v1/feed", [](std::string_view) { return true; }).code(),
            Code::kUnauthenticated);
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(asked, 2);
  auto health = anon.Call("GET", "/v1/health");
  EXPECT_EQ(health->json["anonymous"], true);
  EXPECT_EQ(asked, 2) << "public routes are not asked about";

  cli::ApiClientOptions o;
  o.address = "127.0.0.1:" + std::to_string(server.port());
  o.token = "good";
  cli::ApiClient good(o);
  EXPECT_EQ(good.Call("GET", "/v1/who")->json["caller"], "good (read)");
  std::string got;
  EXPECT_TRUE(good.Stream("/v1/feed",
                          [&](std::string_view d) {
                            got += d;
                            return true;
                          })
                  .ok());
  EXPECT_EQ(got, "data\n");
  server.Stop();
}

}  // namespace
}  // namespace berth::api
