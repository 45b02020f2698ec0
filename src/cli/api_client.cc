#include "cli/api_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/version.h"

namespace berth::cli {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

ApiClient::ApiClient(std::string address, std::chrono::milliseconds timeout) : timeout_(timeout) {
  if (address.rfind("http://", 0) == 0) address = address.substr(7);
  while (!address.empty() && address.back() == '/') address.pop_back();
  address_ = address;
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    host_ = address;
    port_ = "4680";
  } else {
    host_ = address.substr(0, colon);
    port_ = address.substr(colon + 1);
  }
  if (host_.size() > 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
}

std::string ApiClient::HostHeader() const {
  bool v6 = host_.find(':') != std::string::npos;
  return (v6 ? "[" + host_ + "]" : host_) + ":" + port_;
}

namespace {

Status TransportError(const std::string& address, const beast::error_code& ec) {
  return Unavailable("cannot reach the berth agent at " + address + ": " + ec.message() +
                     " (is `berth agent` running? set --addr or BERTH_ADDR)");
}

}  // namespace

Result<ApiResponse> ApiClient::Call(
    const std::string& method, const std::string& target, const std::string& body,
    const std::string& content_type,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(host_, port_, ec);
  if (ec) return TransportError(address_, ec);
  stream.expires_after(timeout_);
  stream.connect(endpoints, ec);
  if (ec) return TransportError(address_, ec);

  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, HostHeader());
  req.set(http::field::user_agent, std::string("berth-cli/") + Version());
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
  http::async_write(stream, req, [&](beast::error_code e, size_t) {
    if (e) {
      ec = e;
      return;
    }
    http::async_read(stream, buffer, parser, [&](beast::error_code e2, size_t) { ec = e2; });
  });
  ioc.run();
  if (ec) return TransportError(address_, ec);
  auto res = parser.release();
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  out.json = nlohmann::json::parse(out.body, nullptr, false);
  if (out.json.is_discarded()) out.json = nullptr;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
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
  constexpr std::string_view kScheme = "http://";
  if (location.rfind(kScheme, 0) != 0) {
    return Unavailable("the agent at " + address_ + " redirected to " + location +
                       ", which is not an http:// address");
  }
  std::string rest = location.substr(kScheme.size());
  auto slash = rest.find('/');
  std::string host_port = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  ApiClient other(host_port, timeout_);
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
  net::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(host_, port_, ec);
  if (ec) return TransportError(address_, ec);
  net::connect(socket, endpoints, ec);
  if (ec) return TransportError(address_, ec);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, HostHeader());
  req.set(http::field::user_agent, std::string("berth-cli/") + Version());
  http::write(socket, req, ec);
  if (ec) return TransportError(address_, ec);

  beast::flat_buffer buffer;
  http::response_parser<http::empty_body> head_parser;
  http::read_header(socket, buffer, head_parser, ec);
  if (ec) return TransportError(address_, ec);
  int status = static_cast<int>(head_parser.get().result_int());
  if (status != 200) {
    // An error or a redirect: a whole (small) response rather than a stream.
    http::response_parser<http::string_body> err_parser(std::move(head_parser));
    err_parser.body_limit(1u << 20);
    http::read(socket, buffer, err_parser, ec);
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
    http::read_some(socket, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) break;
    size_t n = sizeof(buf) - parser.get().body().size;
    if (n > 0) keep_going = on_data(std::string_view(buf, n));
  }
  if (ec && ec != http::error::end_of_stream && ec != net::error::eof) {
    return Unavailable("stream from " + address_ + " ended: " + ec.message());
  }
  return Status::Ok();
}

}  // namespace berth::cli
