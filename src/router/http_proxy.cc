#include "router/http_proxy.h"

// <utility> before Asio: Boost 1.74's awaitable.hpp uses std::exchange without including it.
#include <utility>

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "router/tls_certificates.h"

namespace berth::router {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kUpstreamBuffer = 32 * 1024;

inline auto Await(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

enum class Phase : uint8_t {
  kIdle,           // waiting for a request
  kHead,           // reading a request head
  kClientBody,     // reading a request body
  kClientWrite,    // writing to the client
  kConnect,        // connecting to a backend
  kUpstreamWrite,  // writing to the backend
  kUpstreamRead,   // waiting for the backend
  kTunnel,         // upgraded connection
  kLinger,         // closing: discarding what the client still sends
};

bool IsClientPhase(Phase p) {
  return p == Phase::kIdle || p == Phase::kHead || p == Phase::kClientBody ||
         p == Phase::kClientWrite || p == Phase::kLinger;
}

struct UpstreamConn {
  UpstreamConn(asio::io_context& io, BackendPtr b)
      : sock(io), buf(new char[kUpstreamBuffer]), backend(std::move(b)) {}
  tcp::socket sock;
  std::unique_ptr<char[]> buf;
  size_t len = 0;
  BackendPtr backend;
  Clock::time_point idle_since;
  bool reused = false;

  void Consume(size_t n) {
    std::memmove(buf.get(), buf.get() + n, len - n);
    len -= n;
  }
};
using UpstreamPtr = std::unique_ptr<UpstreamConn>;

// What the sweep needs of a connection, whatever its stream type.
struct SessionBase {
  virtual ~SessionBase() = default;
  virtual void CloseClient() = 0;
  // Whether the client has sent bytes not read yet (a request racing with a graceful stop).
  virtual bool HasInput() = 0;
  Phase phase = Phase::kIdle;
  Clock::time_point deadline;
  UpstreamConn* up = nullptr;  // the backend connection in use, if any
  bool upstream_timed_out = false;
  size_t buffered = 0;  // bytes received and not yet handled
};

}  // namespace

struct HttpProxy::Impl {
  struct Worker;
  Impl(ProxyOptions o, const RouteTableHolder& r) : options(std::move(o)), routes(r) {}

  ProxyOptions options;
  const RouteTableHolder& routes;
  std::vector<std::unique_ptr<Worker>> workers;
  uint16_t bound_port = 0;
  std::FILE* access_log = nullptr;
  bool owns_log = false;
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;  // guarded by mu: worker threads not yet finished
  bool started = false;
  bool stopped = false;
  std::chrono::milliseconds tick{100};
  std::shared_ptr<asio::ssl::context> ssl_ctx;
  asio::io_context probe_io;  // for the listen-port check only

  Status Listen(Worker& w, const tcp::endpoint& ep);
};

struct HttpProxy::Impl::Worker {
  Worker(Impl& p) : proxy(p), acceptor(io), sweep(io), routes(p.routes) {}

  Impl& proxy;
  asio::io_context io{1};
  tcp::acceptor acceptor;
  asio::steady_timer sweep;
  RouteTableHolder::Reader routes;
  std::unordered_map<uint64_t, std::vector<UpstreamPtr>> pool;
  std::unordered_set<SessionBase*> sessions;
  bool stopping = false;
  bool forced = false;
  Clock::time_point now = Clock::now();  // refreshed by the sweep and per request
  std::thread thread;
  std::string log_line;

  std::atomic<uint64_t> connections{0}, requests{0}, rejected{0}, upstream_connects{0},
      upstream_reused{0}, retries{0}, errors_5xx{0}, not_found{0};

  void Count(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  UpstreamPtr TakeIdle(const BackendPtr& b) {
    auto it = pool.find(b->id);
    if (it == pool.end()) return nullptr;
    auto& v = it->second;
    while (!v.empty()) {
      UpstreamPtr c = std::move(v.back());
      v.pop_back();
      // Recently used: trust it (a stale one is replaced once a request finds out, see
      // Handle). Idle longer: the backend may have timed it out.
      if (now - c->idle_since < std::chrono::seconds(1)) {
        c->reused = true;
        return c;
      }
      // A pooled connection the backend closed (or wrote to) meanwhile is useless: one peek
      // tells without blocking.
      char byte;
      ssize_t n = ::recv(c->sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->reused = true;
        return c;
      }
      error_code ec;
      c->sock.close(ec);
    }
    return nullptr;
  }

  void GiveBack(UpstreamPtr c) {
    auto& v = pool[c->backend->id];
    if (stopping || v.size() >= proxy.options.max_idle_per_backend) {
      error_code ec;
      c->sock.close(ec);
      return;
    }
    c->idle_since = now;
    c->reused = false;
    v.push_back(std::move(c));
  }

  void ClosePool() {
    for (auto& [id, v] : pool) {
      for (auto& c : v) {
        error_code ec;
        c->sock.close(ec);
      }
    }
    pool.clear();
  }

  void Sweep() {
    now = Clock::now();
    for (SessionBase* s : sessions) {
      bool idle_stop = stopping && s->phase == Phase::kIdle && s->buffered == 0 && !s->HasInput();
      if (s->deadline > now && !idle_stop && !forced) continue;
      if (s->phase == Phase::kTunnel || forced) {
        s->CloseClient();
        if (s->up != nullptr) {
          error_code ec;
          s->up->sock.close(ec);
        }
      } else if (IsClientPhase(s->phase)) {
        s->CloseClient();
      } else if (s->up != nullptr) {
        s->upstream_timed_out = true;
        error_code ec;
        s->up->sock.close(ec);
      }
    }
    if (stopping) {
      ClosePool();
    } else {
      auto limit = proxy.options.upstream_idle_timeout;
      for (auto it = pool.begin(); it != pool.end();) {
        auto& v = it->second;
        std::erase_if(v, [&](const UpstreamPtr& c) { return now - c->idle_since > limit; });
        it = v.empty() ? pool.erase(it) : std::next(it);
      }
    }
  }

  void ArmSweep() {
    sweep.expires_after(proxy.tick);
    sweep.async_wait([this](error_code ec) {
      if (ec) return;
      Sweep();
      if (!stopping || !sessions.empty()) ArmSweep();
    });
  }

  void BeginStop() {
    stopping = true;
    error_code ec;
    acceptor.close(ec);
    Sweep();
  }

  void Force() {
    forced = true;
    Sweep();
  }

  awaitable<void> Accept();
  template <typename Stream>
  awaitable<void> Serve(tcp::socket sock);
};

namespace {

template <typename Stream>
constexpr bool kIsTls = !std::is_same_v<Stream, tcp::socket>;

template <typename Stream>
class Session final : public SessionBase {
 public:
  using Worker = HttpProxy::Impl::Worker;

