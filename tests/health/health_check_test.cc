#include "health/health_check.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace berth::health {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

// A one-shot HTTP server on 127.0.0.1:0: accepts one connection, reads the request head, sends
// `response`, closes. Joined in the destructor.
class OneShotHttpServer {
 public:
  explicit OneShotHttpServer(std::string response)
      : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        port_(acceptor_.local_endpoint().port()),
        response_(std::move(response)) {
    thread_ = std::thread([this] {
      boost::system::error_code ec;
      tcp::socket sock(ioc_);
      acceptor_.accept(sock, ec);
      if (ec) return;
      asio::streambuf buf;
      asio::read_until(sock, buf, "\r\n\r\n", ec);
      if (ec) return;
      request_ = std::string(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
      asio::write(sock, asio::buffer(response_), ec);
      sock.shutdown(tcp::socket::shutdown_both, ec);
    });
  }
  ~OneShotHttpServer() { Join(); }
  int port() const { return port_; }
  // Waits for the server thread; after it, request() holds what the probe sent.
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  const std::string& request() const { return request_; }

 private:
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  int port_;
  std::string response_;
  std::string request_;
  std::thread thread_;
};

// A port on 127.0.0.1 that nothing listens on: bound to 0, then closed.
int ClosedPort() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  int port = a.local_endpoint().port();
  a.close();
  return port;
}

TEST(HttpProbeTest, HealthyOn200) {
  OneShotHttpServer server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
  HttpProbe probe("127.0.0.1", server.port(), "/healthz", milliseconds(5000));
  ProbeOutcome out = probe.Run();
  EXPECT_TRUE(out.ok) << out.message;
  EXPECT_NE(out.message.find("HTTP 200 OK"), std::string::npos) << out.message;
  EXPECT_GT(out.duration.count(), 0);
  server.Join();
  EXPECT_EQ(server.request().rfind("GET /healthz HTTP/1.1\r\n", 0), 0u) << server.request();
  EXPECT_NE(server.request().find("Host: 127.0.0.1:" + std::to_string(server.port())),
            std::string::npos);
}

TEST(HttpProbeTest, HealthyOnRedirect) {
  OneShotHttpServer server(
      "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n");
  ProbeOutcome out = HttpProbe("127.0.0.1", server.port(), "/", milliseconds(5000)).Run();
  EXPECT_TRUE(out.ok) << out.message;
  EXPECT_NE(out.message.find("HTTP 302"), std::string::npos) << out.message;
}

TEST(HttpProbeTest, UnhealthyOn500NamesTheStatus) {
  OneShotHttpServer server("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom");
  ProbeOutcome out = HttpProbe("127.0.0.1", server.port(), "/", milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.message.find("HTTP 500 Internal Server Error"), std::string::npos) << out.message;
}

TEST(HttpProbeTest, LargeBodyIsNotRead) {
  // Beyond the parser's default body limit: only the head matters.
  std::string body(2 << 20, 'x');
  OneShotHttpServer server("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\n\r\n" + body);
  ProbeOutcome out = HttpProbe("127.0.0.1", server.port(), "/", milliseconds(5000)).Run();
  EXPECT_TRUE(out.ok) << out.message;
}

TEST(HttpProbeTest, GarbageResponseIsUnhealthy) {
  OneShotHttpServer server("SSH-2.0-OpenSSH\r\n\r\n");
  ProbeOutcome out = HttpProbe("127.0.0.1", server.port(), "/", milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.message.find("response"), std::string::npos) << out.message;
}

TEST(HttpProbeTest, ClosedPortIsUnhealthy) {
  ProbeOutcome out = HttpProbe("127.0.0.1", ClosedPort(), "/", milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.message.find("connect"), std::string::npos) << out.message;
  EXPECT_NE(out.message.find("refused"), std::string::npos) << out.message;
}

