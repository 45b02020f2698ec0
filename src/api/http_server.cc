#include "api/http_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <type_traits>

namespace berth::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

std::string HttpRequest::Header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

std::string HttpRequest::Query(const std::string& name, std::string fallback) const {
  auto it = query.find(name);
  return it == query.end() ? std::move(fallback) : it->second;
}

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kUnauthenticated:
      return 401;
    case Code::kPermissionDenied:
      return 403;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition:
      return 409;
    case Code::kCompacted:
      return 410;
    case Code::kTooLarge:
      return 413;
    case Code::kUnavailable:
      return 503;
    case Code::kDeadlineExceeded:
      return 504;
    case Code::kCancelled:
    case Code::kInternal:
      return 500;
  }
  return 500;
}

HttpResponse ErrorResponse(const Status& status) {
  HttpResponse r;
  r.status = HttpStatusFor(status.code());
  r.body =
      nlohmann::json{{"error", status.message()}, {"code", std::string(CodeName(status.code()))}}
          .dump();
  return r;
}

HttpResponse ErrorResponse(int http_status, std::string_view message) {
  HttpResponse r;
  r.status = http_status;
  r.body = nlohmann::json{{"error", std::string(message)}}.dump();
  return r;
}

std::string PercentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && in[i] == '+' ? ' ' : in[i]);
  }
  return out;
}

namespace {

struct RouteEntry {
  std::string method;
  std::string pattern;
  std::vector<std::string> segments;
  acl::Permission permission;
  HttpServer::Handler handler;
  HttpServer::StreamHandler stream_handler;
  std::string stream_content_type;
};

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool MatchRoute(const RouteEntry& r, const std::vector<std::string>& segs,
                std::map<std::string, std::string>& params) {
  // A last pattern segment "*name" captures one or more remaining segments, joined by '/'.
  bool rest = !r.segments.empty() && !r.segments.back().empty() && r.segments.back()[0] == '*';
  if (rest ? segs.size() < r.segments.size() : r.segments.size() != segs.size()) return false;
  std::map<std::string, std::string> p;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& pat = r.segments[std::min(i, r.segments.size() - 1)];
    if (rest && i + 1 >= r.segments.size()) {
      std::string& v = p[pat.substr(1)];
      if (!v.empty()) v.push_back('/');
      v += segs[i];
    } else if (!pat.empty() && pat[0] == ':') {
      p[pat.substr(1)] = segs[i];
    } else if (pat != segs[i]) {
      return false;
    }
  }
  params = std::move(p);
  return true;
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(Options o) : opts(std::move(o)), handler_pool(opts.handler_threads) {}

  Options opts;
  std::vector<RouteEntry> routes;
  HttpServer::Authorizer authorizer;
  std::optional<ssl::context> ssl_ctx;  // set when serving HTTPS
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  net::thread_pool handler_pool;
  std::vector<std::thread> io_threads;
  std::atomic<bool> stopping{false};
  uint16_t bound_port = 0;

  std::mutex streams_mu;  // guards the fields below
  std::condition_variable streams_cv;
  int active_streams = 0;
  std::set<int> stream_fds;

  void Accept();
  // Runs the authorizer for a route that needs a permission: the response to send instead,
  // or nullopt to run the handler. Handler threads only (it may read the store).
  std::optional<HttpResponse> Authorize(const RouteEntry& route, HttpRequest& req) const {
    if (route.permission.need == acl::Need::kNone) {
      req.caller.anonymous = true;
      return std::nullopt;
    }
    return authorizer(req, route.permission);
  }
  // Finds the route; sets `allowed` if the path exists under another method.
  const RouteEntry* Find(const std::string& method, const std::vector<std::string>& segs,
                         std::map<std::string, std::string>& params, bool& path_exists) const {
    path_exists = false;
    for (const auto& r : routes) {
      std::map<std::string, std::string> p;
      if (MatchRoute(r, segs, p)) {
        path_exists = true;
        if (r.method == method) {
          params = std::move(p);
          return &r;
        }
      }
    }
    return nullptr;
  }
};

namespace {

// One connection. `Stream` is beast::tcp_stream (HTTP) or beast::ssl_stream<beast::tcp_stream>
// (HTTPS); everything else is the same.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

