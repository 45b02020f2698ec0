// DockerClient without a dockerd: the log-frame decoder, engine error mapping, and the client
// against a fake engine on a Unix socket (version negotiation, error answers, log streams, the
// event stream), and DockerDriver's machine labels and exit watcher (reconnecting) against it.
#include "driver/docker_client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
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
using namespace std::chrono_literals;

// Deadlines only: nothing waits this long unless something is broken.
constexpr auto kLong = 60s;

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

// A socket path of its own for a fake engine.
std::filesystem::path FakeSocketPath() {
  static std::atomic<int> counter{0};
  return std::filesystem::temp_directory_path() /
         ("berth-fake-docker-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
          ".sock");
}

// A fake engine: answers each request on a Unix socket with what `handler` returns
// (status, content type, body); records the request targets. A `stream` handler, when given,
// sees each request first and may answer it itself on the socket (returning true), e.g. with
// a chunked stream; destroying the engine shuts that connection down (an engine going away).
// One connection at a time.
class FakeEngine {
 public:
  using Handler = std::function<std::tuple<int, std::string, std::string>(
      const http::request<http::string_body>&)>;
  using StreamHandler =
      std::function<bool(const http::request<http::string_body>&, local::socket&)>;

  explicit FakeEngine(Handler handler, StreamHandler stream = nullptr,
                      std::filesystem::path path = FakeSocketPath())
      : handler_(std::move(handler)),
        stream_(std::move(stream)),
        path_(std::move(path)),
        acceptor_(ioc_) {
    std::filesystem::remove(path_);
    acceptor_.open();
    acceptor_.bind(local::endpoint(path_.string()));
    acceptor_.listen();
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeEngine() {
    stop_ = true;
    // End a stream in progress, then wake the blocking accept.
    if (int fd = current_fd_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
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
      if (stream_) {
        current_fd_ = socket.native_handle();
        // Closed by the destructor's shutdown if it comes first.
        bool answered = stop_ || stream_(req, socket);
        current_fd_ = -1;
        if (answered) continue;
      }
      auto [status, type, body] = handler_(req);
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type, type);
      res.body() = body;
      res.prepare_payload();
      http::write(socket, res, ec);
    }
  }

  Handler handler_;
  StreamHandler stream_;
  std::filesystem::path path_;
  std::atomic<int> current_fd_{-1};
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
  EXPECT_EQ(DockerDriver::ContainerName(r, ""), "berth-a-1-web");
  auto c = DockerDriver::ContainerConfig(r, "127.0.0.1", "");
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

TEST(DockerDriverConfigTest, MachineIdLabelsAndNamesTheContainer) {
  StartRequest r;
  r.alloc_id = "a1";
  r.task = "web";
  r.image = "nginx:1";
  r.labels = {{"berth.machine", "spoofed"}, {"team", "x"}};
  EXPECT_EQ(DockerDriver::ContainerName(r, ""), "berth-a1-web");
  EXPECT_EQ(DockerDriver::ContainerName(r, "m/1"), "berth-m-1-a1-web");
  auto with = DockerDriver::ContainerConfig(r, "127.0.0.1", "m1");
  EXPECT_EQ(with["Labels"]["berth.machine"], "m1");
  EXPECT_EQ(with["Labels"]["berth.alloc"], "a1");
  EXPECT_EQ(with["Labels"]["team"], "x");
  // Without a machine id there is no machine label, not even one the request brought.
  auto without = DockerDriver::ContainerConfig(r, "127.0.0.1", "");
  EXPECT_FALSE(without["Labels"].contains("berth.machine")) << without["Labels"].dump();
  EXPECT_EQ(without["Labels"]["berth.alloc"], "a1");

  using Filters = std::map<std::string, std::vector<std::string>>;
  EXPECT_EQ(DockerDriver::ExitEventFilters(""),
            (Filters{{"type", {"container"}}, {"event", {"die"}}, {"label", {"berth.alloc"}}}));
  EXPECT_EQ(
      DockerDriver::ExitEventFilters("m1"),
      (Filters{{"type", {"container"}}, {"event", {"die"}}, {"label", {"berth.machine=m1"}}}));
}

std::string UrlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::tuple<int, std::string, std::string> Json(int status, std::string body) {
  return {status, "application/json", std::move(body)};
}

TEST(DockerClientTest, ListAsksTheEngineForThisMachineOnly) {
  FakeEngine engine([](const http::request<http::string_body>& req) {
    if (req.target() == "/version") return Version("1.41");
    // As if the engine ignored the filter: the driver still keeps only its own.
    return Json(200, R"([{"Id":"c1","Labels":{"berth.alloc":"a1","berth.machine":"a"}},)"
                     R"({"Id":"c2","Labels":{"berth.alloc":"a2","berth.machine":"b"}},)"
                     R"({"Id":"c3","Labels":{"berth.alloc":"a3"}}])");
  });
  auto a = DockerDriver::Create({.docker_host = engine.address(), .machine_id = "a"});
  ASSERT_TRUE(a.ok());
  auto mine = (*a)->List();
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ((*mine)[0].alloc_id, "a1");
  auto targets = engine.targets();
  EXPECT_EQ(UrlDecode(targets.back()),
            R"(/v1.41/containers/json?all=1&filters={"label":["berth.alloc","berth.machine=a"]})");

  auto any = DockerDriver::Create({.docker_host = engine.address()});
  ASSERT_TRUE(any.ok());
  auto all = (*any)->List();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->size(), 3u);
  EXPECT_EQ(UrlDecode(engine.targets().back()),
            R"(/v1.41/containers/json?all=1&filters={"label":["berth.alloc"]})");
}

