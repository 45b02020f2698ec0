// DockerClient without a dockerd: the log-frame decoder, engine error mapping, and the client
// against a fake engine on a Unix socket (version negotiation, error answers, log streams).
#include "driver/docker_client.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "driver/docker_driver.h"

namespace berth::driver {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = net::local::stream_protocol;

std::string Frame(int stream, std::string_view payload) {
  std::string out(8, '\0');
  out[0] = static_cast<char>(stream);
  const auto n = static_cast<uint32_t>(payload.size());
  out[4] = static_cast<char>((n >> 24) & 0xff);
  out[5] = static_cast<char>((n >> 16) & 0xff);
  out[6] = static_cast<char>((n >> 8) & 0xff);
  out[7] = static_cast<char>(n & 0xff);
  return out + std::string(payload);
}

TEST(LogFrameDecoderTest, SplitsStreamsAcrossArbitraryCuts) {
  const std::string data =
      Frame(1, "out one\n") + Frame(2, "err\n") + Frame(1, "") + Frame(1, std::string(70000, 'x'));
  // Every cut size, including one byte at a time, yields the same frames.
  for (size_t step : {size_t{1}, size_t{3}, size_t{8}, size_t{9}, size_t{4096}, data.size()}) {
    std::string out, err;
    int frames = 0;
    LogFrameDecoder decoder([&](int stream, std::string_view payload) {
      ++frames;
      (stream == 1 ? out : err).append(payload);
      return true;
    });
    for (size_t i = 0; i < data.size(); i += step) {
      ASSERT_TRUE(decoder.Feed(std::string_view(data).substr(i, step)));
    }
    EXPECT_EQ(frames, 4) << step;
    EXPECT_EQ(out, "out one\n" + std::string(70000, 'x')) << step;
    EXPECT_EQ(err, "err\n") << step;
    EXPECT_EQ(decoder.pending(), 0u);
  }
}

TEST(LogFrameDecoderTest, StopsWhenTheSinkSaysSo) {
  int frames = 0;
  LogFrameDecoder decoder([&](int, std::string_view) { return ++frames < 2; });
  EXPECT_FALSE(decoder.Feed(Frame(1, "a") + Frame(1, "b") + Frame(1, "c")));
  EXPECT_EQ(frames, 2);
  EXPECT_TRUE(decoder.status().ok());
  EXPECT_FALSE(decoder.Feed(Frame(1, "d")));
  EXPECT_EQ(frames, 2);
}

TEST(LogFrameDecoderTest, RejectsAMalformedHeader) {
  LogFrameDecoder decoder([](int, std::string_view) { return true; });
  EXPECT_FALSE(decoder.Feed("hello, this is a TTY stream"));
  EXPECT_EQ(decoder.status().code(), Code::kInternal);
}

TEST(MapEngineErrorTest, MapsStatusCodesAndKeepsTheEngineMessage) {
  Status st = MapEngineError(404, R"({"message":"No such image: berth/nope:latest"})", "create");
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(), "create: No such image: berth/nope:latest");
  EXPECT_EQ(MapEngineError(400, R"({"message":"bad"})", "x").code(), Code::kInvalidArgument);
  EXPECT_EQ(MapEngineError(409, R"({"message":"container abc is not running"})", "x").code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(MapEngineError(409,
                           R"({"message":"Conflict. The container name \"/a\" is already in )"
                           R"(use by container \"123\"."})",
                           "x")
                .code(),
            Code::kAlreadyExists);
  st = MapEngineError(500, "not json\n", "start");
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_NE(st.message().find("not json"), std::string::npos);
  EXPECT_NE(st.message().find("HTTP 500"), std::string::npos);
}

TEST(MapEngineErrorTest, PortInUseNamesThePort) {
  Status st = MapEngineError(
      500,
      R"({"message":"driver failed programming external connectivity on endpoint berth-a-web )"
      R"((abc): Bind for 127.0.0.1:18080 failed: port is already allocated"})",
      "start container abc");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_EQ(st.message().rfind("host port 18080 is already in use", 0), 0u) << st.message();
  st = MapEngineError(
      500,
      R"({"message":"driver failed programming external connectivity on endpoint x (y): Error )"
      R"(starting userland proxy: listen tcp4 0.0.0.0:8081: bind: address already in use"})",
      "start container y");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("host port 8081"), std::string::npos);
  EXPECT_EQ(PortFromBindError("Bind for [::1]:9000 failed: port is already allocated"), 9000);
  EXPECT_EQ(PortFromBindError("something else"), 0);
}