 public:
  template <class... Args>
  Session(HttpServer::Impl* server, tcp::socket&& socket, Args&... ssl_ctx)
      : stream_(std::move(socket), ssl_ctx...), server_(server) {
    beast::error_code ec;
    auto ep = Socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void Start() {
    if constexpr (kTls) {
      // The handshake, like a request, must complete within read_timeout.
      Lowest().expires_after(server_->opts.read_timeout);
      stream_.async_handshake(
          ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
            if (ec) {
              spdlog::debug("api: TLS handshake with {} failed: {}", self->remote_, ec.message());
              return self->Close();
            }
            self->DoRead();
          });
    } else {
      net::dispatch(stream_.get_executor(),
                    beast::bind_front_handler(&Session::DoRead, shared_from_this()));
    }
  }

 private:
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }
  tcp::socket& Socket() { return beast::get_lowest_layer(stream_).socket(); }

  void DoRead() {
    if (server_->stopping) return Close();
    parser_.emplace();
    parser_->body_limit(server_->opts.max_body_bytes);
    parser_->header_limit(server_->opts.max_header_bytes);
    // A new connection or an idle keep-alive one waits at most idle_timeout for a request; a
    // request must then arrive whole within read_timeout (guards against slowloris).
    Lowest().expires_after(first_request_ ? server_->opts.read_timeout
                                          : server_->opts.idle_timeout);
    first_request_ = false;
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t /*bytes*/) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset ||
        ec == net::error::eof || ec == ssl::error::stream_truncated) {
      return Close();
    }
    if (ec == http::error::body_limit) {
      return SendAndClose(ErrorResponse(
          413,
          "request body larger than " + std::to_string(server_->opts.max_body_bytes) + " bytes"));
    }
    if (ec == http::error::header_limit) {
      return SendAndClose(ErrorResponse(431, "request headers too large"));
    }
    if (ec) {
      return SendAndClose(ErrorResponse(400, "malformed HTTP request: " + ec.message()));
    }

    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    std::string_view target(msg.target().data(), msg.target().size());
    auto q = target.find('?');
    req.path = PercentDecode(target.substr(0, q));
    if (q != std::string_view::npos) ParseQuery(target.substr(q + 1), req.query);
    for (const auto& field : msg) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    req.body = std::move(msg.body());
    req.remote = remote_;

    bool path_exists = false;
    const RouteEntry* route =
        server_->Find(req.method, SplitPath(req.path), req.params, path_exists);
    if (route == nullptr) {
      if (path_exists) {
        return Send(ErrorResponse(405, "method " + req.method + " not allowed on " + req.path));
      }
      return Send(ErrorResponse(404, "no such API route: " + req.method + " " + req.path));
    }
    Lowest().expires_never();
    if (route->stream_handler) return StartStream(*route, std::move(req));

    auto self = shared_from_this();
    net::post(server_->handler_pool, [self, route, req = std::move(req)]() mutable {
      HttpResponse res;
      try {
        if (auto refused = self->server_->Authorize(*route, req)) {
          res = std::move(*refused);
        } else {
          res = route->handler(req);
        }
      } catch (const std::exception& e) {
        spdlog::error("api: handler for {} {} threw: {}", req.method, req.path, e.what());
        res = ErrorResponse(Internal(std::string("handler failed: ") + e.what()));
      }
      net::post(self->stream_.get_executor(),
                [self, res = std::move(res)]() mutable { self->Send(std::move(res)); });
    });
  }

  static void ParseQuery(std::string_view qs, std::map<std::string, std::string>& out) {
    while (!qs.empty()) {
      auto amp = qs.find('&');
      std::string_view pair = qs.substr(0, amp);
      auto eq = pair.find('=');
      std::string key = PercentDecode(pair.substr(0, eq), true);
      std::string val =
          eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
      if (!key.empty()) out[key] = std::move(val);
      if (amp == std::string_view::npos) break;
      qs.remove_prefix(amp + 1);
    }
  }

  http::response<http::string_body> Build(HttpResponse&& r) {
    http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
    res.set(http::field::server, "berth");
    res.set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res.set(k, v);
    res.body() = std::move(r.body);
    if (!res.body().empty() && res.body().back() != '\n' && r.content_type == "application/json") {
      res.body().push_back('\n');
    }
    res.keep_alive(keep_alive_ && !server_->stopping);
    res.prepare_payload();
    return res;
  }

  void Send(HttpResponse&& r) {
    auto res = std::make_shared<http::response<http::string_body>>(Build(std::move(r)));
    Lowest().expires_after(server_->opts.read_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) return self->Close();
                        self->DoRead();
                      });
  }

  void SendAndClose(HttpResponse&& r) {
    keep_alive_ = false;
    Send(std::move(r));
  }

  void Close() {
    beast::error_code ec;
    Socket().shutdown(tcp::socket::shutdown_send, ec);
    Lowest().close();
  }

  // Writes synchronously on the stream's own thread. The 200 head goes out with the first
  // Write (or at Finish), so until then the handler may Respond() with something else.
  class Sink final : public ChunkSink {
   public:
    Sink(Session& session, const RouteEntry& route, const HttpRequest& req)
        : session_(session),
          content_type_(route.stream_content_type),
          route_(route),
          req_(req),
          next_check_(std::chrono::steady_clock::now() +
                      session.server_->opts.stream_reauthorize_interval) {}
    bool Write(std::string_view chunk) override {
      if (responded_ || Closed()) return false;
      if (!head_sent_) SendHead();
      if (chunk.empty() || failed_) return !Closed();
      beast::error_code ec;
      net::write(Out(), http::make_chunk(net::const_buffer(chunk.data(), chunk.size())), ec);
      if (ec) failed_ = true;
      return !Closed();
    }
    bool Closed() const override {
      return failed_ || session_.server_->stopping || PeerGone() || NoLongerAllowed();
    }
    bool Respond(HttpResponse response) override {
      if (head_sent_ || responded_) return false;
      responded_ = true;
      session_.keep_alive_ = false;
      auto res = session_.Build(std::move(response));
      beast::error_code ec;
      http::write(Out(), res, ec);
      if (ec) failed_ = true;
      return !failed_;
    }
    void Finish() {
      if (responded_ || failed_) return;
      if (!head_sent_) SendHead();
      if (failed_) return;
      beast::error_code ec;
      net::write(Out(), http::make_chunk_last(), ec);
    }

   private:
    // Synchronous writes go through the session's stream (TLS encrypts them); its lowest
    // layer's timeouts do not apply to synchronous operations.
    Stream& Out() { return session_.stream_; }
    void SendHead() {
      head_sent_ = true;
      http::response<http::empty_body> head{http::status::ok, 11};
      head.set(http::field::server, "berth");
      head.set(http::field::content_type, content_type_);
      head.set(http::field::cache_control, "no-cache");
      head.chunked(true);
      head.keep_alive(false);
      http::response_serializer<http::empty_body> sr{head};
      beast::error_code ec;
      http::write_header(Out(), sr, ec);
      if (ec) failed_ = true;
    }
    // A client that hung up shows as a hang-up on the socket even while we have nothing to
    // write (a quiet `logs --follow`), so its stream thread does not linger until the next write.
    bool PeerGone() const {
      pollfd p{};
      p.fd = session_.Socket().native_handle();
      p.events = POLLRDHUP;
      return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
    }

    // A stream lives long: its request is authorized again every stream_reauthorize_interval,
    // so that a revoked token's stream ends too (there is no status left to answer with).
    bool NoLongerAllowed() const {
      if (refused_) return true;
      if (route_.permission.need == acl::Need::kNone) return false;
      auto now = std::chrono::steady_clock::now();
      if (now < next_check_) return false;
      next_check_ = now + session_.server_->opts.stream_reauthorize_interval;
      HttpRequest again = req_;
      if (session_.server_->Authorize(route_, again)) {
        spdlog::info("api: ending stream {} {} from {}: its token no longer allows it", req_.method,
                     req_.path, req_.remote);
        refused_ = true;
      }
      return refused_;
    }

    Session& session_;
    const std::string& content_type_;
    const RouteEntry& route_;
    const HttpRequest& req_;
    mutable std::chrono::steady_clock::time_point next_check_;
    mutable bool refused_ = false;
    bool head_sent_ = false;
    bool responded_ = false;
    bool failed_ = false;
  };

  void StartStream(const RouteEntry& route, HttpRequest&& req) {
    auto& srv = *server_;
    int fd = Socket().native_handle();
    {
      std::lock_guard lock(srv.streams_mu);
      if (srv.active_streams >= srv.opts.max_streams || srv.stopping) {
        return SendAndClose(ErrorResponse(503, "too many open event streams"));
      }
      ++srv.active_streams;
      srv.stream_fds.insert(fd);
    }
    std::thread([self = shared_from_this(), &route, fd, req = std::move(req)]() mutable {
      self->RunStream(route, req);
      auto& s = *self->server_;
      // Drop this thread's hold on the session before Stop() can see the stream end: the
      // session's socket and timers belong to the io_context, which Stop() destroys next.
      self.reset();
      std::lock_guard lock(s.streams_mu);
      s.stream_fds.erase(fd);
      --s.active_streams;
      s.streams_cv.notify_all();
    }).detach();
  }

  // Runs on the stream's own thread; the session has no asynchronous operation pending, so
  // using its socket synchronously here is safe.
  void RunStream(const RouteEntry& route, HttpRequest& req) {
    Sink sink(*this, route, req);
    try {
      if (auto refused = server_->Authorize(route, req)) {
        sink.Respond(std::move(*refused));
      } else {
        route.stream_handler(req, sink);
      }
    } catch (const std::exception& e) {
      spdlog::error("api: stream handler for {} threw: {}", req.path, e.what());
      sink.Respond(ErrorResponse(Internal(std::string("handler failed: ") + e.what())));
    }
    sink.Finish();
    beast::error_code ec;
    auto& sock = Socket();
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpServer::Impl* server_;  // outlives every session (Stop drains them)
  std::string remote_;
  bool keep_alive_ = false;
  bool first_request_ = true;
};

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor->async_accept(
      net::make_strand(ioc), [self = this](beast::error_code ec, tcp::socket socket) {
        if (self->stopping || !self->acceptor->is_open()) return;
        if (!ec && self->ssl_ctx) {
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(self, std::move(socket),
                                                                          *self->ssl_ctx)
              ->Start();
        } else if (!ec) {
          std::make_shared<Session<beast::tcp_stream>>(self, std::move(socket))->Start();
        } else if (ec == net::error::no_descriptors) {
          spdlog::warn("api: accept: {}", ec.message());
        }
        self->Accept();
      });
}