// Raw HTTP/1.1 chunked streaming on a fake engine's socket.
void Write(local::socket& s, std::string_view data) {
  beast::error_code ec;
  net::write(s, net::buffer(data.data(), data.size()), ec);
}
void StartChunked(local::socket& s) {
  Write(s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
}
void Chunk(local::socket& s, std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  Write(s, std::string(size) + std::string(data) + "\r\n");
}
void EndChunked(local::socket& s) {
  Write(s, "0\r\n\r\n");
}
// Blocks until the client closes the connection (or the engine is destroyed).
void HoldUntilClosed(local::socket& s) {
  char byte;
  beast::error_code ec;
  while (!ec) s.read_some(net::buffer(&byte, 1), ec);
}

std::string DieEvent(const std::string& alloc, int64_t time_nano, const std::string& machine = "") {
  nlohmann::json attributes = {{"berth.alloc", alloc}, {"exitCode", "0"}, {"name", "x"}};
  if (!machine.empty()) attributes["berth.machine"] = machine;
  nlohmann::json event = {{"status", "die"},
                          {"id", "c-" + alloc},
                          {"Type", "container"},
                          {"Action", "die"},
                          {"Actor", {{"ID", "c-" + alloc}, {"Attributes", attributes}}},
                          {"scope", "local"},
                          {"time", time_nano / 1000000000},
                          {"timeNano", time_nano}};
  return event.dump() + "\n";
}

TEST(DockerClientTest, EventsArriveWholeHoweverTheStreamIsCut) {
  const std::string first = DieEvent("a1", 1700000000000000001);
  FakeEngine engine([](const auto&) { return Version("1.41"); },
                    [&](const http::request<http::string_body>& req, local::socket& s) {
                      if (req.target().find("/events") == std::string::npos) return false;
                      StartChunked(s);
                      Chunk(s, first.substr(0, 10));
                      Chunk(s, first.substr(10));
                      Chunk(s, "\n");                  // a blank line
                      Chunk(s, "this is not json\n");  // skipped
                      Chunk(s, DieEvent("a2", 1700000000000000002) +
                                   DieEvent("a3", 1700000000000000003).substr(0, 5));
                      Chunk(s, DieEvent("a3", 1700000000000000003).substr(5));
                      EndChunked(s);  // as an engine that shuts down
                      return true;
                    });
  auto client = DockerClient::Create({.docker_host = engine.address()});
  ASSERT_TRUE(client.ok());
  EventsRequest request;
  request.filters = {{"type", {"container"}}, {"event", {"die"}}};
  request.since_ns = 1700000000000000042;
  int opened = 0;
  request.on_open = [&] { ++opened; };
  std::vector<std::string> allocs;
  Status st = (*client)->Events(request, [&](const nlohmann::json& event) {
    allocs.push_back(event["Actor"]["Attributes"]["berth.alloc"].get<std::string>());
    return true;
  });
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("ended the event stream"), std::string::npos) << st.message();
  EXPECT_EQ(opened, 1);
  EXPECT_EQ(allocs, (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(UrlDecode(engine.targets().back()),
            R"(/v1.41/events?filters={"event":["die"],"type":["container"]})"
            "&since=1700000000.000000042");
}

TEST(DockerClientTest, EventsEndWhenTheSinkSaysSoOrOnStop) {
  FakeEngine engine([](const auto&) { return Version("1.41"); },
                    [](const http::request<http::string_body>& req, local::socket& s) {
                      if (req.target().find("/events") == std::string::npos) return false;
                      StartChunked(s);
                      if (req.target().find("since=") != std::string::npos) {
                        Chunk(s, DieEvent("a1", 1) + DieEvent("a2", 2));
                      }
                      HoldUntilClosed(s);  // a quiet engine: the stream stays open
                      return true;
                    });
  auto client = DockerClient::Create({.docker_host = engine.address()});
  ASSERT_TRUE(client.ok());

  EventsRequest with_events;
  with_events.since_ns = 1;
  int seen = 0;
  Status st = (*client)->Events(with_events, [&](const nlohmann::json&) {
    ++seen;
    return false;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(seen, 1);

  // A stop from another thread ends a stream blocked on a quiet engine at once.
  std::stop_source stop;
  std::promise<void> opened;
  EventsRequest quiet;
  quiet.on_open = [&] { opened.set_value(); };
  auto call = std::async(std::launch::async, [&] {
    return (*client)->Events(
        quiet, [](const nlohmann::json&) { return true; }, stop.get_token());
  });
  ASSERT_EQ(opened.get_future().wait_for(kLong), std::future_status::ready);
  EXPECT_EQ(call.wait_for(50ms), std::future_status::timeout);
  stop.request_stop();
  ASSERT_EQ(call.wait_for(kLong), std::future_status::ready);
  st = call.get();
  EXPECT_TRUE(st.ok()) << st.ToString();

  // Already stopped: returns without a request.
  const auto requests = engine.targets().size();
  st = (*client)->Events(
      quiet, [](const nlohmann::json&) { return true; }, stop.get_token());
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(engine.targets().size(), requests);
}

TEST(DockerClientTest, EventsRefusedOrUnreachable) {
  FakeEngine engine([](const http::request<http::string_body>& req) {
    if (req.target() == "/version") return Version("1.41");
    return Json(400, R"({"message":"invalid filter 'nope'"})");
  });
  auto client = DockerClient::Create({.docker_host = engine.address()});
  ASSERT_TRUE(client.ok());
  EventsRequest request;
  request.filters = {{"nope", {"x"}}};
  Status st = (*client)->Events(request, [](const nlohmann::json&) { return true; });
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("invalid filter"), std::string::npos);

  auto nowhere = DockerClient::Create({.docker_host = "unix:///nonexistent/berth/docker.sock"});
  ASSERT_TRUE(nowhere.ok());
  st = (*nowhere)->Events({}, [](const nlohmann::json&) { return true; });
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
}

// Collects the alloc ids an exit callback receives.
class ExitLog {
 public:
  std::function<void(const std::string&)> Callback() {
    return [this](const std::string& alloc_id) {
      std::lock_guard lock(mu_);
      ids_.push_back(alloc_id);
      cv_.notify_all();
    };
  }
  std::vector<std::string> WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kLong, [&] { return ids_.size() >= n; });
    return ids_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> ids_;
};

// The /events targets among `targets`.
std::vector<std::string> EventTargets(const std::vector<std::string>& targets) {
  std::vector<std::string> out;
  for (const auto& t : targets) {
    if (t.find("/events") != std::string::npos) out.push_back(UrlDecode(t));
  }
  return out;
}

TEST(DockerDriverExitWatchTest, FollowsDieEventsAcrossEngineRestarts) {
  const auto path = FakeSocketPath();
  auto driver = DockerDriver::Create({.docker_host = "unix://" + path.string(),
                                      .call_timeout = std::chrono::milliseconds(10000),
                                      .machine_id = "m1"});
  ASSERT_TRUE(driver.ok());
  ExitLog exits;
  const auto set_at = std::chrono::system_clock::now();
  // Events come after the callback was set (the watcher asks for those since then).
  const int64_t base =
      std::chrono::duration_cast<std::chrono::seconds>(set_at.time_since_epoch() + 10s).count() *
      1000000000;
  // No engine yet: the watcher retries until one answers.
  (*driver)->SetExitCallback(exits.Callback());

  auto first = std::make_unique<FakeEngine>(
      [](const auto&) { return Version("1.41"); },
      [base](const http::request<http::string_body>& req, local::socket& s) {
        if (req.target().find("/events") == std::string::npos) return false;
        StartChunked(s);
        Chunk(s, DieEvent("a1", base + 41, "m1"));
        HoldUntilClosed(s);  // until the engine goes away
        return true;
      },
      path);
  ASSERT_EQ(exits.WaitFor(1), std::vector<std::string>{"a1"});
  auto targets = EventTargets(first->targets());
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(
      targets[0].rfind(R"(/v1.41/events?filters={"event":["die"],"label":["berth.machine=m1"],)"
                       R"("type":["container"]}&since=)",
                       0),
      0u)
      << targets[0];
  // The first stream asks for exits since the callback was set.
  const auto since_s = std::stoll(targets[0].substr(targets[0].find("since=") + 6));
  const auto set_s =
      std::chrono::duration_cast<std::chrono::seconds>(set_at.time_since_epoch()).count();
  EXPECT_LE(std::abs(since_s - set_s), 1) << targets[0];

  // The engine restarts: the stream breaks, the socket is gone for a while, then a new engine
  // answers; the watcher reconnects asking for what came after the last event it saw.
  first.reset();
  FakeEngine second([](const auto&) { return Version("1.41"); },
                    [base](const http::request<http::string_body>& req, local::socket& s) {
                      if (req.target().find("/events") == std::string::npos) return false;
                      StartChunked(s);
                      std::string start = DieEvent("a-start", base + 50, "m1");
                      start.replace(start.find(R"("Action":"die")"), 14, R"("Action":"start")");
                      Chunk(s, start);                                 // not a die: ignored
                      Chunk(s, DieEvent("a-other", base + 51, "m2"));  // another machine's
                      Chunk(s, DieEvent("a2", base + 52, "m1"));
                      HoldUntilClosed(s);
                      return true;
                    },
                    path);
  EXPECT_EQ(exits.WaitFor(2), (std::vector<std::string>{"a1", "a2"}));
  targets = EventTargets(second.targets());
  ASSERT_GE(targets.size(), 1u);
  EXPECT_NE(targets[0].find("&since=" + std::to_string(base / 1000000000) + ".000000042"),
            std::string::npos)
      << targets[0];

  // Clearing the callback closes the quiet stream at once.
  const auto before = std::chrono::steady_clock::now();
  (*driver)->SetExitCallback(nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 5s);
  // Set again, then the driver is destroyed while its stream waits: no hang either.
  (*driver)->SetExitCallback(exits.Callback());
  driver->reset();
}

}  // namespace
}  // namespace berth::driver
