// hipache import: the RESP parser on canned bytes (whole, split at every byte, malformed and
// oversized), redis:// URLs, the import plan from canned frontends, and the client reading a
// fake Redis on 127.0.0.1 (an ephemeral port, a thread answering canned replies).
#include "router/hipache_import.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <thread>

namespace berth::router {
namespace {

using Type = RespValue::Type;

RespValue Bulk(std::string s) {
  RespValue v;
  v.type = Type::kBulkString;
  v.str = std::move(s);
  return v;
}

// Parses exactly one reply that fills `bytes`.
RespValue ParseWhole(std::string_view bytes) {
  RespParser p;
  size_t consumed = 0;
  auto v = p.Parse(bytes, &consumed);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  if (!v.ok() || !*v) {
    ADD_FAILURE() << "incomplete: " << bytes;
    return {};
  }
  EXPECT_EQ(consumed, bytes.size());
  return **v;
}

std::string ParseError(std::string_view bytes, RespParser::Limits limits = {}) {
  RespParser p(limits);
  size_t consumed = 0;
  auto v = p.Parse(bytes, &consumed);
  EXPECT_FALSE(v.ok()) << "accepted: " << bytes;
  return v.ok() ? "" : v.status().message();
}

TEST(RespTest, EncodesCommandsAsArraysOfBulkStrings) {
  EXPECT_EQ(EncodeRespCommand({"LRANGE", "frontend:a", "0", "-1"}),
            "*4\r\n$6\r\nLRANGE\r\n$10\r\nfrontend:a\r\n$1\r\n0\r\n$2\r\n-1\r\n");
  EXPECT_EQ(EncodeRespCommand({"AUTH", ""}), "*2\r\n$4\r\nAUTH\r\n$0\r\n\r\n");
}

TEST(RespTest, ParsesEveryReplyType) {
  RespValue ok = ParseWhole("+OK\r\n");
  EXPECT_EQ(ok.type, Type::kSimpleString);
  EXPECT_EQ(ok.str, "OK");
  RespValue err = ParseWhole("-WRONGTYPE Operation against a key holding the wrong kind\r\n");
  EXPECT_EQ(err.type, Type::kError);
  EXPECT_EQ(err.str, "WRONGTYPE Operation against a key holding the wrong kind");
  RespValue n = ParseWhole(":-42\r\n");
  EXPECT_EQ(n.type, Type::kInteger);
  EXPECT_EQ(n.integer, -42);
  // Bulk strings are binary-safe: CRLF inside is data.
  EXPECT_EQ(ParseWhole("$4\r\na\r\nb\r\n"), Bulk("a\r\nb"));
  EXPECT_EQ(ParseWhole(std::string("$5\r\na\0\r\nb\r\n", 11)), Bulk(std::string("a\0\r\nb", 5)));
  EXPECT_EQ(ParseWhole("$0\r\n\r\n"), Bulk(""));
  EXPECT_EQ(ParseWhole("$-1\r\n").type, Type::kNull);
  EXPECT_EQ(ParseWhole("*-1\r\n").type, Type::kNull);
  RespValue empty = ParseWhole("*0\r\n");
  EXPECT_EQ(empty.type, Type::kArray);
  EXPECT_TRUE(empty.elements.empty());
  // A SCAN reply: [cursor, [keys...]].
  RespValue scan = ParseWhole("*2\r\n$2\r\n17\r\n*2\r\n$10\r\nfrontend:a\r\n$10\r\nfrontend:b\r\n");
  ASSERT_EQ(scan.type, Type::kArray);
  ASSERT_EQ(scan.elements.size(), 2u);
  EXPECT_EQ(scan.elements[0], Bulk("17"));
  ASSERT_EQ(scan.elements[1].elements.size(), 2u);
  EXPECT_EQ(scan.elements[1].elements[1], Bulk("frontend:b"));
  RespValue mixed = ParseWhole("*3\r\n:1\r\n$-1\r\n+x\r\n");
  ASSERT_EQ(mixed.elements.size(), 3u);
  EXPECT_EQ(mixed.elements[1].type, Type::kNull);
}

TEST(RespTest, APartialReplyIsIncompleteAtEverySplit) {
  const std::string reply =
      "*3\r\n$9\r\nmywebsite\r\n$22\r\nhttp://192.168.0.42:80\r\n$22\r\nhttp://192.168.0.43:80\r\n";
  RespParser p;
  for (size_t n = 0; n < reply.size(); ++n) {
    size_t consumed = 99;
    auto v = p.Parse(std::string_view(reply).substr(0, n), &consumed);
    ASSERT_TRUE(v.ok()) << n << ": " << v.status().ToString();
    EXPECT_FALSE(v->has_value()) << "complete after " << n << " bytes";
    EXPECT_EQ(consumed, 0u);
  }
  // Two replies back to back (pipelining): one at a time.
  std::string two = reply + ":7\r\n";
  size_t consumed = 0;
  auto first = p.Parse(two, &consumed);
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ(consumed, reply.size());
  EXPECT_EQ((**first).elements[2], Bulk("http://192.168.0.43:80"));
  auto second = p.Parse(std::string_view(two).substr(consumed), &consumed);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((**second).integer, 7);
}

TEST(RespTest, MalformedRepliesAreErrorsNotCrashes) {
  EXPECT_NE(ParseError("?what\r\n").find("unknown type byte"), std::string::npos);
  EXPECT_NE(ParseError(":12a\r\n").find("malformed integer"), std::string::npos);
  EXPECT_NE(ParseError(":\r\n").find("malformed integer"), std::string::npos);
  EXPECT_NE(ParseError(":99999999999999999999\r\n").find("malformed integer"), std::string::npos);
  EXPECT_NE(ParseError("$-2\r\n").find("malformed bulk length"), std::string::npos);
  EXPECT_NE(ParseError("$x\r\n").find("malformed bulk length"), std::string::npos);
  EXPECT_NE(ParseError("$3\r\nabcd\r\n").find("not followed by CRLF"), std::string::npos);
  EXPECT_NE(ParseError("*-5\r\n").find("malformed array length"), std::string::npos);
  EXPECT_NE(ParseError("*2\r\n:1\r\n!\r\n").find("unknown type byte"), std::string::npos);
  EXPECT_NE(ParseError("+a\rb\r\n").find("bare CR or LF"), std::string::npos);
  EXPECT_NE(ParseError("+a\nb\r\n").find("bare CR or LF"), std::string::npos);
}

TEST(RespTest, LimitsBoundWhatAReplyMayClaim) {
  RespParser::Limits small;
  small.max_bulk_bytes = 10;
  small.max_array_elements = 3;
  small.max_depth = 2;
  small.max_line_bytes = 16;
  // Refused from the length line alone: nothing is allocated for the claimed size.
  EXPECT_NE(ParseError("$11\r\n", small).find("bulk string of 11 bytes"), std::string::npos);
  EXPECT_NE(ParseError("$9223372036854775807\r\n").find("malformed bulk length"),
            std::string::npos);
  EXPECT_NE(ParseError("*4\r\n", small).find("array of 4 elements"), std::string::npos);
  EXPECT_NE(ParseError("*1\r\n*1\r\n*1\r\n:1\r\n", small).find("nested deeper than 2"),
            std::string::npos);
  EXPECT_NE(ParseError(std::string(40, '+'), small).find("longer than 16"), std::string::npos);
  // Within the limits: fine.
  RespParser p(small);
  size_t consumed = 0;
  auto v = p.Parse("*1\r\n*3\r\n$10\r\n0123456789\r\n:1\r\n:2\r\n", &consumed);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->has_value());
  // The default limits refuse a claimed gigantic array up front as well.
  EXPECT_NE(ParseError("*100000000\r\n").find("array of 100000000 elements"), std::string::npos);
}

TEST(RedisUrlTest, HostPortPasswordAndDatabase) {
  auto a = ParseRedisUrl("redis://127.0.0.1:6380");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 0);
  EXPECT_EQ(a->password, "");
  auto b = ParseRedisUrl("redis://redis.internal");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "redis.internal");
  EXPECT_EQ(b->port, 6379);
  auto c = ParseRedisUrl("redis://:s3cr@t@[::1]:7000/2");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 7000);
  EXPECT_EQ(c->password, "s3cr@t");
  EXPECT_EQ(c->db, 2);
  for (const char* bad :
       {"http://127.0.0.1:6379", "127.0.0.1:6379", "redis://", "redis://:6379", "redis://h:0",
        "redis://h:70000", "redis://h:x", "redis://h:", "redis://h/x", "redis://[::1"}) {
    EXPECT_FALSE(ParseRedisUrl(bad).ok()) << bad;
  }
}