  template <typename... Args>
  Session(Worker& w, Args&&... args)
      : w_(w),
        opt_(w.proxy.options),
        stream_(std::forward<Args>(args)...),
        cap_(opt_.limits.max_head_bytes + 4096),
        buf_(new char[cap_]) {
    w_.sessions.insert(this);
    out_.reserve(2048);
    deadline = w_.now + opt_.header_timeout;
  }
  ~Session() override {
    w_.sessions.erase(this);
    if (upstream_) {
      error_code ec;
      upstream_->sock.close(ec);
    }
  }

  void CloseClient() override {
    error_code ec;
    stream_.lowest_layer().close(ec);
  }
  bool HasInput() override {
    error_code ec;
    return stream_.lowest_layer().is_open() && stream_.lowest_layer().available(ec) > 0;
  }

  awaitable<void> Run();

 private:
  struct Failure {
    int status = 0;
    const char* why = "";
  };

  void SetPhase(Phase p, std::chrono::milliseconds timeout) {
    phase = p;
    deadline = w_.now + timeout;
  }
  void Consume(size_t n) {
    std::memmove(buf_.get(), buf_.get() + n, len_ - n);
    len_ -= n;
    buffered = len_;
  }
  // `wait_first`: the peer is not expected to have sent anything yet (a keep-alive client
  // between requests, a backend that was just sent a request), so wait for readiness instead
  // of trying a read that would only say EAGAIN: one system call less per request.
  awaitable<bool> ReadClient(bool wait_first = false) {
    error_code ec;
    size_t n = 0;
    auto into = asio::buffer(buf_.get() + len_, cap_ - len_);
    if constexpr (!kIsTls<Stream>) {
      if (wait_first) {
        co_await stream_.async_wait(tcp::socket::wait_read, Await(ec));
        if (!ec) n = stream_.read_some(into, ec);
      } else {
        n = co_await stream_.async_read_some(into, Await(ec));
      }
    } else {
      n = co_await stream_.async_read_some(into, Await(ec));
    }
    w_.now = Clock::now();
    if (ec || n == 0) co_return false;
    len_ += n;
    buffered = len_;
    co_return true;
  }
  template <typename Buffers>
  awaitable<bool> WriteClient(const Buffers& b) {
    SetPhase(Phase::kClientWrite, opt_.client_timeout);
    error_code ec;
    co_await asio::async_write(stream_, b, Await(ec));
    co_return !ec;
  }
  template <typename Buffers>
  awaitable<bool> WriteUpstream(const Buffers& b) {
    SetPhase(Phase::kUpstreamWrite, opt_.backend_timeout);
    error_code ec;
    co_await asio::async_write(upstream_->sock, b, Await(ec));
    co_return !ec;
  }
  awaitable<bool> ReadUpstream(bool wait_first = false) {
    SetPhase(Phase::kUpstreamRead, opt_.backend_timeout);
    error_code ec;
    size_t n = 0;
    auto into =
        asio::buffer(upstream_->buf.get() + upstream_->len, kUpstreamBuffer - upstream_->len);
    if (wait_first) {
      co_await upstream_->sock.async_wait(tcp::socket::wait_read, Await(ec));
      if (!ec) n = upstream_->sock.read_some(into, ec);
    } else {
      n = co_await upstream_->sock.async_read_some(into, Await(ec));
    }
    w_.now = Clock::now();
    if (ec || n == 0) co_return false;
    upstream_->len += n;
    co_return true;
  }

  void DropUpstream() {
    if (!upstream_) return;
    error_code ec;
    upstream_->sock.close(ec);
    upstream_.reset();
    up = nullptr;
  }