TEST(DockerClientTest, AddressComesFromOptionsThenDockerHost) {
  ::setenv("DOCKER_HOST", "unix:///tmp/from-env.sock", 1);
  auto from_env = DockerClient::Create({});
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ((*from_env)->address(), "unix:///tmp/from-env.sock");
  ::unsetenv("DOCKER_HOST");
  auto fallback = DockerClient::Create({});
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ((*fallback)->address(), "unix:///var/run/docker.sock");
  auto tcp = DockerClient::Create({.docker_host = "tcp://127.0.0.1:2375"});
  ASSERT_FALSE(tcp.ok());
  EXPECT_EQ(tcp.status().code(), Code::kInvalidArgument);
  EXPECT_NE(tcp.status().message().find("tcp://"), std::string::npos);
}

TEST(DockerClientTest, MissingSocketIsUnavailableNamingTheAddress) {
  auto client = DockerClient::Create({.docker_host = "unix:///nonexistent/berth/docker.sock"});
  ASSERT_TRUE(client.ok());
  Status st = (*client)->Ping();
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message().rfind("Docker Engine at unix:///nonexistent/berth/docker.sock "
                               "unreachable: ",
                               0),
            0u)
      << st.message();
  auto driver = DockerDriver::Create({.docker_host = "unix:///nonexistent/berth/docker.sock"});
  ASSERT_TRUE(driver.ok());
  EXPECT_EQ((*driver)->List().status().code(), Code::kUnavailable);
}

// A fake engine: answers each request on a Unix socket with what `handler` returns
// (status, content type, body); records the request targets.
class FakeEngine {
 public:
  using Handler = std::function<std::tuple<int, std::string, std::string>(
      const http::request<http::string_body>&)>;

  explicit FakeEngine(Handler handler)
      : handler_(std::move(handler)),
        path_(std::filesystem::temp_directory_path() /
              ("berth-fake-docker-" + std::to_string(::getpid()) + "-" +
               std::to_string(counter_++) + ".sock")),
        acceptor_(ioc_) {
    std::filesystem::remove(path_);
    acceptor_.open();
    acceptor_.bind(local::endpoint(path_.string()));
    acceptor_.listen();
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeEngine() {
    stop_ = true;
    // Wake the blocking accept.
    local::socket s(ioc_);
    beast::error_code ec;
    s.connect(local::endpoint(path_.string()), ec);
    thread_.join();
    std::filesystem::remove(path_);
  }
  std::string address() const { return "unix://" + path_.string(); }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  void Serve() {
    while (!stop_) {
      local::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) return;
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      {
        std::lock_guard lock(mu_);
        targets_.push_back(std::string(req.target()));
      }
      auto [status, type, body] = handler_(req);
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type, type);
      res.body() = body;
      res.prepare_payload();
      http::write(socket, res, ec);
    }
  }

  static inline std::atomic<int> counter_{0};
  Handler handler_;
  std::filesystem::path path_;
  net::io_context ioc_;
  local::acceptor acceptor_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> targets_;
};

std::tuple<int, std::string, std::string> Version(std::string_view api) {
  return {200, "application/json", R"({"ApiVersion":")" + std::string(api) + R"("})"};
}

TEST(DockerClientTest, NegotiatesTheLowerApiVersion) {
  for (auto [server, expected] : {std::pair{"1.43", "1.41"}, std::pair{"1.40", "1.40"}}) {
    FakeEngine engine([server = std::string(server)](const auto& req) {
      if (req.target() == "/version") return Version(server);
      return std::tuple<int, std::string, std::string>{200, "application/json", "[]"};
    });
    auto client = DockerClient::Create({.docker_host = engine.address()});
    ASSERT_TRUE(client.ok());
    auto version = (*client)->ApiVersion();
    ASSERT_TRUE(version.ok()) << version.status().ToString();
    EXPECT_EQ(*version, expected);
    auto list = (*client)->ListContainers({"berth.alloc"}, true);
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    auto targets = engine.targets();
    ASSERT_EQ(targets.size(), 2u);
    EXPECT_EQ(targets[1].rfind("/v" + std::string(expected) + "/containers/json?all=1&filters=", 0),
              0u)
        << targets[1];
  }
}