HipacheFrontend Frontend(std::string key, std::vector<std::string> list) {
  HipacheFrontend f;
  f.key = std::move(key);
  f.list = std::move(list);
  return f;
}

TEST(HipachePlanTest, EachBackendBecomesARouteAndTheRestIsExplained) {
  std::vector<HipacheFrontend> in = {
      Frontend("frontend:www.dotcloud.com",
               {"mywebsite", "http://192.168.0.42:80", "http://192.168.0.43:80"}),
      Frontend("frontend:*.Example.COM", {"wild", "http://10.0.0.1:8080/"}),
      Frontend("frontend:API.example.com",
               {"api", "http://api-backend.internal:80", "https://10.0.0.2:443",
                "http://10.0.0.3:80/v1", "http://10.0.0.4:9000"}),
      Frontend("frontend:empty.example.com", {}),
      Frontend("frontend:lonely.example.com", {"lonely"}),
      Frontend("frontend:api.EXAMPLE.com", {"dup", "http://10.0.0.9:80"}),
      Frontend("frontend:bad host", {"x", "http://10.0.0.9:80"}),
  };
  HipacheFrontend wrong;
  wrong.key = "frontend:wrong.example.com";
  wrong.error = "WRONGTYPE Operation against a key holding the wrong kind of value";
  in.push_back(wrong);

  ImportPlan plan = PlanHipacheImport(in);
  ASSERT_EQ(plan.routes.size(), 4u);
  // Sorted by key ("*" < "A" < "w"); ids by position among the frontend's backends, so a
  // skipped backend leaves its number unused.
  EXPECT_EQ(plan.routes[0].host, "*.example.com");
  EXPECT_EQ(plan.routes[0].id, "hipache-0");
  EXPECT_EQ(plan.routes[0].backend, "http://10.0.0.1:8080/");
  EXPECT_EQ(plan.routes[0].identifier, "wild");
  EXPECT_EQ(plan.routes[1].host, "api.example.com");
  EXPECT_EQ(plan.routes[1].id, "hipache-3");
  EXPECT_EQ(plan.routes[1].backend, "http://10.0.0.4:9000");
  EXPECT_EQ(plan.routes[1].frontend, "frontend:API.example.com");
  EXPECT_EQ(plan.routes[2].host, "www.dotcloud.com");
  EXPECT_EQ(plan.routes[2].id, "hipache-0");
  EXPECT_EQ(plan.routes[2].backend, "http://192.168.0.42:80");
  EXPECT_EQ(plan.routes[2].identifier, "mywebsite");
  EXPECT_EQ(plan.routes[3].id, "hipache-1");
  EXPECT_EQ(plan.routes[3].backend, "http://192.168.0.43:80");

  std::map<std::string, std::string> why;  // "key backend" -> reason
  for (const auto& s : plan.skipped) why[s.frontend + " " + s.backend] = s.reason;
  ASSERT_EQ(plan.skipped.size(), 8u);
  EXPECT_NE(why["frontend:API.example.com http://api-backend.internal:80"].find(
                "must be an IP address or localhost"),
            std::string::npos);
  EXPECT_NE(why["frontend:API.example.com https://10.0.0.2:443"].find("only http://"),
            std::string::npos);
  EXPECT_NE(why["frontend:API.example.com http://10.0.0.3:80/v1"].find("a path is not supported"),
            std::string::npos);
  EXPECT_EQ(why["frontend:empty.example.com "], "empty list");
  EXPECT_NE(why["frontend:lonely.example.com "].find("no backends"), std::string::npos);
  EXPECT_NE(why["frontend:api.EXAMPLE.com "].find("the same host as frontend:API.example.com"),
            std::string::npos);
  EXPECT_NE(why["frontend:bad host "].find("bad host"), std::string::npos);
  EXPECT_NE(why["frontend:wrong.example.com "].find("cannot be read: WRONGTYPE"),
            std::string::npos);
  // Every frontend read with a valid, new host: its hipache-<n> routes are replaced.
  EXPECT_EQ(plan.hosts,
            (std::vector<std::string>{"*.example.com", "api.example.com", "empty.example.com",
                                      "lonely.example.com", "www.dotcloud.com"}));
}