  // Answers with a short text body. Returns whether the connection may serve another request.
  awaitable<bool> SendError(int status, std::string_view why, bool keep_alive);
  // Serves one parsed request; returns whether the connection stays open.
  awaitable<bool> Handle();
  awaitable<Failure> Connect(const RouteGroup& g);
  awaitable<void> Tunnel();
  awaitable<void> Linger();
  void BuildUpstreamHead();
  void BuildClientHead(bool keep_alive, bool decode_chunked);
  // Bytes at the start of buf_ that belong to the request body (validating chunk framing);
  // -1 on a malformed chunked body.
  int64_t BodyBytesInBuffer();
  void Log(int status, uint64_t bytes, Clock::time_point start);

  Worker& w_;
  const ProxyOptions& opt_;
  Stream stream_;
  const size_t cap_;  // the head limit, plus room for the start of a body
  std::unique_ptr<char[]> buf_;
  size_t len_ = 0;
  std::string out_;
  std::string peer_;
  http::HeadScanner scanner_;
  http::RequestHead req_;
  http::ResponseHead resp_;
  http::ChunkedDecoder chunks_;
  uint64_t body_left_ = 0;  // Content-Length body bytes still to forward
  UpstreamPtr upstream_;
  // Saved from the request before its head is consumed (for the log and the response).
  std::string log_method_, log_target_, log_host_;
};

template <typename Stream>
awaitable<bool> Session<Stream>::SendError(int status, std::string_view why, bool keep_alive) {
  if (status >= 500) w_.Count(w_.errors_5xx);
  char body[512];
  int body_len =
      std::snprintf(body, sizeof(body), "%d %.*s: %.*s\n", status,
                    static_cast<int>(http::ReasonPhrase(status).size()),
                    http::ReasonPhrase(status).data(), static_cast<int>(why.size()), why.data());
  if (body_len < 0) body_len = 0;
  if (body_len >= static_cast<int>(sizeof(body))) body_len = sizeof(body) - 1;
  out_.clear();
  out_ += "HTTP/1.1 ";
  out_ += std::to_string(status);
  out_ += ' ';
  out_ += http::ReasonPhrase(status);
  out_ += "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
  out_ += std::to_string(body_len);
  out_ += keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  std::array<asio::const_buffer, 2> b{asio::buffer(out_),
                                      asio::buffer(body, static_cast<size_t>(body_len))};
  bool ok = co_await WriteClient(b);
  co_return ok&& keep_alive;
}

template <typename Stream>
void Session<Stream>::BuildUpstreamHead() {
  out_.clear();
  out_.append(req_.method).append(" ").append(req_.path).append(" HTTP/1.1\r\n");
  bool host = false;
  if (req_.absolute_form) {
    out_.append("Host: ").append(req_.authority).append("\r\n");
    host = true;
  }
  bool xff = false;
  for (const auto& f : req_.fields) {
    switch (f.role) {
      case http::FieldRole::kHost:
        host = true;
        [[fallthrough]];
      case http::FieldRole::kForward:
      case http::FieldRole::kTransferCoding:
        out_.append(f.name).append(": ").append(f.value).append("\r\n");
        break;
      case http::FieldRole::kUpgrade:
        if (req_.upgrade) out_.append(f.name).append(": ").append(f.value).append("\r\n");
        break;
      case http::FieldRole::kForwardedFor:
        xff = true;
        break;
      case http::FieldRole::kDrop:
        break;
    }
  }
  if (!host && !upstream_->backend->address.empty()) {
    out_.append("Host: ").append(upstream_->backend->address).append("\r\n");
  }
  if (req_.upgrade) out_.append("Connection: upgrade\r\n");
  out_.append("X-Forwarded-For: ");
  if (xff) {
    for (const auto& f : req_.fields) {
      if (f.role == http::FieldRole::kForwardedFor) out_.append(f.value).append(", ");
    }
  }
  out_.append(peer_).append("\r\nX-Forwarded-Proto: ");
  out_.append(kIsTls<Stream> ? "https" : "http");
  if (!req_.authority.empty()) out_.append("\r\nX-Forwarded-Host: ").append(req_.authority);
  out_.append("\r\n\r\n");
}

template <typename Stream>
void Session<Stream>::BuildClientHead(bool keep_alive, bool decode_chunked) {
  out_.clear();
  char status[4] = {static_cast<char>('0' + resp_.status / 100 % 10),
                    static_cast<char>('0' + resp_.status / 10 % 10),
                    static_cast<char>('0' + resp_.status % 10), 0};
  out_.append("HTTP/1.1 ").append(status, 3).append(" ");
  out_.append(resp_.reason.empty() ? http::ReasonPhrase(resp_.status) : resp_.reason);
  out_.append("\r\n");
  for (const auto& f : resp_.fields) {
    bool keep = f.role == http::FieldRole::kForward ||
                (f.role == http::FieldRole::kTransferCoding && !decode_chunked) ||
                (f.role == http::FieldRole::kUpgrade && resp_.status == 101);
    if (keep) out_.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  if (resp_.status == 101) {
    out_.append("Connection: upgrade\r\n");
  } else if (!keep_alive) {
    out_.append("Connection: close\r\n");
  } else if (req_.minor_version == 0) {
    out_.append("Connection: keep-alive\r\n");
  }
  out_.append("\r\n");
}

template <typename Stream>
int64_t Session<Stream>::BodyBytesInBuffer() {
  if (req_.body == http::BodyKind::kContentLength) {
    return static_cast<int64_t>(std::min<uint64_t>(len_, body_left_));
  }
  if (req_.body != http::BodyKind::kChunked) return 0;
  size_t used = 0;
  std::string_view data;
  while (used < len_ && !chunks_.done()) {
    used += chunks_.Feed(std::string_view(buf_.get() + used, len_ - used), opt_.limits, &data);
    if (chunks_.failed()) return -1;
  }
  return static_cast<int64_t>(used);
}

template <typename Stream>
void Session<Stream>::Log(int status, uint64_t bytes, Clock::time_point start) {
  std::FILE* f = w_.proxy.access_log;
  if (f == nullptr) return;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  std::string& l = w_.log_line;
  l.clear();
  char ts[32];
  auto wall = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&wall, &tm);
  std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  l.append(ts).append(" ").append(peer_).append(" \"").append(log_method_).append(" ");
  l.append(log_target_).append("\" ").append(std::to_string(status)).append(" ");
  l.append(std::to_string(bytes)).append(" ").append(std::to_string(us)).append("us host=");
  l.append(log_host_).append(" backend=");
  l.append(upstream_ ? upstream_->backend->address : std::string("-")).append("\n");
  std::fwrite(l.data(), 1, l.size(), f);
}

// Picks a live backend not yet tried; nullptr if none.
const BackendPtr* Pick(const RouteGroup& g, const Backend* const* tried, int ntried,
                       int64_t now_ns) {
  size_t n = g.backends.size();
  if (n == 0) return nullptr;
  auto usable = [&](const BackendPtr& b) {
    if (b->dead_until_ns.load(std::memory_order_relaxed) > now_ns) return false;
    for (int i = 0; i < ntried; ++i) {
      if (tried[i] == b.get()) return false;
    }
    return true;
  };
  uint32_t start = g.next.fetch_add(1, std::memory_order_relaxed);
  const BackendPtr* best = nullptr;
  for (size_t i = 0; i < n; ++i) {
    const BackendPtr& b = g.backends[(start + i) % n];
    if (!usable(b)) continue;
    if (g.balance == Balance::kRoundRobin) return &b;
    if (best == nullptr || b->active.load(std::memory_order_relaxed) <
                               (*best)->active.load(std::memory_order_relaxed)) {
      best = &b;
    }
  }
  return best;
}

template <typename Stream>
awaitable<typename Session<Stream>::Failure> Session<Stream>::Connect(const RouteGroup& g) {
  const Backend* tried[8];
  int ntried = 0;
  Failure last{503, "every backend of this route is marked down"};
  int attempts = std::min(opt_.max_attempts, 8);
  for (int i = 0; i < attempts; ++i) {
    int64_t now_ns = NowNs();
    const BackendPtr* pick = Pick(g, tried, ntried, now_ns);
    if (pick == nullptr) break;
    const BackendPtr& b = *pick;
    tried[ntried++] = b.get();
    if (i > 0) w_.Count(w_.retries);
    if (UpstreamPtr c = w_.TakeIdle(b)) {
      upstream_ = std::move(c);
      up = upstream_.get();
      w_.Count(w_.upstream_reused);
      co_return Failure{};
    }
    upstream_ = std::make_unique<UpstreamConn>(w_.io, b);
    up = upstream_.get();
    upstream_timed_out = false;
    SetPhase(Phase::kConnect, opt_.connect_timeout);
    error_code ec;
    asio::ip::address addr = asio::ip::make_address(b->ip, ec);
    if (!ec) co_await upstream_->sock.async_connect(tcp::endpoint(addr, b->port), Await(ec));
    w_.now = Clock::now();
    if (!ec) {
      upstream_->sock.set_option(tcp::no_delay(true), ec);
      w_.Count(w_.upstream_connects);
      co_return Failure{};
    }
    last = upstream_timed_out ? Failure{504, "timed out connecting to the backend"}
                              : Failure{502, "could not connect to the backend"};
    spdlog::debug("router: backend {} {}: {}", b->address, last.why, ec.message());
    b->dead_until_ns.store(
        now_ns +
            std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.dead_backend_time).count(),
        std::memory_order_relaxed);
    DropUpstream();
  }
  co_return last;
}

template <typename Stream>
awaitable<void> Session<Stream>::Linger() {
  // Half-close and drain briefly, so the client reads our error before any reset that
  // unread request bytes would cause.
  error_code ec;
  if constexpr (!kIsTls<Stream>) stream_.shutdown(tcp::socket::shutdown_send, ec);
  SetPhase(Phase::kLinger, std::chrono::milliseconds(1000));
  for (int i = 0; i < 16; ++i) {
    len_ = 0;
    if (!co_await ReadClient()) break;
  }
}

template <typename Stream>
awaitable<void> Session<Stream>::Tunnel() {
  SetPhase(Phase::kTunnel, opt_.tunnel_idle_timeout);
  // Upstream → client on a second coroutine; client → upstream here. When either side ends,
  // both sockets close, which ends the other direction.
  bool other_done = false;
  asio::steady_timer done(w_.io, Clock::time_point::max());
  auto ex = co_await asio::this_coro::executor;
  UpstreamConn* u = upstream_.get();
  asio::co_spawn(
      ex,
      [this, u, &other_done, &done]() -> awaitable<void> {
        while (true) {
          error_code ec;
          size_t n = co_await u->sock.async_read_some(asio::buffer(u->buf.get(), kUpstreamBuffer),
                                                      Await(ec));
          if (ec || n == 0) break;
          deadline = Clock::now() + opt_.tunnel_idle_timeout;
          co_await asio::async_write(stream_, asio::buffer(u->buf.get(), n), Await(ec));
          if (ec) break;
        }
        CloseClient();
        error_code ec;
        u->sock.close(ec);
        other_done = true;
        done.cancel();
      },
      asio::detached);
  while (true) {
    error_code ec;
    size_t n = co_await stream_.async_read_some(asio::buffer(buf_.get(), cap_), Await(ec));
    if (ec || n == 0) break;
    deadline = Clock::now() + opt_.tunnel_idle_timeout;
    co_await asio::async_write(u->sock, asio::buffer(buf_.get(), n), Await(ec));
    if (ec) break;
  }
  CloseClient();
  error_code ec;
  u->sock.close(ec);
  if (!other_done) co_await done.async_wait(Await(ec));
}

template <typename Stream>
awaitable<bool> Session<Stream>::Handle() {
  auto start = w_.now;
  w_.Count(w_.requests);
  upstream_timed_out = false;
  body_left_ = req_.content_length;
  chunks_.Reset();
  const bool logging = w_.proxy.access_log != nullptr;
  if (logging) {
    log_method_.assign(req_.method);
    log_target_.assign(req_.target);
    log_host_.assign(req_.authority);
  }
  const bool has_body = req_.body != http::BodyKind::kNone;
  // Without reading the body, the connection cannot carry another request.
  const bool can_keep = req_.keep_alive && !has_body && !w_.stopping;

  char host[256];
  size_t host_len = NormalizeHost(req_.authority, host);
  RouteTablePtr table = w_.routes.CurrentPtr();
  const RouteGroup* g = table->Match(std::string_view(host, host_len), req_.path);
  if (g == nullptr || g->backends.empty()) {
    w_.Count(w_.not_found);
    Log(404, 0, start);
    Consume(req_.head_size);
    co_return co_await SendError(404, "no route for this host", can_keep);
  }

  Failure f = co_await Connect(*g);
  if (f.status != 0) {
    Log(f.status, 0, start);
    Consume(req_.head_size);
    co_return co_await SendError(f.status, f.why, can_keep);
  }
  Backend& backend = *upstream_->backend;
  backend.active.fetch_add(1, std::memory_order_relaxed);
  struct ActiveGuard {
    Backend& b;
    ~ActiveGuard() { b.active.fetch_sub(1, std::memory_order_relaxed); }
  } active_guard{backend};

  if (req_.expect_continue) {
    static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!co_await WriteClient(asio::buffer(k100.data(), k100.size()))) co_return false;
  }
  const bool head_method = req_.method == "HEAD";
  const int minor = req_.minor_version;
  const bool client_keep_alive = req_.keep_alive;
  const bool upgrade = req_.upgrade;
  const http::BodyKind req_body = req_.body;
  BuildUpstreamHead();
  Consume(req_.head_size);  // req_'s views are dead from here on

