#include "health/health_check.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>

extern char** environ;

namespace berth::health {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

Duration Since(SteadyClock::time_point start) {
  return std::chrono::duration_cast<Duration>(SteadyClock::now() - start);
}

std::string Endpoint(const std::string& host, int port) {
  // An IPv6 literal needs brackets in "host:port" and in the Host header.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string ErrorText(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  return ec.message();
}

// Resolves and connects `stream`, whose expiry is already armed; runs on `ioc`'s caller thread.
void AsyncConnect(tcp::resolver& resolver, beast::tcp_stream& stream, const std::string& host,
                  int port, std::function<void(beast::error_code)> done) {
  resolver.async_resolve(
      host, std::to_string(port),
      [&stream, done](beast::error_code ec, const tcp::resolver::results_type& results) {
        if (ec) return done(ec);
        stream.async_connect(results,
                             [done](beast::error_code cec, const tcp::endpoint&) { done(cec); });
      });
}

}  // namespace

HttpProbe::HttpProbe(std::string host, int port, std::string path,
                     std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), path_(std::move(path)), timeout_(timeout) {}

ProbeOutcome HttpProbe::Run() const {
  const auto start = SteadyClock::now();
  ProbeOutcome out;
  const std::string target = path_.empty() || path_[0] != '/' ? "/" + path_ : path_;
  const std::string where = "GET http://" + Endpoint(host_, port_) + target;
  try {
    // One io_context per call: probes are infrequent, and this keeps Run() free of shared state.
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    beast::flat_buffer buffer;
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, Endpoint(host_, port_));
    req.set(http::field::user_agent, "berth-health");
    req.set(http::field::connection, "close");
    // Only the header is read; the parser would otherwise refuse a body above its default limit.
    http::response_parser<http::empty_body> parser;
    beast::error_code result;
    std::string stage = "connect";

    // The expiry covers resolve, connect, write and read together: one deadline for the check.
    stream.expires_after(timeout_);
    // The stream's timer does not cover resolution; this one cancels it (the handler then
    // fires once getaddrinfo returns, which no timer can cut short).
    asio::steady_timer guard(ioc, timeout_);
    guard.async_wait([&](beast::error_code ec) {
      if (!ec) {
        resolver.cancel();
        stream.cancel();
      }
    });
    AsyncConnect(resolver, stream, host_, port_, [&](beast::error_code ec) {
      if (ec) {
        result = ec;
        guard.cancel();
        return;
      }
      stage = "request";
      http::async_write(stream, req, [&](beast::error_code wec, size_t) {
        if (wec) {
          result = wec;
          guard.cancel();
          return;
        }
        stage = "response";
        http::async_read_header(stream, buffer, parser, [&](beast::error_code rec, size_t) {
          result = rec;
          guard.cancel();
        });
      });
    });
    ioc.run();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);

    if (result == asio::error::operation_aborted && SteadyClock::now() - start >= timeout_) {
      result = beast::error::timeout;
    }
    if (result) {
      out.message = where + ": " + stage + ": " + ErrorText(result);
    } else {
      const auto& res = parser.get();
      const unsigned status = res.result_int();
      out.ok = status >= 200 && status < 400;
      out.message = where + ": HTTP " + std::to_string(status);
      if (!res.reason().empty()) out.message += " " + std::string(res.reason());
    }
  } catch (const std::exception& e) {  // Asio allocation failures and the like: edges only.
    out.ok = false;
    out.message = where + ": " + e.what();
  }
  out.duration = Since(start);
  return out;
}

