#include "cli/api_client.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>

#include "common/version.h"

namespace berth::cli {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct ApiClient::Tls {
  ssl::context ctx{ssl::context::tls_client};
};

namespace {

constexpr std::string_view kHttp = "http://";
constexpr std::string_view kHttps = "https://";

Status TransportError(const std::string& address, const beast::error_code& ec) {
  std::string what = ec.message();
  if (ec.category() == net::error::get_ssl_category()) {
    // OpenSSL's reason, e.g. "certificate verify failed": say where to look.
    what = "TLS: " + what +
           " (check --cacert/BERTH_CACERT, and the client certificate if the "
           "agent requires one)";
  }
  return Unavailable("cannot reach the berth agent at " + address + ": " + what +
                     " (is `berth agent` running? set --addr or BERTH_ADDR)");
}

}  // namespace

ApiClient::ApiClient(std::string address, std::chrono::milliseconds timeout)
    : ApiClient(ApiClientOptions{.address = std::move(address), .timeout = timeout}) {}

ApiClient::ApiClient(ApiClientOptions options) : opts_(std::move(options)) {
  std::string address = opts_.address;
  while (!address.empty() && address.back() == '/') address.pop_back();
  address_ = address;
  if (address.rfind(kHttps, 0) == 0) {
    tls_ = true;
    address = address.substr(kHttps.size());
  } else if (address.rfind(kHttp, 0) == 0) {
    address = address.substr(kHttp.size());
  }
  auto colon = address.rfind(':');
  if (colon == std::string::npos || address.find(']', colon) != std::string::npos) {
    host_ = address;
    port_ = "4680";
  } else {
    host_ = address.substr(0, colon);
    port_ = address.substr(colon + 1);
  }
  if (host_.size() > 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
  init_ = Init();
}

ApiClient::~ApiClient() = default;

Status ApiClient::Init() {
  if (!opts_.client_cert_file.empty() != !opts_.client_key_file.empty()) {
    return InvalidArgument(
        "a client certificate needs its key and a key its certificate (BERTH_CLIENT_CERT and "
        "BERTH_CLIENT_KEY)");
  }
  if (!tls_) {
    if (!opts_.client_cert_file.empty()) {
      return InvalidArgument(
          "a client certificate is only sent over TLS: use an https:// "
          "address (" +
          address_ + ")");
    }
    return Status::Ok();
  }
  tls_ctx_ = std::make_unique<Tls>();
  auto& ctx = tls_ctx_->ctx;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  if (opts_.ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(opts_.ca_file, ec);
  }
  if (ec) {
    return InvalidArgument("CA file " + (opts_.ca_file.empty() ? "(system)" : opts_.ca_file) +
                           ": " + ec.message());
  }
  ctx.set_verify_mode(ssl::verify_peer);
  if (!opts_.client_cert_file.empty()) {
    if (ctx.use_certificate_chain_file(opts_.client_cert_file, ec); ec) {
      return InvalidArgument("client certificate " + opts_.client_cert_file + ": " + ec.message());
    }
    if (ctx.use_private_key_file(opts_.client_key_file, ssl::context::pem, ec); ec) {
      return InvalidArgument("client key " + opts_.client_key_file + ": " + ec.message());
    }
  }
  return Status::Ok();
}

std::string ApiClient::HostHeader() const {
  bool v6 = host_.find(':') != std::string::npos;
  return (v6 ? "[" + host_ + "]" : host_) + ":" + port_;
}

namespace {

// A connection to the agent, plain or TLS, on a private io_context.
class Connection {
 public:
  Connection(net::io_context& ioc, ssl::context* tls) : plain_(ioc) {
    if (tls != nullptr) secure_.emplace(ioc, *tls);
  }
  beast::tcp_stream& Lowest() { return secure_ ? beast::get_lowest_layer(*secure_) : plain_; }

  // Resolves and connects (and handshakes, verifying the certificate against `host`), each
  // step bounded by `timeout`; runs `ioc` until done.
  beast::error_code Open(net::io_context& ioc, const std::string& host, const std::string& port,
                         std::chrono::milliseconds timeout) {
    beast::error_code ec;
    tcp::resolver resolver(ioc);
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return ec;
    Lowest().expires_after(timeout);
    Lowest().async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    ioc.run();
    ioc.restart();
    if (ec || !secure_) return ec;
    SSL* ssl_handle = secure_->native_handle();
    // SNI, and the name the certificate must carry (an IP address is checked as one).
    beast::error_code addr_ec;
    net::ip::make_address(host, addr_ec);
    if (addr_ec) {
      // SSL_set_tlsext_host_name, without the macro's C cast.
      SSL_ctrl(ssl_handle, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host.c_str()));
    }
    secure_->set_verify_callback(ssl::host_name_verification(host));
    Lowest().expires_after(timeout);
    secure_->async_handshake(ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
    ioc.run();
    ioc.restart();
    return ec;
  }

  template <class Fn>
  auto With(Fn&& fn) {
    if (secure_) return fn(*secure_);
    return fn(plain_);
  }

  void Close() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().close();
  }

 private:
  beast::tcp_stream plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
};

}  // namespace

Result<ApiResponse> ApiClient::Call(
    const std::string& method, const std::string& target, const std::string& body,
    const std::string& content_type,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  BERTH_RETURN_IF_ERROR(init_);
  net::io_context ioc;
  Connection conn(ioc, tls_ctx_ ? &tls_ctx_->ctx : nullptr);
  beast::error_code ec = conn.Open(ioc, host_, port_, opts_.timeout);
  if (ec) return TransportError(address_, ec);

  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, HostHeader());
  req.set(http::field::user_agent, std::string("berth-cli/") + Version());
  if (!opts_.token.empty()) req.set(http::field::authorization, "Bearer " + opts_.token);
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  req.keep_alive(false);