  int64_t first = BodyBytesInBuffer();
  if (first < 0) {
    DropUpstream();
    co_return co_await SendError(400, chunks_.error(), false);
  }
  if (req_body == http::BodyKind::kContentLength) body_left_ -= static_cast<uint64_t>(first);
  bool body_done = req_body == http::BodyKind::kNone ||
                   (req_body == http::BodyKind::kContentLength && body_left_ == 0) ||
                   (req_body == http::BodyKind::kChunked && chunks_.done());
  // The request can be sent again on a fresh connection if a pooled one turns out stale, as
  // long as all of it is still in hand.
  std::string replay;
  bool sent_ok = false;
  for (int round = 0; round < 2; ++round) {
    std::array<asio::const_buffer, 2> b{asio::buffer(out_),
                                        asio::buffer(buf_.get(), static_cast<size_t>(first))};
    sent_ok = co_await WriteUpstream(b);
    if (body_done) {
      if (sent_ok) {
        // Read the response head now, to learn whether a pooled connection was stale.
        http::HeadScanner sc;
        bool got = true;
        while (true) {
          auto r =
              sc.Scan(std::string_view(upstream_->buf.get(), upstream_->len), opt_.limits, false);
          if (r != http::ParseResult::kIncomplete) break;
          if (upstream_->len == kUpstreamBuffer || !(got = co_await ReadUpstream(true))) break;
        }
        if (got || upstream_->len > 0) break;
      }
      bool stale = upstream_->reused && upstream_->len == 0 && !upstream_timed_out;
      if (round == 0 && stale) {
        // The backend had closed the pooled connection: connect afresh, same backend.
        BackendPtr same = upstream_->backend;
        DropUpstream();
        w_.Count(w_.retries);
        upstream_ = std::make_unique<UpstreamConn>(w_.io, same);
        up = upstream_.get();
        SetPhase(Phase::kConnect, opt_.connect_timeout);
        error_code ec;
        asio::ip::address addr = asio::ip::make_address(same->ip, ec);
        if (!ec) {
          co_await upstream_->sock.async_connect(tcp::endpoint(addr, same->port), Await(ec));
        }
        if (ec) break;
        upstream_->sock.set_option(tcp::no_delay(true), ec);
        w_.Count(w_.upstream_connects);
        continue;
      }
    }
    break;
  }
  if (!sent_ok) {
    bool timed_out = upstream_timed_out;
    DropUpstream();
    Log(timed_out ? 504 : 502, 0, start);
    co_return co_await SendError(timed_out ? 504 : 502,
                                 timed_out ? "the backend timed out" : "the backend went away",
                                 false);
  }
  Consume(static_cast<size_t>(first));

