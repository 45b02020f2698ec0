// DockerDriver against a real dockerd (label docker; scripts/docker-test-engine.sh start).
// The test image berth/busybox-www:latest is imported through the Engine API from a tarball
// holding Debian's static /bin/busybox (package busybox-static) and a /www/index.html. It has a
// name of its own: the end-to-end tests import a berth/busybox:latest without /www, and which
// one got there first decided whether the HTTP tests here could pass. Every container a test
// creates carries berth.test=1 and berth.test.owner=<pid>:<start time> of the test process: ctest
// runs each test in its own process, in parallel, so a process removes its own containers at the
// end and, at the start, only those whose owner process is gone (leftovers of earlier runs).
#include <unistd.h>

#include <utility>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
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
using namespace std::chrono_literals;

constexpr char kImage[] = "berth/busybox-www:latest";
// Generous: the machine is slow and busy; these are deadlines, not expectations.
constexpr auto kDeadline = 120s;

// A minimal ustar archive writer (directories, files, symlinks).
class TarWriter {
 public:
  void Dir(const std::string& name) { Entry(name + "/", '5', 0755, "", ""); }
  void File(const std::string& name, const std::string& data, int mode) {
    Entry(name, '0', mode, data, "");
  }
  void Symlink(const std::string& name, const std::string& target) {
    Entry(name, '2', 0777, "", target);
  }
  std::string Finish() { return out_ + std::string(1024, '\0'); }

 private:
  static void Octal(char* field, size_t width, uint64_t value) {
    std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                  static_cast<unsigned long long>(value));
  }
  void Entry(const std::string& name, char type, int mode, const std::string& data,
             const std::string& link) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    Octal(h + 100, 8, static_cast<uint64_t>(mode));
    Octal(h + 108, 8, 0);
    Octal(h + 116, 8, 0);
    Octal(h + 124, 12, data.size());
    Octal(h + 136, 12, 0);
    h[156] = type;
    std::snprintf(h + 157, 100, "%s", link.c_str());
    std::memcpy(h + 257,
                "ustar\0"
                "00",
                8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    out_.append(h, sizeof(h));
    out_ += data;
    out_.append((512 - data.size() % 512) % 512, '\0');
  }
  std::string out_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "<pid>:<start time>" of process `pid` (start time: field 22 of /proc/<pid>/stat, so a
// recycled pid is a different owner); "" if there is no such process.
std::string ProcessId(int pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  return std::to_string(pid) + ":" + field;
}

const std::string& Owner() {
  static const std::string owner = ProcessId(::getpid());
  return owner;
}

bool OwnerAlive(const std::string& owner) {
  auto colon = owner.find(':');
  if (colon == std::string::npos) return false;
  return ProcessId(std::atoi(owner.substr(0, colon).c_str())) == owner;
}

class DockerDriverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DockerDriverOptions options;
    options.publish_ip = "127.0.0.1";
    auto driver = DockerDriver::Create(options);
    ASSERT_TRUE(driver.ok()) << driver.status().ToString();
    driver_ = std::move(driver).value().release();
    Status ping = driver_->client().Ping();
    ASSERT_TRUE(ping.ok())
        << ping.ToString()
        << " (label docker needs a dockerd: scripts/docker-test-engine.sh start)";
    RemoveTestContainers();
    // Imported once: re-importing in every test process would leave dangling images behind.
    if (driver_->client().InspectImage(kImage).ok()) return;
    const std::string busybox = ReadFile("/bin/busybox");
    ASSERT_FALSE(busybox.empty()) << "/bin/busybox missing: apt-get install busybox-static";
    TarWriter tar;
    tar.Dir("bin");
    tar.File("bin/busybox", busybox, 0755);
    tar.Symlink("bin/sh", "busybox");
    tar.Dir("www");
    tar.File("www/index.html", "hello from berth\n", 0644);
    tar.Dir("tmp");
    Status imported = driver_->client().ImportImage(tar.Finish(), "berth/busybox-www", "latest");
    ASSERT_TRUE(imported.ok()) << imported.ToString();
  }
  static void TearDownTestSuite() {
    if (driver_ == nullptr) return;
    RemoveTestContainers();
    delete driver_;
    driver_ = nullptr;
  }
  // Removes this process's test containers and those of test processes that are gone.
  static void RemoveTestContainers() {
    auto leftovers = driver_->client().ListContainers({"berth.test=1", "berth.alloc"}, true);
    ASSERT_TRUE(leftovers.ok()) << leftovers.status().ToString();
    for (const auto& c : *leftovers) {
      std::string owner;
      if (c.contains("Labels") && c["Labels"].is_object() &&
          c["Labels"].contains("berth.test.owner") && c["Labels"]["berth.test.owner"].is_string()) {
        owner = c["Labels"]["berth.test.owner"].get<std::string>();
      }
      if (owner != Owner() && OwnerAlive(owner)) continue;
      Status st = driver_->client().RemoveContainer(c["Id"].get<std::string>(), /*force=*/true);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
  }

  // A request for a container in the test image, labelled as the test's.
  StartRequest Request(const std::string& task, std::vector<std::string> args) {
    static std::atomic<int> counter{0};
    StartRequest r;
    r.alloc_id = "t" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    r.job = "docker-test";
    r.group = "g";
    r.task = task;
    r.image = kImage;
    r.command = "/bin/busybox";
    r.args = std::move(args);
    r.labels = {{"berth.test", "1"}, {"berth.test.owner", Owner()}};
    return r;
  }

  std::string Logs(const TaskHandle& h, bool out, bool err) {
    std::string data;
    LogOptions options;
    options.stdout = out;
    options.stderr = err;
    Status st = driver_->Logs(h, options, [&](std::string_view d) {
      data.append(d);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return data;
  }

  static DockerDriver* driver_;
};
DockerDriver* DockerDriverTest::driver_ = nullptr;

LogOptions Follow() {
  LogOptions options;
  options.follow = true;
  return options;
}

// GET http://127.0.0.1:port/ once; "" on any failure.
std::string HttpGet(int port) {
  try {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(10s);
    stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"),
                                          static_cast<unsigned short>(port)));
    http::request<http::empty_body> req{http::verb::get, "/index.html", 11};
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return res.result() == http::status::ok ? res.body() : "";
  } catch (const std::exception&) {
    return "";
  }
}