  // Synchronous operations on a tcp_stream do not honour expires_after, so run them as
  // asynchronous ones on our private io_context.
  ApiResponse out;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  conn.Lowest().expires_after(opts_.timeout);
  conn.With([&](auto& stream) {
    http::async_write(stream, req, [&](beast::error_code e, size_t) {
      if (e) {
        ec = e;
        return;
      }
      http::async_read(stream, buffer, parser, [&](beast::error_code e2, size_t) { ec = e2; });
    });
  });
  ioc.run();
  // A TLS peer that closes without close_notify after a complete response is no error.
  if (ec == ssl::error::stream_truncated && parser.is_done()) ec = {};
  if (ec) return TransportError(address_, ec);
  auto res = parser.release();
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  out.json = nlohmann::json::parse(out.body, nullptr, false);
  if (out.json.is_discarded()) out.json = nullptr;
  conn.Close();
  return out;
}

namespace {

// Turns a non-2xx answer into a Status carrying the API's error message.
Status StatusFromResponse(int http_status, const std::string& body, const nlohmann::json& json) {
  std::string msg;
  if (json.is_object() && json.contains("error") && json["error"].is_string()) {
    msg = json["error"].get<std::string>();
  } else {
    msg = "HTTP " + std::to_string(http_status) + (body.empty() ? "" : ": " + body);
  }
  Code code = Code::kInternal;
  switch (http_status) {
    case 400:
      code = Code::kInvalidArgument;
      break;
    case 401:
      code = Code::kUnauthenticated;
      break;
    case 403:
      code = Code::kPermissionDenied;
      break;
    case 404:
      code = Code::kNotFound;
      break;
    case 409:
      code = Code::kFailedPrecondition;
      break;
    case 413:
      code = Code::kTooLarge;
      break;
    case 503:
      code = Code::kUnavailable;
      break;
    case 504:
      code = Code::kDeadlineExceeded;
      break;
    default:
      break;
  }
  return Status(code, msg);
}

}  // namespace

Result<nlohmann::json> ApiClient::CallJson(
    const std::string& method, const std::string& target, const std::string& body,
    const std::string& content_type,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  BERTH_ASSIGN_OR_RETURN(auto res, Call(method, target, body, content_type, headers));
  if (res.status >= 200 && res.status < 300) return std::move(res.json);
  return StatusFromResponse(res.status, res.body, res.json);
}