  // The rest of the request body, as it comes.
  while (!body_done) {
    SetPhase(Phase::kClientBody, opt_.client_timeout);
    if (!co_await ReadClient()) {
      DropUpstream();
      co_return false;
    }
    int64_t n = BodyBytesInBuffer();
    if (n < 0) {
      DropUpstream();
      co_return co_await SendError(400, chunks_.error(), false);
    }
    if (req_body == http::BodyKind::kContentLength) {
      body_left_ -= static_cast<uint64_t>(n);
      body_done = body_left_ == 0;
    } else {
      body_done = chunks_.done();
    }
    if (!co_await WriteUpstream(asio::buffer(buf_.get(), static_cast<size_t>(n)))) {
      bool timed_out = upstream_timed_out;
      DropUpstream();
      co_return co_await SendError(timed_out ? 504 : 502,
                                   timed_out ? "the backend timed out" : "the backend went away",
                                   false);
    }
    Consume(static_cast<size_t>(n));
  }

  // The response head (skipping interim 1xx responses, passed on to HTTP/1.1 clients).
  while (true) {
    http::HeadScanner sc;
    http::ParseResult r;
    while ((r = sc.Scan(std::string_view(upstream_->buf.get(), upstream_->len), opt_.limits,
                        false)) == http::ParseResult::kIncomplete) {
      if (upstream_->len == kUpstreamBuffer || !co_await ReadUpstream(true)) {
        r = http::ParseResult::kError;
        break;
      }
    }
    if (r == http::ParseResult::kDone &&
        http::ParseResponseHead(std::string_view(upstream_->buf.get(), sc.head_end()), opt_.limits,
                                head_method, &resp_) != http::ParseResult::kDone) {
      r = http::ParseResult::kError;
    }
    if (r != http::ParseResult::kDone) {
      bool timed_out = upstream_timed_out;
      bool nothing = upstream_->len == 0;
      DropUpstream();
      int status = timed_out ? 504 : 502;
      Log(status, 0, start);
      co_return co_await SendError(
          status,
          timed_out ? "the backend did not answer in time"
                    : (nothing ? "the backend closed the connection without answering"
                               : "the backend sent a malformed response"),
          false);
    }
    if (resp_.status >= 200 || resp_.status == 101) break;
    // 1xx: forward to HTTP/1.1 clients (not our own 100 Continue twice), then read on.
    bool forward = minor == 1 && !(resp_.status == 100 && req_.expect_continue);
    if (forward) {
      BuildClientHead(true, false);
      if (!co_await WriteClient(asio::buffer(out_))) co_return false;
    }
    upstream_->Consume(resp_.head_size);
  }