HttpServer::HttpServer(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpServer::~HttpServer() {
  Stop();
}

void HttpServer::Route(std::string method, std::string pattern, acl::Permission permission,
                       Handler handler) {
  auto segments = SplitPath(pattern);
  impl_->routes.push_back({std::move(method),
                           std::move(pattern),
                           std::move(segments),
                           std::move(permission),
                           std::move(handler),
                           {},
                           {}});
}

void HttpServer::RouteStream(std::string method, std::string pattern, std::string content_type,
                             acl::Permission permission, StreamHandler handler) {
  auto segments = SplitPath(pattern);
  impl_->routes.push_back({std::move(method),
                           std::move(pattern),
                           std::move(segments),
                           std::move(permission),
                           {},
                           std::move(handler),
                           std::move(content_type)});
}

void HttpServer::SetAuthorizer(Authorizer authorizer) {
  impl_->authorizer = std::move(authorizer);
}

std::vector<HttpServer::RouteInfo> HttpServer::Routes() const {
  std::vector<RouteInfo> out;
  for (const auto& r : impl_->routes) {
    out.push_back({r.method, r.pattern, r.permission, static_cast<bool>(r.stream_handler)});
  }
  return out;
}

bool HttpServer::tls() const {
  return impl_->opts.tls.enabled();
}

namespace {

// The server's TLS context from PEM files; InvalidArgument naming the file that does not load.
Status LoadTls(const TlsFiles& files, std::optional<ssl::context>& out) {
  if (files.key_file.empty()) {
    return InvalidArgument("API TLS: a certificate (" + files.cert_file + ") needs its key file");
  }
  auto& ctx = out.emplace(ssl::context::tls_server);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  beast::error_code ec;
  if (ctx.use_certificate_chain_file(files.cert_file, ec); ec) {
    return InvalidArgument("API TLS certificate " + files.cert_file + ": " + ec.message());
  }
  if (ctx.use_private_key_file(files.key_file, ssl::context::pem, ec); ec) {
    return InvalidArgument("API TLS key " + files.key_file + ": " + ec.message());
  }
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    return InvalidArgument("API TLS key " + files.key_file + " does not match the certificate " +
                           files.cert_file);
  }
  if (!files.client_ca_file.empty()) {
    if (ctx.load_verify_file(files.client_ca_file, ec); ec) {
      return InvalidArgument("API client CA " + files.client_ca_file + ": " + ec.message());
    }
    // Tells clients which CAs their certificate must come from.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(ctx.native_handle(), names);
    }
    ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return Status::Ok();
}

}  // namespace