TcpProbe::TcpProbe(std::string host, int port, std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

ProbeOutcome TcpProbe::Run() const {
  const auto start = SteadyClock::now();
  ProbeOutcome out;
  const std::string where = "connect " + Endpoint(host_, port_);
  try {
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    beast::error_code result;
    stream.expires_after(timeout_);
    asio::steady_timer guard(ioc, timeout_);
    guard.async_wait([&](beast::error_code ec) {
      if (!ec) {
        resolver.cancel();
        stream.cancel();
      }
    });
    AsyncConnect(resolver, stream, host_, port_, [&](beast::error_code ec) {
      result = ec;
      guard.cancel();
    });
    ioc.run();
    if (result == asio::error::operation_aborted && SteadyClock::now() - start >= timeout_) {
      result = beast::error::timeout;
    }
    out.ok = !result;
    out.message = where + ": " + (result ? ErrorText(result) : std::string("ok"));
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  } catch (const std::exception& e) {
    out.ok = false;
    out.message = where + ": " + e.what();
  }
  out.duration = Since(start);
  return out;
}

CommandProbe::CommandProbe(std::vector<std::string> argv, std::chrono::milliseconds timeout)
    : argv_(std::move(argv)), timeout_(timeout) {}

namespace {

std::string ErrnoText(int err) {
  return std::strerror(err);
}

// Owns a descriptor; closes it on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Spawns argv in a new process group with stdout+stderr on `out_fd`. Returns the pid or the
// errno of the failure (glibc's posix_spawn reports exec failures such as ENOENT synchronously).
Result<pid_t> Spawn(const std::vector<std::string>& argv, int out_fd) {
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  if (posix_spawn_file_actions_init(&fa) != 0) return Internal("posix_spawn_file_actions_init");
  if (posix_spawnattr_init(&attr) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return Internal("posix_spawnattr_init");
  }
  int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  // Descriptors other agent threads opened without O_CLOEXEC must not leak into the check.
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  // Its own group, so the timeout kills helpers the command started too; default signal
  // dispositions and mask, whatever the agent set for itself.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  if (rc == 0) rc = posix_spawnattr_setpgroup(&attr, 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
  if (rc == 0) {
    rc = posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  pid_t pid = -1;
  if (rc == 0) rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (rc == ENOENT) return NotFound(argv[0] + ": command not found");
    return Unavailable(argv[0] + ": " + ErrnoText(rc));
  }
  return pid;
}

std::string Truncated(std::string output, bool dropped) {
  while (!output.empty() &&
         (output.back() == '\n' || output.back() == '\r' || output.back() == ' ')) {
    output.pop_back();
  }
  if (dropped) output += "...";
  return output;
}

}  // namespace

ProbeOutcome CommandProbe::Run() const {
  const auto start = SteadyClock::now();
  const auto deadline = start + timeout_;
  ProbeOutcome out;
  if (argv_.empty() || argv_[0].empty()) {
    out.message = "command check: empty argv";
    return out;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    out.message = argv_[0] + ": pipe: " + ErrnoText(errno);
    out.duration = Since(start);
    return out;
  }
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);
  Result<pid_t> spawned = Spawn(argv_, write_end.get());
  write_end.Reset();  // EOF on read_end then means every holder of the pipe has gone
  if (!spawned.ok()) {
    out.message = spawned.status().message();
    out.duration = Since(start);
    return out;
  }
  const pid_t pid = *spawned;

  std::string output;
  bool dropped = false;
  bool eof = false;
  char buf[4096];
  // Reads what is ready within `wait_ms`; false once the pipe is closed or unreadable.
  auto read_some = [&](int wait_ms) {
    pollfd p{read_end.get(), POLLIN, 0};
    int pr = poll(&p, 1, wait_ms);
    if (pr < 0) return errno == EINTR;
    if (pr == 0) return true;
    ssize_t n = read(read_end.get(), buf, sizeof buf);
    if (n < 0) return errno == EINTR || errno == EAGAIN;
    if (n == 0) return false;
    const size_t room = kMaxOutput - std::min(kMaxOutput, output.size());
    output.append(buf, std::min(room, static_cast<size_t>(n)));
    if (static_cast<size_t>(n) > room) dropped = true;
    return true;
  };
  // WNOWAIT leaves the exited leader a zombie, so its pid (the group id) cannot be reused
  // before the group kill below.
  auto exited = [pid] {
    siginfo_t info{};
    return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid;
  };
  bool timed_out = false;
  while (true) {
    if (exited()) {
      // Collect what the command wrote just before it exited.
      // Bounded, in case a helper it left behind keeps writing.
      for (int i = 0; i < 64 && !eof; ++i) {
        pollfd p{read_end.get(), POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) break;
        if (!read_some(0)) eof = true;
      }
      break;
    }
    const auto now = SteadyClock::now();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    // Short slices: a helper holding the pipe open must not hide the leader's exit.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    const int slice = static_cast<int>(std::clamp<int64_t>(left.count(), 1, 20));
    if (eof) {
      std::this_thread::sleep_for(std::chrono::milliseconds(slice));
    } else if (!read_some(slice)) {
      eof = true;
    }
  }
  // Kill the whole group: on timeout the command and its helpers, otherwise whatever the
  // command left behind. Then reap the leader.
  kill(-pid, SIGKILL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    out.message = argv_[0] + ": timed out after " + spec::FormatDuration(timeout_) + ", killed";
    std::string text = Truncated(std::move(output), dropped);
    if (!text.empty()) out.message += ": " + text;
    out.duration = Since(start);
    return out;
  }
  std::string text = Truncated(std::move(output), dropped);
  if (WIFEXITED(st)) {
    out.ok = WEXITSTATUS(st) == 0;
    out.message = argv_[0] + ": exit " + std::to_string(WEXITSTATUS(st));
  } else if (WIFSIGNALED(st)) {
    out.message = argv_[0] + ": killed by signal " + std::to_string(WTERMSIG(st));
  } else {
    out.message = argv_[0] + ": ended with status " + std::to_string(st);
  }
  if (!text.empty()) out.message += ": " + text;
  out.duration = Since(start);
  return out;
}