TEST(DockerClientTest, DriverMapsEngineAnswers) {
  FakeEngine engine([](const http::request<http::string_body>& req) {
    std::string target(req.target());
    if (target == "/version") return Version("1.41");
    if (target.find("/containers/create") != std::string::npos) {
      if (req.body().find("berth/nope") != std::string::npos) {
        return std::tuple<int, std::string, std::string>{
            404, "application/json", R"({"message":"No such image: berth/nope:latest"})"};
      }
      return std::tuple<int, std::string, std::string>{201, "application/json",
                                                       R"({"Id":"c1","Warnings":[]})"};
    }
    if (target.find("/start") != std::string::npos) {
      return std::tuple<int, std::string, std::string>{
          500, "application/json",
          R"({"message":"Bind for 127.0.0.1:18080 failed: port is already allocated"})"};
    }
    if (target.find("/logs") != std::string::npos) {
      return std::tuple<int, std::string, std::string>{200, "application/vnd.docker.raw-stream",
                                                       Frame(1, "out\n") + Frame(2, "err\n")};
    }
    return std::tuple<int, std::string, std::string>{204, "text/plain", ""};
  });
  auto driver = DockerDriver::Create({.docker_host = engine.address(), .publish_ip = "127.0.0.1"});
  ASSERT_TRUE(driver.ok());

  StartRequest request;
  request.alloc_id = "a1";
  request.task = "web";
  request.image = "berth/nope:latest";
  auto missing = (*driver)->Start(request);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_EQ(missing.status().message().rfind("image berth/nope:latest not found", 0), 0u);

  request.image = "berth/busybox:latest";
  request.ports.push_back({.name = "http", .host_port = 18080, .container_port = 8080});
  auto in_use = (*driver)->Start(request);
  ASSERT_FALSE(in_use.ok());
  EXPECT_EQ(in_use.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(in_use.status().message().find("18080"), std::string::npos);
  // The failed container is removed, so a retry starts clean.
  auto targets = engine.targets();
  EXPECT_EQ(targets.back().rfind("/v1.41/containers/c1?", 0), 0u) << targets.back();

  std::string logs;
  TaskHandle handle;
  handle.driver = "docker";
  handle.id = "c1";
  Status st = (*driver)->Logs(handle, {}, [&](std::string_view d) {
    logs.append(d);
    return true;
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(logs, "out\nerr\n");
}

TEST(DockerDriverConfigTest, ContainerConfigCarriesTheRequest) {
  StartRequest r;
  r.alloc_id = "a/1";
  r.job = "shop";
  r.group = "front";
  r.task = "web";
  r.image = "nginx:1";
  r.command = "/bin/sh";
  r.args = {"-c", "exec nginx"};
  r.env = {{"A", "1"}};
  r.workdir = "/srv";
  r.ports = {{.name = "http", .host_port = 0, .container_port = 80}};
  r.cpu_shares = 512;
  r.memory_bytes = 64 << 20;
  r.volumes = {{.source = "/data", .target = "/d", .read_only = true},
               {.source = "cache", .target = "/c"}};
  r.labels = {{"team", "x"}};
  EXPECT_EQ(DockerDriver::ContainerName(r), "berth-a-1-web");
  auto c = DockerDriver::ContainerConfig(r, "127.0.0.1");
  EXPECT_EQ(c["Image"], "nginx:1");
  EXPECT_EQ(c["Cmd"], nlohmann::json({"/bin/sh", "-c", "exec nginx"}));
  EXPECT_EQ(c["Env"], nlohmann::json({"A=1"}));
  EXPECT_EQ(c["WorkingDir"], "/srv");
  EXPECT_EQ(c["Labels"]["berth.alloc"], "a/1");
  EXPECT_EQ(c["Labels"]["berth.job"], "shop");
  EXPECT_EQ(c["Labels"]["berth.group"], "front");
  EXPECT_EQ(c["Labels"]["berth.task"], "web");
  EXPECT_EQ(c["Labels"]["team"], "x");
  EXPECT_EQ(c["ExposedPorts"], nlohmann::json::parse(R"({"80/tcp":{}})"));
  EXPECT_EQ(c["HostConfig"]["PortBindings"],
            nlohmann::json::parse(R"({"80/tcp":[{"HostIp":"127.0.0.1","HostPort":""}]})"));
  EXPECT_EQ(c["HostConfig"]["Memory"], 64 << 20);
  EXPECT_EQ(c["HostConfig"]["CpuShares"], 512);
  EXPECT_EQ(c["HostConfig"]["Mounts"][0]["Type"], "bind");
  EXPECT_EQ(c["HostConfig"]["Mounts"][0]["ReadOnly"], true);
  EXPECT_EQ(c["HostConfig"]["Mounts"][1]["Type"], "volume");
}

}  // namespace
}  // namespace berth::driver