TEST_F(DockerDriverTest, ServesHttpOnADynamicLoopbackPort) {
  auto r = Request("web", {"httpd", "-f", "-p", "8080", "-h", "/www"});
  r.ports = {{.name = "http", .host_port = 0, .container_port = 8080}};
  auto h = driver_->Start(r);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->driver, "docker");
  EXPECT_EQ(h->alloc_id, r.alloc_id);

  auto status = driver_->Inspect(*h);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->state, TaskState::kRunning);
  EXPECT_GT(status->pid, 0);
  EXPECT_GT(status->started_at_ms, 0);
  ASSERT_EQ(status->ports.size(), 1u);
  EXPECT_EQ(status->ports[0].name, "http");
  EXPECT_EQ(status->ports[0].container_port, 8080);
  const int port = status->ports[0].host_port;
  ASSERT_GT(port, 0);

  // httpd starts asynchronously: poll until it answers.
  std::string body;
  for (auto deadline = std::chrono::steady_clock::now() + kDeadline;
       body.empty() && std::chrono::steady_clock::now() < deadline;) {
    body = HttpGet(port);
    if (body.empty()) std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(body, "hello from berth\n");

  ASSERT_TRUE(driver_->Stop(*h, 5s).ok());
  auto stopped = driver_->Inspect(*h);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->state, TaskState::kExited);
  ASSERT_TRUE(driver_->Remove(*h).ok());
  auto gone = driver_->Inspect(*h);
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->state, TaskState::kMissing);
  // Removing again is not an error.
  EXPECT_TRUE(driver_->Remove(*h).ok());
}

TEST_F(DockerDriverTest, EnvExitCodeAndSeparatedLogs) {
  auto r = Request("env", {"sh", "-c", "echo \"$GREETING\"; echo oops >&2; exit 3"});
  r.env = {{"GREETING", "hello env"}};
  r.workdir = "/tmp";
  auto h = driver_->Start(r);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto code = driver_->Wait(*h, kDeadline);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 3);
  auto status = driver_->Inspect(*h);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, TaskState::kExited);
  EXPECT_EQ(status->exit_code, 3);
  // Not compared with started_at: the engine takes the two from different clocks.
  EXPECT_GT(status->finished_at_ms, 0);
  EXPECT_EQ(Logs(*h, true, false), "hello env\n");
  EXPECT_EQ(Logs(*h, false, true), "oops\n");
  ASSERT_TRUE(driver_->Remove(*h).ok());
}