  if (resp_.status == 101) {
    if (!upgrade || !resp_.upgrade) {
      DropUpstream();
      co_return co_await SendError(502, "the backend switched protocols unasked", false);
    }
    BuildClientHead(false, false);
    upstream_->Consume(resp_.head_size);
    std::array<asio::const_buffer, 2> b{asio::buffer(out_),
                                        asio::buffer(upstream_->buf.get(), upstream_->len)};
    Log(101, 0, start);
    if (!co_await WriteClient(b)) co_return false;
    upstream_->len = 0;
    if (len_ > 0 && !co_await WriteUpstream(asio::buffer(buf_.get(), len_))) co_return false;
    len_ = 0;
    co_await Tunnel();
    co_return false;
  }

  const bool decode = minor == 0 && resp_.body == http::BodyKind::kChunked;
  const bool keep =
      client_keep_alive && !w_.stopping && resp_.body != http::BodyKind::kUntilClose && !decode;
  const int status = resp_.status;
  const http::BodyKind resp_body = resp_.body;
  uint64_t left = resp_.content_length;
  bool upstream_reusable = resp_.keep_alive;
  BuildClientHead(keep, decode);
  upstream_->Consume(resp_.head_size);
  chunks_.Reset();
  uint64_t sent = 0;
  bool first_write = true;
  bool done = resp_body == http::BodyKind::kNone;
  bool ok = true;
  while (true) {
    // Forward what is buffered (the head too, the first time).
    size_t n = 0;           // bytes of upstream_->buf that belong to the body
    std::string_view data;  // what to send of them
    if (resp_body == http::BodyKind::kContentLength) {
      n = static_cast<size_t>(std::min<uint64_t>(upstream_->len, left));
      left -= n;
      done = left == 0;
      data = std::string_view(upstream_->buf.get(), n);
    } else if (resp_body == http::BodyKind::kChunked) {
      if (decode) {
        n = chunks_.Feed(std::string_view(upstream_->buf.get(), upstream_->len), opt_.limits,
                         &data);
      } else {
        std::string_view ignored;
        while (n < upstream_->len && !chunks_.done() && !chunks_.failed()) {
          n += chunks_.Feed(std::string_view(upstream_->buf.get() + n, upstream_->len - n),
                            opt_.limits, &ignored);
        }
        data = std::string_view(upstream_->buf.get(), n);
      }
      if (chunks_.failed()) {
        ok = false;
        break;
      }
      done = chunks_.done();
    } else if (resp_body == http::BodyKind::kUntilClose) {
      n = upstream_->len;
      data = std::string_view(upstream_->buf.get(), n);
    }
    if (first_write || !data.empty()) {
      std::array<asio::const_buffer, 2> b{first_write ? asio::buffer(out_) : asio::const_buffer(),
                                          asio::buffer(data.data(), data.size())};
      if (!co_await WriteClient(b)) {
        DropUpstream();
        co_return false;
      }
      first_write = false;
      sent += data.size();
    }
    upstream_->Consume(n);
    if (done) break;
    if (n > 0 && upstream_->len > 0) continue;  // decoding: more spans already buffered
    if (!co_await ReadUpstream()) {
      if (resp_body == http::BodyKind::kUntilClose && !upstream_timed_out) {
        upstream_reusable = false;
        break;
      }
      ok = false;
      break;
    }
  }
  Log(status, sent, start);
  if (!ok) {
    // The response has begun: all we can do is cut the connection.
    DropUpstream();
    co_return false;
  }
  if (upstream_reusable && upstream_->len == 0 && !w_.stopping) {
    up = nullptr;
    w_.GiveBack(std::move(upstream_));
  } else {
    DropUpstream();
  }
  co_return keep;
}

template <typename Stream>
awaitable<void> Session<Stream>::Run() {
  error_code ec;
  auto& sock = stream_.lowest_layer();
  sock.set_option(tcp::no_delay(true), ec);
  auto remote = sock.remote_endpoint(ec);
  peer_ = ec ? "unknown" : remote.address().to_string();
  if constexpr (kIsTls<Stream>) {
    SetPhase(Phase::kHead, opt_.header_timeout);
    co_await stream_.async_handshake(asio::ssl::stream_base::server, Await(ec));
    if (ec) co_return;
  }
  while (true) {
    scanner_.Reset();
    if (len_ == 0) {
      if (w_.stopping) break;
      SetPhase(Phase::kIdle, opt_.idle_timeout);
      if (!co_await ReadClient(true)) break;
    }
    SetPhase(Phase::kHead, opt_.header_timeout);
    http::ParseResult r;
    while ((r = scanner_.Scan(std::string_view(buf_.get(), len_), opt_.limits, true)) ==
           http::ParseResult::kIncomplete) {
      if (len_ == cap_) {  // limits larger than the buffer
        r = http::ParseResult::kError;
        break;
      }
      if (!co_await ReadClient()) co_return;
    }
    if (r == http::ParseResult::kDone &&
        http::ParseRequestHead(std::string_view(buf_.get(), scanner_.head_end()), opt_.limits,
                               &req_) != http::ParseResult::kDone) {
      w_.Count(w_.rejected);
      co_await SendError(req_.error_status, req_.error, false);
      co_await Linger();
      break;
    }
    if (r != http::ParseResult::kDone) {
      w_.Count(w_.rejected);
      int st = scanner_.error_status() != 0 ? scanner_.error_status() : 431;
      co_await SendError(st, scanner_.error_status() != 0 ? scanner_.error() : "head too large",
                         false);
      co_await Linger();
      break;
    }
    if (!co_await Handle()) {
      // Request bytes we did not read (a body after an error, a pipelined request) would make
      // close() send a reset that can destroy the response on its way: close gently.
      if constexpr (!kIsTls<Stream>) {
        if (phase != Phase::kTunnel) co_await Linger();
      }
      break;
    }
  }
  error_code ignored;
  if constexpr (!kIsTls<Stream>) {
    stream_.shutdown(tcp::socket::shutdown_both, ignored);
  }
  CloseClient();
}

}  // namespace