TEST(HttpProbeTest, ServerThatNeverAnswersTimesOut) {
  // The kernel completes the handshake from the backlog; nobody ever accepts or answers.
  asio::io_context ioc;
  tcp::acceptor silent(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ProbeOutcome out =
      HttpProbe("127.0.0.1", silent.local_endpoint().port(), "/", milliseconds(200)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.message.find("timed out"), std::string::npos) << out.message;
}

TEST(TcpProbeTest, OpenPortIsHealthy) {
  asio::io_context ioc;
  tcp::acceptor listening(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ProbeOutcome out =
      TcpProbe("127.0.0.1", listening.local_endpoint().port(), milliseconds(5000)).Run();
  EXPECT_TRUE(out.ok) << out.message;
}

TEST(TcpProbeTest, ClosedPortIsUnhealthy) {
  ProbeOutcome out = TcpProbe("127.0.0.1", ClosedPort(), milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.message.find("refused"), std::string::npos) << out.message;
}

TEST(CommandProbeTest, ExitZeroIsHealthyWithOutput) {
  ProbeOutcome out =
      CommandProbe({"sh", "-c", "echo all good; echo warn >&2"}, milliseconds(5000)).Run();
  EXPECT_TRUE(out.ok) << out.message;
  EXPECT_EQ(out.message, "sh: exit 0: all good\nwarn");
}

TEST(CommandProbeTest, ExitOneIsUnhealthy) {
  ProbeOutcome out = CommandProbe({"sh", "-c", "echo nope; exit 1"}, milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.message, "sh: exit 1: nope");
}

TEST(CommandProbeTest, NotFoundIsUnhealthy) {
  ProbeOutcome out = CommandProbe({"berth-no-such-command-xyz"}, milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.message.find("not found"), std::string::npos) << out.message;
}

TEST(CommandProbeTest, HangingCommandIsKilledAtTheTimeout) {
  ProbeOutcome out =
      CommandProbe({"sh", "-c", "echo started; exec sleep 30"}, milliseconds(200)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.message, "sh: timed out after 200ms, killed: started");
}

TEST(CommandProbeTest, HelperHoldingTheOutputDoesNotHideTheExit) {
  // The background sleep keeps the pipe open; the leader's exit still ends the check, and the
  // group kill takes the helper with it.
  ProbeOutcome out = CommandProbe({"sh", "-c", "sleep 30 & echo done"}, milliseconds(5000)).Run();
  EXPECT_TRUE(out.ok) << out.message;
  EXPECT_EQ(out.message, "sh: exit 0: done");
}

TEST(CommandProbeTest, OutputIsTruncated) {
  ProbeOutcome out =
      CommandProbe({"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"}, milliseconds(5000)).Run();
  EXPECT_TRUE(out.ok) << out.message;
  const std::string prefix = "sh: exit 0: ";
  EXPECT_EQ(out.message, prefix + std::string(CommandProbe::kMaxOutput, 'a') + "...");
}

TEST(CommandProbeTest, KilledBySignal) {
  ProbeOutcome out = CommandProbe({"sh", "-c", "kill -TERM $$"}, milliseconds(5000)).Run();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.message, "sh: killed by signal 15");
}

TEST(MakeProbeTest, BuildsEachTypeAndRejectsBadInput) {
  spec::HealthCheck check;
  check.type = spec::HealthCheckType::kHttp;
  EXPECT_TRUE(MakeProbe(check, "127.0.0.1", 8080).ok());
  EXPECT_EQ(MakeProbe(check, "127.0.0.1", 0).status().code(), Code::kInvalidArgument);
  check.type = spec::HealthCheckType::kTcp;
  EXPECT_TRUE(MakeProbe(check, "127.0.0.1", 8080).ok());
  EXPECT_EQ(MakeProbe(check, "127.0.0.1", 70000).status().code(), Code::kInvalidArgument);
  check.type = spec::HealthCheckType::kCommand;
  EXPECT_EQ(MakeProbe(check, "", 0).status().code(), Code::kInvalidArgument);
  check.command = {"true"};
  auto probe = MakeProbe(check, "", 0);
  ASSERT_TRUE(probe.ok());
  EXPECT_TRUE((*probe)->Run().ok);
}

ProbeOutcome Pass() {
  return {true, "pass", {}};
}
ProbeOutcome Fail() {
  return {false, "fail", {}};
}

spec::HealthCheck Check(int healthy, int unhealthy) {
  spec::HealthCheck check;
  check.interval = milliseconds(10'000);
  check.healthy_threshold = healthy;
  check.unhealthy_threshold = unhealthy;
  return check;
}

TEST(HealthTrackerTest, StartsUnknownAndDueAtOnce) {
  auto clock = std::make_shared<ManualClock>();
  HealthTracker t(Check(1, 3), clock);
  EXPECT_EQ(t.state(), HealthState::kUnknown);
  EXPECT_EQ(t.NextCheckAt(), clock->Now());
  EXPECT_TRUE(t.Due());
  EXPECT_EQ(t.last_message(), "");
}

TEST(HealthTrackerTest, NextCheckIsOneIntervalAfterEachRecord) {
  auto clock = std::make_shared<ManualClock>();
  HealthTracker t(Check(1, 3), clock);
  clock->Advance(milliseconds(250));
  EXPECT_FALSE(t.Record(Fail()));
  EXPECT_EQ(t.NextCheckAt(), clock->Now() + milliseconds(10'000));
  EXPECT_FALSE(t.Due());
  clock->Advance(milliseconds(9'999));
  EXPECT_FALSE(t.Due());
  clock->Advance(milliseconds(1));
  EXPECT_TRUE(t.Due());
}

TEST(HealthTrackerTest, HealthyAfterThresholdPasses) {
  auto clock = std::make_shared<ManualClock>();
  HealthTracker t(Check(2, 3), clock);
  EXPECT_FALSE(t.Record(Pass()));
  EXPECT_EQ(t.state(), HealthState::kUnknown);
  EXPECT_EQ(t.consecutive_passes(), 1);
  EXPECT_TRUE(t.Record(Pass()));
  EXPECT_EQ(t.state(), HealthState::kHealthy);
  EXPECT_FALSE(t.Record(Pass()));  // no change, no transition
  EXPECT_EQ(t.last_message(), "pass");
}

TEST(HealthTrackerTest, UnhealthyAfterThresholdFailuresInARow) {
  auto clock = std::make_shared<ManualClock>();
  HealthTracker t(Check(1, 3), clock);
  EXPECT_TRUE(t.Record(Pass()));
  EXPECT_EQ(t.state(), HealthState::kHealthy);
  // Two failures, a pass, two failures: never three in a row, so still healthy.
  EXPECT_FALSE(t.Record(Fail()));
  EXPECT_FALSE(t.Record(Fail()));
  EXPECT_FALSE(t.Record(Pass()));
  EXPECT_FALSE(t.Record(Fail()));
  EXPECT_FALSE(t.Record(Fail()));
  EXPECT_EQ(t.state(), HealthState::kHealthy);
  EXPECT_EQ(t.consecutive_failures(), 2);
  EXPECT_TRUE(t.Record(Fail()));
  EXPECT_EQ(t.state(), HealthState::kUnhealthy);
  EXPECT_EQ(t.last_message(), "fail");
  EXPECT_FALSE(t.Record(Fail()));
  // Recovery needs healthy_threshold passes.
  EXPECT_TRUE(t.Record(Pass()));
  EXPECT_EQ(t.state(), HealthState::kHealthy);
}

TEST(HealthTrackerTest, UnknownToUnhealthyDirectly) {
  auto clock = std::make_shared<ManualClock>();
  HealthTracker t(Check(1, 2), clock);
  EXPECT_FALSE(t.Record(Fail()));
  EXPECT_EQ(t.state(), HealthState::kUnknown);
  EXPECT_TRUE(t.Record(Fail()));
  EXPECT_EQ(t.state(), HealthState::kUnhealthy);
}

TEST(HealthTrackerTest, ThresholdsBelowOneCountAsOne) {
  auto clock = std::make_shared<ManualClock>();
  HealthTracker t(Check(0, -5), clock);
  EXPECT_TRUE(t.Record(Fail()));
  EXPECT_EQ(t.state(), HealthState::kUnhealthy);
  EXPECT_TRUE(t.Record(Pass()));
  EXPECT_EQ(t.state(), HealthState::kHealthy);
}

TEST(HealthTrackerTest, StateNames) {
  EXPECT_EQ(HealthStateName(HealthState::kUnknown), "unknown");
  EXPECT_EQ(HealthStateName(HealthState::kHealthy), "healthy");
  EXPECT_EQ(HealthStateName(HealthState::kUnhealthy), "unhealthy");
}

// Passes or fails as the test says; counts runs.
class ScriptedProbe final : public Probe {
 public:
  explicit ScriptedProbe(std::shared_ptr<std::atomic<bool>> ok) : ok_(std::move(ok)) {}
  ProbeOutcome Run() const override { return {ok_->load(), ok_->load() ? "up" : "down", {}}; }

 private:
  std::shared_ptr<std::atomic<bool>> ok_;
};

TEST(HealthMonitorTest, ReportsTransitionsAndStops) {
  auto ok = std::make_shared<std::atomic<bool>>(true);
  spec::HealthCheck check = Check(1, 2);
  check.interval = milliseconds(1);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<HealthState> seen;
  HealthMonitor monitor(std::make_unique<ScriptedProbe>(ok), check, SystemClock::Shared(),
                        [&](HealthState state, const std::string&) {
                          std::lock_guard<std::mutex> lock(mu);
                          seen.push_back(state);
                          cv.notify_all();
                        });
  // Waits for an event, not for time: the cap only keeps a broken build from hanging.
  auto wait_for_count = [&](size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return seen.size() >= n; });
  };
  ASSERT_TRUE(wait_for_count(1));
  ok->store(false);
  ASSERT_TRUE(wait_for_count(2));
  monitor.Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0], HealthState::kHealthy);
  EXPECT_EQ(seen[1], HealthState::kUnhealthy);
  EXPECT_EQ(monitor.state(), seen.back());
}

TEST(HealthMonitorTest, StopBeforeFirstChangeIsClean) {
  auto ok = std::make_shared<std::atomic<bool>>(false);
  spec::HealthCheck check = Check(1, 1000);
  check.interval = milliseconds(60'000);
  HealthMonitor monitor(std::make_unique<ScriptedProbe>(ok), check, SystemClock::Shared(), nullptr);
  monitor.Stop();
  monitor.Stop();  // idempotent
  EXPECT_EQ(monitor.state(), HealthState::kUnknown);
}

}  // namespace
}  // namespace berth::health