Result<ProbePtr> MakeProbe(const spec::HealthCheck& check, std::string host, int port) {
  switch (check.type) {
    case spec::HealthCheckType::kHttp:
    case spec::HealthCheckType::kTcp:
      if (port <= 0 || port > 65535) {
        return InvalidArgument("health check: port " + std::to_string(port) + " out of range");
      }
      if (check.type == spec::HealthCheckType::kHttp) {
        return ProbePtr(
            std::make_unique<HttpProbe>(std::move(host), port, check.path, check.timeout));
      }
      return ProbePtr(std::make_unique<TcpProbe>(std::move(host), port, check.timeout));
    case spec::HealthCheckType::kCommand:
      if (check.command.empty() || check.command[0].empty()) {
        return InvalidArgument("health check: command check without a command");
      }
      return ProbePtr(std::make_unique<CommandProbe>(check.command, check.timeout));
  }
  return Internal("health check: unknown type");
}

std::string_view HealthStateName(HealthState s) {
  switch (s) {
    case HealthState::kUnknown:
      return "unknown";
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
  }
  return "unknown";
}

HealthTracker::HealthTracker(const spec::HealthCheck& check, ClockPtr clock)
    : clock_(std::move(clock)),
      interval_(check.interval),
      healthy_threshold_(std::max(1, check.healthy_threshold)),
      unhealthy_threshold_(std::max(1, check.unhealthy_threshold)),
      next_check_at_(clock_->Now()) {}

bool HealthTracker::Record(const ProbeOutcome& outcome) {
  last_message_ = outcome.message;
  next_check_at_ = clock_->Now() + interval_;
  const HealthState before = state_;
  if (outcome.ok) {
    failures_ = 0;
    ++passes_;
    if (passes_ >= healthy_threshold_) state_ = HealthState::kHealthy;
  } else {
    passes_ = 0;
    ++failures_;
    if (failures_ >= unhealthy_threshold_) state_ = HealthState::kUnhealthy;
  }
  return state_ != before;
}

HealthMonitor::HealthMonitor(ProbePtr probe, const spec::HealthCheck& check, ClockPtr clock,
                             ChangeCallback on_change)
    : probe_(std::move(probe)),
      clock_(clock),
      on_change_(std::move(on_change)),
      tracker_(check, std::move(clock)) {
  thread_ = std::thread([this] { Loop(); });
}

HealthMonitor::~HealthMonitor() {
  Stop();
}

void HealthMonitor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

HealthState HealthMonitor::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tracker_.state();
}

std::string HealthMonitor::last_message() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tracker_.last_message();
}

void HealthMonitor::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const TimePoint next = tracker_.NextCheckAt();
    const TimePoint now = clock_->Now();
    if (now < next) {
      cv_.wait_for(lock, next - now);
      continue;  // re-check stopping_ and the clock
    }
    lock.unlock();
    ProbeOutcome outcome = probe_->Run();  // unlocked: state() must not wait for a probe
    lock.lock();
    if (stopping_) break;
    if (tracker_.Record(outcome)) {
      const HealthState state = tracker_.state();
      lock.unlock();
      if (on_change_) on_change_(state, outcome.message);
      lock.lock();
    }
  }
}

}  // namespace berth::health