template <typename Stream>
awaitable<void> HttpProxy::Impl::Worker::Serve(tcp::socket sock) {
  Count(connections);
  std::unique_ptr<Session<Stream>> s;
  if constexpr (kIsTls<Stream>) {
    s = std::make_unique<Session<Stream>>(*this, std::move(sock), *proxy.ssl_ctx);
  } else {
    s = std::make_unique<Session<Stream>>(*this, std::move(sock));
  }
  co_await s->Run();
}

awaitable<void> HttpProxy::Impl::Worker::Accept() {
  asio::steady_timer backoff(io);
  while (true) {
    tcp::socket sock(io);
    error_code ec;
    co_await acceptor.async_accept(sock, Await(ec));
    if (stopping || !acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors, most likely: wait a little rather than spin.
      spdlog::warn("router: accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(Await(ec));
      continue;
    }
    now = Clock::now();
    auto on_done = [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("router: connection ended by an exception: {}", ex.what());
      }
    };
    if (proxy.ssl_ctx) {
      asio::co_spawn(io, Serve<asio::ssl::stream<tcp::socket>>(std::move(sock)), on_done);
    } else {
      asio::co_spawn(io, Serve<tcp::socket>(std::move(sock)), on_done);
    }
  }
}

Status HttpProxy::Impl::Listen(Worker& w, const tcp::endpoint& ep) {
  error_code ec;
  w.acceptor.open(ep.protocol(), ec);
  if (!ec) w.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) {
    int one = 1;
    if (::setsockopt(w.acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) !=
        0) {
      ec = error_code(errno, boost::system::system_category());
    }
  }
  if (!ec) w.acceptor.bind(ep, ec);
  if (!ec) w.acceptor.listen(4096, ec);
  if (ec) {
    return Unavailable("router: cannot listen on " + ep.address().to_string() + ":" +
                       std::to_string(ep.port()) + ": " + ec.message());
  }
  return Status::Ok();
}