Status ApiClient::Stream(const std::string& target,
                         const std::function<bool(std::string_view)>& on_data) {
  std::string location;
  Status st = StreamOnce(target, on_data, &location);
  if (location.empty()) return st;
  // Another agent serves this (e.g. the logs of an allocation on its machine).
  bool to_tls = location.rfind(kHttps, 0) == 0;
  if (!to_tls && location.rfind(kHttp, 0) != 0) {
    return Unavailable("the agent at " + address_ + " redirected to " + location +
                       ", which is not an http:// or https:// address");
  }
  if (tls_ && !to_tls) {
    // The token would cross the network in the clear.
    return Unavailable("the agent at " + address_ + " redirected to " + location +
                       ": refusing to leave TLS for plain http");
  }
  std::string rest = location.substr(to_tls ? kHttps.size() : kHttp.size());
  auto slash = rest.find('/');
  std::string host_port = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  ApiClientOptions other_opts = opts_;
  other_opts.address = std::string(to_tls ? kHttps : kHttp) + host_port;
  ApiClient other(other_opts);
  std::string again;
  st = other.StreamOnce(path, on_data, &again);
  if (!again.empty()) {
    return Unavailable("the agent at " + address_ + " redirected to " + host_port +
                       ", which redirected again (to " + again + "); giving up");
  }
  return st;
}

Status ApiClient::StreamOnce(const std::string& target,
                             const std::function<bool(std::string_view)>& on_data,
                             std::string* location) {
  BERTH_RETURN_IF_ERROR(init_);
  net::io_context ioc;
  Connection conn(ioc, tls_ctx_ ? &tls_ctx_->ctx : nullptr);
  beast::error_code ec = conn.Open(ioc, host_, port_, opts_.timeout);
  if (ec) return TransportError(address_, ec);
  // No read timeout from here: a followed stream may stay quiet for as long as it likes.
  conn.Lowest().expires_never();
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, HostHeader());
  req.set(http::field::user_agent, std::string("berth-cli/") + Version());
  if (!opts_.token.empty()) req.set(http::field::authorization, "Bearer " + opts_.token);

  return conn.With([&](auto& stream) -> Status {
    http::write(stream, req, ec);
    if (ec) return TransportError(address_, ec);

    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> head_parser;
    http::read_header(stream, buffer, head_parser, ec);
    if (ec) return TransportError(address_, ec);
    int status = static_cast<int>(head_parser.get().result_int());
    if (status != 200) {
      // An error or a redirect: a whole (small) response rather than a stream.
      http::response_parser<http::string_body> err_parser(std::move(head_parser));
      err_parser.body_limit(1u << 20);
      http::read(stream, buffer, err_parser, ec);
      const auto& res = err_parser.get();
      std::string body = res.body();
      auto json = nlohmann::json::parse(body, nullptr, false);
      if (json.is_discarded()) json = nullptr;
      if ((status == 307 || status == 308) && location != nullptr) {
        auto it = res.find(http::field::location);
        if (it != res.end() && !it->value().empty()) {
          *location = std::string(it->value());
          return Status::Ok();
        }
      }
      return StatusFromResponse(status, body, json);
    }
    http::response_parser<http::buffer_body> parser(std::move(head_parser));
    parser.body_limit(boost::none);
    char buf[8192];
    bool keep_going = true;
    while (keep_going && !parser.is_done()) {
      parser.get().body().data = buf;
      parser.get().body().size = sizeof(buf);
      http::read_some(stream, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) break;
      size_t n = sizeof(buf) - parser.get().body().size;
      if (n > 0) keep_going = on_data(std::string_view(buf, n));
    }
    if (ec && ec != http::error::end_of_stream && ec != net::error::eof &&
        ec != ssl::error::stream_truncated) {
      return Unavailable("stream from " + address_ + " ended: " + ec.message());
    }
    return Status::Ok();
  });
}

}  // namespace berth::cli