TEST(HipachePlanTest, InvalidUtf8IsSkippedNotThrown) {
  ImportPlan plan =
      PlanHipacheImport({Frontend("frontend:a.example.com", {"\xff", "http://\xff"})});
  EXPECT_TRUE(plan.routes.empty());
  ASSERT_EQ(plan.skipped.size(), 1u);
}

// A fake Redis: accepts one connection and answers each command with `answer(command)`; the
// reply is sent in 3-byte pieces to exercise reassembly.
class FakeRedis {
 public:
  using Answer = std::function<std::string(const std::vector<std::string>&)>;
  explicit FakeRedis(Answer answer) : answer_(std::move(answer)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(listen_fd_, 1), 0);
    socklen_t len = sizeof(a);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeRedis() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  std::vector<std::vector<std::string>> commands;  // read after the client is gone

 private:
  void Serve() {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    RespParser parser;
    std::string buf;
    char chunk[4096];
    for (;;) {
      size_t consumed = 0;
      auto v = parser.Parse(buf, &consumed);
      if (!v.ok()) break;
      if (!*v) {
        ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) break;
        buf.append(chunk, static_cast<size_t>(n));
        continue;
      }
      buf.erase(0, consumed);
      std::vector<std::string> cmd;
      for (const auto& e : (**v).elements) cmd.push_back(e.str);
      commands.push_back(cmd);
      std::string reply = answer_(cmd);
      if (reply.empty()) break;  // hang up
      for (size_t i = 0; i < reply.size(); i += 3) {
        std::string_view piece = std::string_view(reply).substr(i, 3);
        if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL) < 0) break;
      }
    }
    ::close(fd);
  }

  Answer answer_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST(RedisClientTest, ReadsFrontendsAcrossScanPagesAndSkipsWhatIsNotAList) {
  std::vector<std::vector<std::string>> seen;
  {
    FakeRedis redis([](const std::vector<std::string>& cmd) -> std::string {
      if (cmd[0] == "AUTH") return cmd[1] == "pw" ? "+OK\r\n" : "-ERR invalid password\r\n";
      if (cmd[0] == "SELECT") return "+OK\r\n";
      if (cmd[0] == "SCAN" && cmd[1] == "0") {
        return "*2\r\n$2\r\n17\r\n*2\r\n$12\r\nfrontend:b.x\r\n$12\r\nfrontend:a.x\r\n";
      }
      if (cmd[0] == "SCAN") {  // the next page repeats a key, as SCAN may
        return "*2\r\n$1\r\n0\r\n*2\r\n$12\r\nfrontend:a.x\r\n$12\r\nfrontend:c.x\r\n";
      }
      if (cmd[0] == "LRANGE" && cmd[1] == "frontend:a.x") {
        return "*2\r\n$3\r\napp\r\n$20\r\nhttp://127.0.0.1:801\r\n";
      }
      if (cmd[0] == "LRANGE" && cmd[1] == "frontend:b.x") return "*0\r\n";
      if (cmd[0] == "LRANGE") {
        return "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
      }
      return "-ERR unknown command\r\n";
    });
    RedisAddress addr;
    addr.host = "127.0.0.1";
    addr.port = redis.port();
    addr.password = "pw";
    addr.db = 3;
    auto client = RedisClient::Connect(addr, std::chrono::seconds(5));
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    auto frontends = ReadHipacheFrontends(**client);
    ASSERT_TRUE(frontends.ok()) << frontends.status().ToString();
    ASSERT_EQ(frontends->size(), 3u);
    EXPECT_EQ((*frontends)[0].key, "frontend:a.x");
    EXPECT_EQ((*frontends)[0].list, (std::vector<std::string>{"app", "http://127.0.0.1:801"}));
    EXPECT_EQ((*frontends)[1].key, "frontend:b.x");
    EXPECT_TRUE((*frontends)[1].list.empty());
    EXPECT_TRUE((*frontends)[1].error.empty());
    EXPECT_EQ((*frontends)[2].key, "frontend:c.x");
    EXPECT_NE((*frontends)[2].error.find("WRONGTYPE"), std::string::npos);
    client->reset();  // hang up, so the fake's thread ends
    seen = redis.commands;
  }
  ASSERT_GE(seen.size(), 4u);
  EXPECT_EQ(seen[0], (std::vector<std::string>{"AUTH", "pw"}));
  EXPECT_EQ(seen[1], (std::vector<std::string>{"SELECT", "3"}));
  EXPECT_EQ(seen[2],
            (std::vector<std::string>{"SCAN", "0", "MATCH", "frontend:*", "COUNT", "1000"}));
  EXPECT_EQ(seen[3][1], "17");  // the cursor of the first page
}