Status HttpServer::Start() {
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& r : impl_->routes) {
    if (!seen.emplace(r.method, r.pattern).second) {
      return Internal("HttpServer: route " + r.method + " " + r.pattern + " registered twice");
    }
    if (r.permission.need != acl::Need::kNone && !impl_->authorizer) {
      return Internal("HttpServer: route " + r.method + " " + r.pattern + " needs permission " +
                      r.permission.Describe() +
                      " but the server has no authorizer to check it (SetAuthorizer)");
    }
  }
  if (impl_->opts.tls.enabled()) {
    BERTH_RETURN_IF_ERROR(LoadTls(impl_->opts.tls, impl_->ssl_ctx));
  } else if (!impl_->opts.tls.key_file.empty() || !impl_->opts.tls.client_ca_file.empty()) {
    return InvalidArgument("API TLS: a key or client CA file needs a certificate file too");
  }
  beast::error_code ec;
  auto addr = net::ip::make_address(impl_->opts.address, ec);
  if (ec) return InvalidArgument("API address \"" + impl_->opts.address + "\": " + ec.message());
  tcp::endpoint ep{addr, impl_->opts.port};
  auto& acc = impl_->acceptor.emplace(impl_->ioc);
  std::string where = impl_->opts.address + ":" + std::to_string(impl_->opts.port);
  if (acc.open(ep.protocol(), ec); ec) return Unavailable("open " + where + ": " + ec.message());
  if (acc.set_option(net::socket_base::reuse_address(true), ec); ec) {
    return Unavailable("listen on " + where + ": " + ec.message());
  }
  if (acc.bind(ep, ec); ec) return Unavailable("bind " + where + ": " + ec.message());
  if (acc.listen(net::socket_base::max_listen_connections, ec); ec) {
    return Unavailable("listen on " + where + ": " + ec.message());
  }
  impl_->bound_port = acc.local_endpoint().port();
  impl_->Accept();
  for (int i = 0; i < std::max(1, impl_->opts.io_threads); ++i) {
    impl_->io_threads.emplace_back([impl = impl_.get()] { impl->ioc.run(); });
  }
  return Status::Ok();
}

uint16_t HttpServer::port() const {
  return impl_->bound_port;
}

void HttpServer::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  if (impl_->acceptor) {
    net::post(impl_->ioc, [impl = impl_.get()] {
      beast::error_code ec;
      impl->acceptor->close(ec);
    });
  }
  {
    // Wake stream threads blocked in a write to a client that stopped reading.
    std::unique_lock lock(impl_->streams_mu);
    for (int fd : impl_->stream_fds) ::shutdown(fd, SHUT_RDWR);
    impl_->streams_cv.wait_for(lock, std::chrono::seconds(10),
                               [&] { return impl_->active_streams == 0; });
  }
  impl_->handler_pool.join();
  // Give in-flight responses a moment to be written, then stop the loop.
  auto work_done = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (std::chrono::steady_clock::now() < work_done && !impl_->ioc.stopped()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl_->ioc.stop();
  for (auto& t : impl_->io_threads) t.join();
  impl_->io_threads.clear();
}

}  // namespace berth::api