HttpProxy::HttpProxy(ProxyOptions options, const RouteTableHolder& routes)
    : impl_(std::make_unique<Impl>(std::move(options), routes)) {}

HttpProxy::~HttpProxy() {
  Stop();
  if (impl_->owns_log && impl_->access_log != nullptr) std::fclose(impl_->access_log);
}

Status HttpProxy::Start() {
  Impl& im = *impl_;
  ProxyOptions& o = im.options;
  if (o.limits.max_head_bytes < 256 || o.limits.max_head_bytes > (1 << 20)) {
    return InvalidArgument("router: the head size limit must be between 256 B and 1 MiB");
  }
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  auto shortest = std::min(
      {o.header_timeout, o.idle_timeout, o.client_timeout, o.connect_timeout, o.backend_timeout});
  im.tick = std::clamp(shortest / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(250));
  if (o.tls) {
    auto ctx = o.tls->MakeServerContext();
    if (!ctx.ok()) return ctx.status();
    im.ssl_ctx = *ctx;
  }
  if (o.access_log == "-") {
    im.access_log = stdout;
  } else if (!o.access_log.empty()) {
    im.access_log = std::fopen(o.access_log.c_str(), "a");
    if (im.access_log == nullptr) {
      return Unavailable("router: cannot open access log " + o.access_log + ": " +
                         std::strerror(errno));
    }
    im.owns_log = true;
    std::setvbuf(im.access_log, nullptr, _IOLBF, 1 << 16);
  }
  error_code ec;
  auto addr = asio::ip::make_address(o.address, ec);
  if (ec) return InvalidArgument("router: bad listen address " + o.address);
  uint16_t port = o.port;
  if (port != 0) {
    // SO_REUSEPORT would let us share a port another router already listens on (and split its
    // traffic): make sure the port is free first.
    tcp::acceptor probe(im.probe_io);
    tcp::endpoint ep(addr, port);
    probe.open(ep.protocol(), ec);
    if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) probe.bind(ep, ec);
    if (ec) {
      return Unavailable("router: cannot listen on " + o.address + ":" + std::to_string(port) +
                         ": " + ec.message());
    }
  }
  for (int i = 0; i < threads; ++i) {
    auto w = std::make_unique<Impl::Worker>(im);
    BERTH_RETURN_IF_ERROR(im.Listen(*w, tcp::endpoint(addr, port)));
    if (port == 0) port = w->acceptor.local_endpoint(ec).port();
    im.workers.push_back(std::move(w));
  }
  im.bound_port = port;
  im.running = threads;
  im.started = true;
  for (auto& wp : im.workers) {
    Impl::Worker* w = wp.get();
    asio::co_spawn(w->io, w->Accept(), asio::detached);
    w->ArmSweep();
    w->thread = std::thread([w, &im] {
      while (true) {
        try {
          w->io.run();
          break;
        } catch (const std::exception& e) {
          spdlog::error("router: worker: {}", e.what());
        }
      }
      std::lock_guard lock(im.mu);
      --im.running;
      im.cv.notify_all();
    });
  }
  return Status::Ok();
}

uint16_t HttpProxy::port() const {
  return impl_->bound_port;
}

void HttpProxy::Stop() {
  Impl& im = *impl_;
  if (!im.started || im.stopped) return;
  im.stopped = true;
  for (auto& w : im.workers) {
    Impl::Worker* wp = w.get();
    asio::post(wp->io, [wp] { wp->BeginStop(); });
  }
  {
    std::unique_lock lock(im.mu);
    if (!im.cv.wait_for(lock, im.options.drain_timeout, [&] { return im.running == 0; })) {
      lock.unlock();
      spdlog::warn("router: closing connections still open after {} ms",
                   im.options.drain_timeout.count());
      for (auto& w : im.workers) {
        Impl::Worker* wp = w.get();
        asio::post(wp->io, [wp] { wp->Force(); });
      }
    }
  }
  for (auto& w : im.workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  if (im.access_log != nullptr) std::fflush(im.access_log);
}

ProxyStats HttpProxy::stats() const {
  ProxyStats s;
  for (const auto& w : impl_->workers) {
    s.connections += w->connections.load(std::memory_order_relaxed);
    s.requests += w->requests.load(std::memory_order_relaxed);
    s.rejected += w->rejected.load(std::memory_order_relaxed);
    s.upstream_connects += w->upstream_connects.load(std::memory_order_relaxed);
    s.upstream_reused += w->upstream_reused.load(std::memory_order_relaxed);
    s.retries += w->retries.load(std::memory_order_relaxed);
    s.errors_5xx += w->errors_5xx.load(std::memory_order_relaxed);
    s.not_found += w->not_found.load(std::memory_order_relaxed);
  }
  return s;
}

}  // namespace berth::router