TEST(RedisClientTest, ErrorsAreStatusesNamingTheServer) {
  {
    FakeRedis redis([](const std::vector<std::string>&) { return std::string("-ERR bad\r\n"); });
    RedisAddress addr{"127.0.0.1", redis.port(), "wrong", 0};
    auto client = RedisClient::Connect(addr, std::chrono::seconds(5));
    ASSERT_FALSE(client.ok());
    EXPECT_EQ(client.status().code(), Code::kPermissionDenied);
    EXPECT_NE(client.status().message().find("AUTH: ERR bad"), std::string::npos);
  }
  {
    // The server hangs up instead of answering.
    FakeRedis redis([](const std::vector<std::string>&) { return std::string(); });
    RedisAddress addr{"127.0.0.1", redis.port(), "", 0};
    auto client = RedisClient::Connect(addr, std::chrono::seconds(5));
    ASSERT_TRUE(client.ok());
    auto frontends = ReadHipacheFrontends(**client);
    ASSERT_FALSE(frontends.ok());
    EXPECT_EQ(frontends.status().code(), Code::kUnavailable);
    EXPECT_NE(frontends.status().message().find("closed the connection"), std::string::npos);
  }
  {
    // Garbage instead of RESP.
    FakeRedis redis(
        [](const std::vector<std::string>&) { return std::string("HTTP/1.1 400\r\n"); });
    RedisAddress addr{"127.0.0.1", redis.port(), "", 0};
    auto client = RedisClient::Connect(addr, std::chrono::seconds(5));
    ASSERT_TRUE(client.ok());
    auto frontends = ReadHipacheFrontends(**client);
    ASSERT_FALSE(frontends.ok());
    EXPECT_NE(frontends.status().message().find("unknown type byte"), std::string::npos);
    client->reset();
  }
  // Nothing listens: a clear "cannot connect" naming the address.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  uint16_t port = ntohs(a.sin_port);
  ::close(fd);  // bound, never listened: the port is free and refuses connections
  auto client = RedisClient::Connect({"127.0.0.1", port, "", 0}, std::chrono::seconds(5));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), Code::kUnavailable);
  EXPECT_NE(client.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos);
}

}  // namespace
}  // namespace berth::router