TEST_F(DockerDriverTest, FollowedLogsEndWhenTheTaskExitsOrTheSinkStops) {
  auto r = Request("follow", {"sh", "-c", "echo one; sleep 1; echo two; sleep 1; echo three"});
  auto h = driver_->Start(r);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  std::string first;
  Status st = driver_->Logs(*h, Follow(), [&](std::string_view d) {
    first.append(d);
    return false;
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(first, "one\n");
  std::string all;
  st = driver_->Logs(*h, Follow(), [&](std::string_view d) {
    all.append(d);
    return true;
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(all, "one\ntwo\nthree\n");
  auto code = driver_->Wait(*h, kDeadline);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  ASSERT_TRUE(driver_->Remove(*h).ok());
}

TEST_F(DockerDriverTest, StopGivesGraceThenKills) {
  // Handles SIGTERM: exits 0 on its own within the grace period.
  auto polite = Request("polite", {"sh", "-c",
                                   "trap 'echo term; exit 0' TERM; echo ready; "
                                   "while true; do sleep 1; done"});
  auto p = driver_->Start(polite);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // The trap is set once "ready" is printed.
  for (auto deadline = std::chrono::steady_clock::now() + kDeadline;
       Logs(*p, true, false).find("ready") == std::string::npos &&
       std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(driver_->Stop(*p, 60s).ok());
  auto code = driver_->Wait(*p, kDeadline);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  EXPECT_NE(Logs(*p, true, false).find("term"), std::string::npos);

  // PID 1 without a handler ignores SIGTERM: killed after the grace.
  auto stubborn = Request("stubborn", {"sleep", "100000"});
  auto s = driver_->Start(stubborn);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(driver_->Stop(*s, 1s).ok());
  auto killed = driver_->Wait(*s, kDeadline);
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(*killed, 137);
  ASSERT_TRUE(driver_->Remove(*p).ok());
  ASSERT_TRUE(driver_->Remove(*s).ok());
}

TEST_F(DockerDriverTest, KillAndWaitTimeout) {
  auto h = driver_->Start(Request("sleeper", {"sleep", "100000"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto early = driver_->Wait(*h, 100ms);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), Code::kDeadlineExceeded);
  // Removing a running task is refused (the contract says it must have exited).
  EXPECT_EQ(driver_->Remove(*h).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(driver_->Kill(*h).ok());
  auto code = driver_->Wait(*h, kDeadline);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 137);
  EXPECT_TRUE(driver_->Kill(*h).ok());  // already exited: nothing to do
  ASSERT_TRUE(driver_->Remove(*h).ok());
}

TEST_F(DockerDriverTest, MissingImageIsNotFoundAndLeavesNothing) {
  auto r = Request("ghost", {"true"});
  r.image = "berth/no-such-image:latest";
  auto h = driver_->Start(r);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), Code::kNotFound);
  EXPECT_NE(h.status().message().find("image berth/no-such-image:latest not found"),
            std::string::npos)
      << h.status().message();
  auto list = driver_->List();
  ASSERT_TRUE(list.ok());
  for (const auto& t : *list) EXPECT_NE(t.alloc_id, r.alloc_id);
  EXPECT_EQ(driver_->client().InspectImage("berth/no-such-image:latest").status().code(),
            Code::kNotFound);
  EXPECT_TRUE(driver_->client().InspectImage(kImage).ok());
}

TEST_F(DockerDriverTest, HostPortInUseIsAClearError) {
  auto first = Request("web1", {"httpd", "-f", "-p", "8080", "-h", "/www"});
  first.ports = {{.name = "http", .host_port = 0, .container_port = 8080}};
  auto a = driver_->Start(first);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto status = driver_->Inspect(*a);
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->ports.size(), 1u);
  const int port = status->ports[0].host_port;
  ASSERT_GT(port, 0);

  auto second = Request("web2", {"httpd", "-f", "-p", "8080", "-h", "/www"});
  second.ports = {{.name = "http", .host_port = port, .container_port = 8080}};
  auto b = driver_->Start(second);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Code::kFailedPrecondition) << b.status().ToString();
  EXPECT_NE(b.status().message().find("host port " + std::to_string(port)), std::string::npos)
      << b.status().message();
  // The failed container was removed.
  auto list = driver_->List();
  ASSERT_TRUE(list.ok());
  for (const auto& t : *list) EXPECT_NE(t.alloc_id, second.alloc_id);

  ASSERT_TRUE(driver_->Kill(*a).ok());
  ASSERT_TRUE(driver_->Wait(*a, kDeadline).ok());
  ASSERT_TRUE(driver_->Remove(*a).ok());
}

TEST_F(DockerDriverTest, HostPortHeldByAnotherProcessIsAClearError) {
  // A listener outside Docker: the engine's userland proxy cannot bind the port.
  net::io_context ioc;
  net::ip::tcp::acceptor listener(ioc,
                                  net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const int port = listener.local_endpoint().port();
  auto r = Request("web3", {"httpd", "-f", "-p", "8080", "-h", "/www"});
  r.ports = {{.name = "http", .host_port = port, .container_port = 8080}};
  auto h = driver_->Start(r);
  if (h.ok()) {
    // Only an engine with its userland proxy (the default) binds host ports itself; with
    // --userland-proxy=false it cannot see the conflict.
    EXPECT_TRUE(driver_->Kill(*h).ok());
    EXPECT_TRUE(driver_->Wait(*h, kDeadline).ok());
    EXPECT_TRUE(driver_->Remove(*h).ok());
    GTEST_SKIP() << "the engine published port " << port
                 << " that another process holds (userland proxy disabled?)";
  }
  EXPECT_EQ(h.status().code(), Code::kFailedPrecondition) << h.status().ToString();
  EXPECT_NE(h.status().message().find("host port " + std::to_string(port)), std::string::npos)
      << h.status().message();
}

TEST_F(DockerDriverTest, MountsAndLimitsReachTheContainer) {
  const std::string dir = ::testing::TempDir() + "berth-docker-mount-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/greeting") << "from the host\n";
  auto r = Request("mount", {"sh", "-c", "cat /data/greeting; echo x > /data/new || echo ro >&2"});
  r.volumes = {{.source = dir, .target = "/data", .read_only = true}};
  r.memory_bytes = 64 << 20;
  r.cpu_shares = 256;
  auto h = driver_->Start(r);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto code = driver_->Wait(*h, kDeadline);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(Logs(*h, true, false), "from the host\n");
  EXPECT_NE(Logs(*h, false, true).find("ro"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir + "/new"));
  auto doc = driver_->client().InspectContainer(h->id);
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ((*doc)["HostConfig"]["Memory"], 64 << 20);
  EXPECT_EQ((*doc)["HostConfig"]["CpuShares"], 256);
  ASSERT_TRUE(driver_->Remove(*h).ok());
  std::filesystem::remove_all(dir);
}

// A file secret, as the agent leaves it on tmpfs: the container reads it at /run/secrets, cannot
// change it, and the value is nowhere in what the engine says about the container.
TEST_F(DockerDriverTest, FileSecretsReachTheContainerAndNotItsInspect) {
  const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm/" : ::testing::TempDir();
  const std::string dir = base + "berth-docker-secrets-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
  // A value no other part of the request holds, so finding it anywhere means it leaked.
  const std::string value =
      "s3cr3t-" + std::to_string(::getpid()) + "-" +
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  { std::ofstream(dir + "/db_password") << value; }
  std::filesystem::permissions(dir + "/db_password", std::filesystem::perms::owner_read);
  auto r =
      Request("secrets", {"sh", "-c",
                          "cat /run/secrets/db_password; echo; echo \"dir=$BERTH_SECRETS_DIR\"; "
                          "ls -l /run/secrets/db_password | cut -c1-10; "
                          "echo x > /run/secrets/db_password || echo read-only >&2; "
                          "touch /run/secrets/new || echo read-only >&2"});
  r.secrets_dir = dir;
  auto h = driver_->Start(r);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto code = driver_->Wait(*h, kDeadline);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(Logs(*h, true, false), value + "\ndir=/run/secrets\n-r--------\n");
  std::string err = Logs(*h, false, true);
  // Both writes failed (the engine's error, then our "read-only", twice).
  size_t refused = 0;
  for (size_t at = err.find("read-only\n"); at != std::string::npos;
       at = err.find("read-only\n", at + 1)) {
    ++refused;
  }
  EXPECT_EQ(refused, 2u) << err;
  {
    std::ifstream in(dir + "/db_password");
    std::string still((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(still, value);
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/new"));
  auto doc = driver_->client().InspectContainer(h->id);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  const std::string inspected = doc->dump();
  EXPECT_EQ(inspected.find(value), std::string::npos) << "docker inspect shows the secret";
  // What it does show: the read-only bind mount of the host directory.
  bool mounted = false;
  for (const auto& m : (*doc)["Mounts"]) {
    if (m.value("Destination", "") != "/run/secrets") continue;
    mounted = true;
    EXPECT_EQ(m.value("Source", ""), dir);
    EXPECT_EQ(m.value("RW", true), false);
  }
  EXPECT_TRUE(mounted) << (*doc)["Mounts"].dump();
  ASSERT_TRUE(driver_->Remove(*h).ok());
  std::filesystem::remove_all(dir);
}

// The documented caveat of env secrets: the task gets them, and so does `docker inspect`.
TEST_F(DockerDriverTest, EnvSecretsReachTheContainerAndItsInspect) {
  auto r = Request("envsecret", {"sh", "-c", "echo \"key=$API_KEY\""});
  r.secret_env = {{"API_KEY", "env-secret-value"}};
  auto h = driver_->Start(r);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_TRUE(driver_->Wait(*h, kDeadline).ok());
  EXPECT_EQ(Logs(*h, true, false), "key=env-secret-value\n");
  auto doc = driver_->client().InspectContainer(h->id);
  ASSERT_TRUE(doc.ok());
  EXPECT_NE((*doc)["Config"]["Env"].dump().find("API_KEY=env-secret-value"), std::string::npos);
  ASSERT_TRUE(driver_->Remove(*h).ok());
}

TEST_F(DockerDriverTest, ListFindsExactlyTheStartedContainers) {
  std::vector<TaskHandle> started;
  for (int i = 0; i < 3; ++i) {
    auto r = Request("list" + std::to_string(i), {"sleep", "100000"});
    r.job = "list-job";
    auto h = driver_->Start(r);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    started.push_back(*h);
  }
  // One exited: still listed (the agent must see it to collect its exit code).
  ASSERT_TRUE(driver_->Kill(started[2]).ok());
  ASSERT_TRUE(driver_->Wait(started[2], kDeadline).ok());

  auto mine = [&]() {
    std::vector<TaskHandle> out;
    auto list = driver_->List();
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    if (!list.ok()) return out;
    for (const auto& t : *list) {
      for (const auto& s : started) {
        if (t.alloc_id == s.alloc_id) out.push_back(t);
      }
    }
    return out;
  };
  auto found = mine();
  ASSERT_EQ(found.size(), 3u);
  for (const auto& s : started) {
    EXPECT_NE(std::find(found.begin(), found.end(), s), found.end()) << s.alloc_id;
  }
  for (const auto& s : started) {
    ASSERT_TRUE(driver_->Kill(s).ok());
    ASSERT_TRUE(driver_->Wait(s, kDeadline).ok());
    ASSERT_TRUE(driver_->Remove(s).ok());
  }
  EXPECT_TRUE(mine().empty());
}

TEST_F(DockerDriverTest, StartAdoptsARunningContainerOfTheSameTask) {
  auto r = Request("adopt", {"sleep", "100000"});
  auto first = driver_->Start(r);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto again = driver_->Start(r);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->id, first->id);
  ASSERT_TRUE(driver_->Kill(*first).ok());
  ASSERT_TRUE(driver_->Wait(*first, kDeadline).ok());
  // An exited one is stale: replaced by a fresh container.
  auto fresh = driver_->Start(r);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_NE(fresh->id, first->id);
  ASSERT_TRUE(driver_->Kill(*fresh).ok());
  ASSERT_TRUE(driver_->Wait(*fresh, kDeadline).ok());
  ASSERT_TRUE(driver_->Remove(*fresh).ok());
}

TEST_F(DockerDriverTest, VersionIsNegotiated) {
  auto version = driver_->client().ApiVersion();
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(version->rfind("1.", 0), 0u);
  auto doc = driver_->client().Version();
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_TRUE(doc->contains("ApiVersion"));
}

std::unique_ptr<DockerDriver> MachineDriver(const std::string& machine_id) {
  DockerDriverOptions options;
  options.publish_ip = "127.0.0.1";
  options.machine_id = machine_id;
  auto driver = DockerDriver::Create(options);
  EXPECT_TRUE(driver.ok()) << driver.status().ToString();
  return driver.ok() ? std::move(driver).value() : nullptr;
}

bool Lists(DockerDriver& driver, const std::string& alloc_id) {
  auto list = driver.List();
  EXPECT_TRUE(list.ok()) << list.status().ToString();
  if (!list.ok()) return false;
  return std::any_of(list->begin(), list->end(),
                     [&](const TaskHandle& t) { return t.alloc_id == alloc_id; });
}

TEST_F(DockerDriverTest, ListSeesOnlyItsOwnMachinesContainers) {
  const std::string pid = std::to_string(::getpid());
  auto a = MachineDriver("a-" + pid);
  auto b = MachineDriver("b-" + pid);
  ASSERT_TRUE(a && b);
  auto h = b->Start(Request("owned", {"sleep", "100000"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto doc = driver_->client().InspectContainer(h->id);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ((*doc)["Config"]["Labels"]["berth.machine"], "b-" + pid);
  EXPECT_EQ((*doc)["Name"], "/berth-b-" + pid + "-" + h->alloc_id + "-owned");

  EXPECT_FALSE(Lists(*a, h->alloc_id));
  EXPECT_TRUE(Lists(*b, h->alloc_id));
  // A driver without a machine id lists every berth container on the engine.
  EXPECT_TRUE(Lists(*driver_, h->alloc_id));

  ASSERT_TRUE(b->Kill(*h).ok());
  ASSERT_TRUE(b->Wait(*h, kDeadline).ok());
  ASSERT_TRUE(b->Remove(*h).ok());
  EXPECT_FALSE(Lists(*b, h->alloc_id));
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
  // Waits (up to kDeadline) until `alloc_id` was reported.
  bool WaitFor(const std::string& alloc_id) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kDeadline, [&] {
      return std::find(ids_.begin(), ids_.end(), alloc_id) != ids_.end();
    });
  }
  bool Saw(const std::string& alloc_id) {
    std::lock_guard lock(mu_);
    return std::find(ids_.begin(), ids_.end(), alloc_id) != ids_.end();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> ids_;
};

TEST_F(DockerDriverTest, ExitCallbackHearsOfItsMachinesExitedContainers) {
  const std::string pid = std::to_string(::getpid());
  auto mine = MachineDriver("exits-" + pid);
  auto other = MachineDriver("other-" + pid);
  ASSERT_TRUE(mine && other);
  ExitLog mine_log, other_log, any_log;
  mine->SetExitCallback(mine_log.Callback());
  other->SetExitCallback(other_log.Callback());
  driver_->SetExitCallback(any_log.Callback());  // no machine id: every berth container

  // The other machine's container dies first: if the machine filter failed, `mine` would hear
  // of it before its own (events arrive in order).
  auto o = other->Start(Request("exits-other", {"true"}));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(other_log.WaitFor(o->alloc_id));
  // Exits with an error code, after a while: reported all the same.
  auto h = mine->Start(Request("exits", {"sh", "-c", "sleep 1; exit 3"}));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_TRUE(mine_log.WaitFor(h->alloc_id));
  EXPECT_FALSE(mine_log.Saw(o->alloc_id));
  EXPECT_TRUE(any_log.WaitFor(o->alloc_id));
  EXPECT_TRUE(any_log.WaitFor(h->alloc_id));
  auto status = mine->Inspect(*h);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, TaskState::kExited);
  EXPECT_EQ(status->exit_code, 3);

  driver_->SetExitCallback(nullptr);
  mine->SetExitCallback(nullptr);
  ASSERT_TRUE(mine->Remove(*h).ok());
  ASSERT_TRUE(other->Remove(*o).ok());
  EXPECT_FALSE(other_log.Saw(h->alloc_id));
}

}  // namespace
}  // namespace berth::driver
