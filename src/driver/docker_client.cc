#include "driver/docker_client.h"

#include <cstdlib>
#include <limits>
#include <optional>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace berth::driver {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Socket = net::local::stream_protocol::socket;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kDefaultHost = "unix:///var/run/docker.sock";
constexpr int kMaxApiMajor = 1;
constexpr int kMaxApiMinor = 41;

std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Runs `ioc` until `done` is set or `deadline` passes; on the deadline, closes the socket so
// the pending operation completes (aborted) and returns false.
bool RunUntil(net::io_context& ioc, Socket& socket, const bool& done,
              std::optional<Clock::time_point> deadline) {
  ioc.restart();
  if (!deadline) {
    while (!done && ioc.run_one() > 0) {
    }
    return done;
  }
  while (!done && Clock::now() < *deadline) {
    if (ioc.run_one_until(*deadline) == 0 && ioc.stopped()) break;
  }
  if (done) return true;
  beast::error_code ignored;
  socket.close(ignored);
  ioc.restart();
  ioc.run();
  return false;
}

// While alive, a stop requested on `stop` (from any thread) closes `socket` on the thread that
// runs `ioc`, so the operation pending on it completes at once (aborted). Declare it after
// the socket, so it is gone before the socket is.
class CloseOnStop {
 public:
  CloseOnStop(std::stop_token stop, net::io_context& ioc, Socket& socket)
      : callback_(std::move(stop), Close{&ioc, &socket}) {}

 private:
  struct Close {
    net::io_context* ioc;
    Socket* socket;
    void operator()() const {
      // post: sockets are not thread-safe, so the close runs where the socket is used. If the
      // call is over, the handler is dropped with the io_context, unrun.
      net::post(*ioc, [s = socket] {
        beast::error_code ignored;
        s->close(ignored);
      });
    }
  };
  std::stop_callback<Close> callback_;
};

std::string EngineMessage(std::string_view body) {
  auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object() && doc.contains("message") && doc["message"].is_string()) {
    return doc["message"].get<std::string>();
  }
  std::string s(body.substr(0, 300));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

bool ParseVersion(std::string_view v, int* major, int* minor) {
  auto dot = v.find('.');
  if (dot == std::string_view::npos) return false;
  char* end = nullptr;
  std::string a(v.substr(0, dot)), b(v.substr(dot + 1));
  *major = static_cast<int>(std::strtol(a.c_str(), &end, 10));
  if (end == a.c_str() || *end != '\0') return false;
  *minor = static_cast<int>(std::strtol(b.c_str(), &end, 10));
  return end != b.c_str() && *end == '\0';
}

}  // namespace

bool LogFrameDecoder::Feed(std::string_view data) {
  if (stopped_) return false;
  buffer_.append(data);
  size_t pos = 0;
  while (buffer_.size() - pos >= 8) {
    const auto* h = reinterpret_cast<const unsigned char*>(buffer_.data() + pos);
    if (h[0] > 2 || h[1] != 0 || h[2] != 0 || h[3] != 0) {
      status_ = Internal("docker log stream: malformed frame header");
      stopped_ = true;
      buffer_.clear();
      return false;
    }
    size_t size = (size_t{h[4]} << 24) | (size_t{h[5]} << 16) | (size_t{h[6]} << 8) | h[7];
    if (buffer_.size() - pos - 8 < size) break;
    bool more = sink_(h[0], std::string_view(buffer_).substr(pos + 8, size));
    pos += 8 + size;
    if (!more) {
      stopped_ = true;
      buffer_.clear();
      return false;
    }
  }
  buffer_.erase(0, pos);
  return true;
}

int PortFromBindError(std::string_view m) {
  // "Bind for 127.0.0.1:8080 failed: port is already allocated"
  // "Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address already in use"
  size_t end = std::string_view::npos;
  if (auto p = m.find(" failed: port is already allocated"); p != std::string_view::npos) {
    end = p;
  } else if (auto q = m.find(": bind: address already in use"); q != std::string_view::npos) {
    end = q;
  }
  if (end == std::string_view::npos || end == 0) return 0;
  auto colon = m.rfind(':', end - 1);
  if (colon == std::string_view::npos) return 0;
  std::string digits(m.substr(colon + 1, end - colon - 1));
  char* stop = nullptr;
  long port = std::strtol(digits.c_str(), &stop, 10);
  if (digits.empty() || *stop != '\0' || port <= 0 || port > 65535) return 0;
  return static_cast<int>(port);
}

Status MapEngineError(int http_status, std::string_view body, std::string_view what) {
  std::string message = EngineMessage(body);
  std::string full = std::string(what) + ": " + message;
  if (int port = PortFromBindError(message); port != 0) {
    return FailedPrecondition("host port " + std::to_string(port) + " is already in use (" + full +
                              ")");
  }
  switch (http_status) {
    case 400:
      return InvalidArgument(full);
    case 401:
      return Unauthenticated(full);
    case 403:
      return PermissionDenied(full);
    case 404:
      return NotFound(full);
    case 409:
      if (message.find("is already in use by container") != std::string::npos) {
        return AlreadyExists(full);
      }
      return FailedPrecondition(full);
    case 503:
      return Unavailable(full);
    default:
      return Internal(full + " (HTTP " + std::to_string(http_status) + ")");
  }
}

Result<std::unique_ptr<DockerClient>> DockerClient::Create(DockerClientOptions options) {
  std::string address = options.docker_host;
  if (address.empty()) {
    const char* env = std::getenv("DOCKER_HOST");
    address = env != nullptr && *env != '\0' ? env : std::string(kDefaultHost);
  }
  constexpr std::string_view kUnix = "unix://";
  if (address.rfind(kUnix, 0) != 0) {
    return InvalidArgument("docker host " + address +
                           ": only unix:// sockets are supported (tcp:// is not, yet)");
  }
  std::string path = address.substr(kUnix.size());
  if (path.empty() || path.front() != '/') {
    return InvalidArgument("docker host " + address + ": expected unix:///absolute/path");
  }
  return std::unique_ptr<DockerClient>(new DockerClient(address, path, options.timeout));
}

Status DockerClient::Unreachable(const std::string& why) const {
  return Unavailable("Docker Engine at " + address_ + " unreachable: " + why);
}

Result<DockerResponse> DockerClient::RoundTrip(const std::string& method, const std::string& target,
                                               const std::string& body,
                                               const std::string& content_type,
                                               std::chrono::milliseconds timeout,
                                               std::stop_token stop) {
  net::io_context ioc;
  Socket socket(ioc);
  CloseOnStop close_on_stop(stop, ioc, socket);
  auto cancelled = [&] { return Cancelled("docker " + method + " " + target + ": cancelled"); };
  if (stop.stop_requested()) return cancelled();
  const auto deadline = Clock::now() + timeout;
  beast::error_code ec;
  bool done = false;
  auto on_done = [&](beast::error_code e, auto&&...) {
    ec = e;
    done = true;
  };
  socket.async_connect(net::local::stream_protocol::endpoint(socket_path_), on_done);
  if (!RunUntil(ioc, socket, done, deadline)) return Unreachable("connect timed out");
  if (stop.stop_requested()) return cancelled();
  if (ec) return Unreachable(ec.message());

  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "berth");
  if (!body.empty() || method == "POST") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.prepare_payload();
  done = false;
  http::async_write(socket, req, on_done);
  if (!RunUntil(ioc, socket, done, deadline)) {
    return DeadlineExceeded("docker " + method + " " + target + ": no answer within " +
                            std::to_string(timeout.count()) + "ms");
  }
  if (stop.stop_requested()) return cancelled();
  if (ec) return Unreachable(ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 * 1024 * 1024);
  done = false;
  http::async_read(socket, buffer, parser, on_done);
  if (!RunUntil(ioc, socket, done, deadline)) {
    return DeadlineExceeded("docker " + method + " " + target + ": no answer within " +
                            std::to_string(timeout.count()) + "ms");
  }
  if (stop.stop_requested()) return cancelled();
  if (ec)
    return Unreachable("reading the answer to " + method + " " + target + ": " + ec.message());
  DockerResponse out;
  out.status = static_cast<int>(parser.get().result_int());
  out.body = std::move(parser.get().body());
  return out;
}

Result<std::string> DockerClient::ApiVersion() {
  return NegotiateVersion({});
}

Result<std::string> DockerClient::NegotiateVersion(std::stop_token stop) {
  {
    std::lock_guard lock(mu_);
    if (!api_version_.empty()) return api_version_;
  }
  BERTH_ASSIGN_OR_RETURN(auto response, RoundTrip("GET", "/version", "", "", timeout_, stop));
  if (response.status != 200) return MapEngineError(response.status, response.body, "version");
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  int major = 0, minor = 0;
  if (!doc.is_object() || !doc.contains("ApiVersion") || !doc["ApiVersion"].is_string() ||
      !ParseVersion(doc["ApiVersion"].get<std::string>(), &major, &minor)) {
    return Internal("Docker Engine at " + address_ + ": /version has no ApiVersion");
  }
  if (major > kMaxApiMajor || (major == kMaxApiMajor && minor > kMaxApiMinor)) {
    major = kMaxApiMajor;
    minor = kMaxApiMinor;
  }
  std::string version = std::to_string(major) + "." + std::to_string(minor);
  std::lock_guard lock(mu_);
  api_version_ = version;
  return version;
}

Result<std::string> DockerClient::Prefix(std::stop_token stop) {
  BERTH_ASSIGN_OR_RETURN(auto version, NegotiateVersion(std::move(stop)));
  return "/v" + version;
}

Result<DockerResponse> DockerClient::Call(const std::string& method, const std::string& path,
                                          const std::string& body, const std::string& content_type,
                                          std::optional<std::chrono::milliseconds> timeout) {
  BERTH_ASSIGN_OR_RETURN(auto prefix, Prefix());
  return RoundTrip(method, prefix + path, body, content_type, timeout.value_or(timeout_));
}

Status DockerClient::Ping() {
  BERTH_ASSIGN_OR_RETURN(auto response, RoundTrip("GET", "/_ping", "", "", timeout_));
  if (response.status != 200) return MapEngineError(response.status, response.body, "ping");
  return Status::Ok();
}

Result<nlohmann::json> DockerClient::Version() {
  BERTH_ASSIGN_OR_RETURN(auto response, Call("GET", "/version"));
  if (response.status != 200) return MapEngineError(response.status, response.body, "version");
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (doc.is_discarded()) return Internal("docker /version: not JSON");
  return doc;
}

Result<std::string> DockerClient::CreateContainer(const std::string& name,
                                                  const nlohmann::json& config) {
  BERTH_ASSIGN_OR_RETURN(auto response,
                         Call("POST", "/containers/create?name=" + UrlEncode(name), config.dump()));
  if (response.status != 201) {
    return MapEngineError(response.status, response.body, "create container " + name);
  }
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("Id") || !doc["Id"].is_string()) {
    return Internal("create container " + name + ": the engine returned no Id");
  }
  return doc["Id"].get<std::string>();
}

Status DockerClient::StartContainer(const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(auto response, Call("POST", "/containers/" + UrlEncode(id) + "/start"));
  if (response.status == 204 || response.status == 304) return Status::Ok();
  return MapEngineError(response.status, response.body, "start container " + id);
}

Status DockerClient::StopContainer(const std::string& id, int grace_seconds) {
  // The engine answers after the grace period (and the kill), so the deadline includes it.
  auto timeout = timeout_ + std::chrono::seconds(grace_seconds);
  BERTH_ASSIGN_OR_RETURN(
      auto response,
      Call("POST", "/containers/" + UrlEncode(id) + "/stop?t=" + std::to_string(grace_seconds), "",
           "application/json", timeout));
  if (response.status == 204 || response.status == 304) return Status::Ok();
  return MapEngineError(response.status, response.body, "stop container " + id);
}

Status DockerClient::KillContainer(const std::string& id, const std::string& signal) {
  std::string path = "/containers/" + UrlEncode(id) + "/kill";
  if (!signal.empty()) path += "?signal=" + UrlEncode(signal);
  BERTH_ASSIGN_OR_RETURN(auto response, Call("POST", path));
  if (response.status == 204) return Status::Ok();
  Status st = MapEngineError(response.status, response.body, "kill container " + id);
  if (response.status == 409 && st.message().find("is not running") != std::string::npos) {
    return Status::Ok();
  }
  return st;
}

Status DockerClient::RemoveContainer(const std::string& id, bool force) {
  BERTH_ASSIGN_OR_RETURN(auto response, Call("DELETE", "/containers/" + UrlEncode(id) +
                                                           "?v=1&force=" + (force ? "1" : "0")));
  if (response.status == 204 || response.status == 404) return Status::Ok();
  Status st = MapEngineError(response.status, response.body, "remove container " + id);
  if (st.message().find("already in progress") != std::string::npos) return Status::Ok();
  return st;
}

Result<nlohmann::json> DockerClient::InspectContainer(const std::string& id) {
  BERTH_ASSIGN_OR_RETURN(auto response, Call("GET", "/containers/" + UrlEncode(id) + "/json"));
  if (response.status != 200) {
    return MapEngineError(response.status, response.body, "inspect container " + id);
  }
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (!doc.is_object()) return Internal("inspect container " + id + ": not a JSON object");
  return doc;
}

Result<int64_t> DockerClient::WaitContainer(const std::string& id,
                                            std::chrono::milliseconds timeout) {
  auto response = Call("POST", "/containers/" + UrlEncode(id) + "/wait?condition=not-running", "",
                       "application/json", timeout);
  if (!response.ok()) {
    if (response.status().code() == Code::kDeadlineExceeded) {
      return DeadlineExceeded("container " + id + " still running after " +
                              std::to_string(timeout.count()) + "ms");
    }
    return response.status();
  }
  if (response->status != 200) {
    return MapEngineError(response->status, response->body, "wait for container " + id);
  }
  auto doc = nlohmann::json::parse(response->body, nullptr, false);
  if (!doc.is_object() || !doc.contains("StatusCode") || !doc["StatusCode"].is_number()) {
    return Internal("wait for container " + id + ": no StatusCode in the answer");
  }
  return doc["StatusCode"].get<int64_t>();
}

Status DockerClient::StreamGet(const std::string& target, const std::string& what,
                               std::optional<std::chrono::milliseconds> body_timeout,
                               std::stop_token stop, const std::function<void()>& on_open,
                               const std::function<bool(std::string_view)>& on_data) {
  net::io_context ioc;
  Socket socket(ioc);
  CloseOnStop close_on_stop(stop, ioc, socket);
  // Whatever fails once a stop was requested fails because of it: that is a normal end.
  if (stop.stop_requested()) return Status::Ok();
  const auto call_deadline = Clock::now() + timeout_;
  std::optional<Clock::time_point> body_deadline;
  if (body_timeout) body_deadline = Clock::now() + *body_timeout;
  beast::error_code ec;
  bool done = false;
  auto on_done = [&](beast::error_code e, auto&&...) {
    ec = e;
    done = true;
  };
  socket.async_connect(net::local::stream_protocol::endpoint(socket_path_), on_done);
  if (!RunUntil(ioc, socket, done, call_deadline)) return Unreachable("connect timed out");
  if (stop.stop_requested()) return Status::Ok();
  if (ec) return Unreachable(ec.message());

  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "berth");
  done = false;
  http::async_write(socket, req, on_done);
  if (!RunUntil(ioc, socket, done, call_deadline)) {
    return DeadlineExceeded(what + ": request timed out");
  }
  if (stop.stop_requested()) return Status::Ok();
  if (ec) return Unreachable(ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  // Not boost::none: Beast 1.74 compares a length against the empty optional and fails.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  done = false;
  http::async_read_header(socket, buffer, parser, on_done);
  if (!RunUntil(ioc, socket, done, call_deadline)) return DeadlineExceeded(what + ": no answer");
  if (stop.stop_requested()) return Status::Ok();
  if (ec) return Unreachable(what + ": " + ec.message());

  const int status = static_cast<int>(parser.get().result_int());
  if (status == 200 && on_open) on_open();
  std::string error_body;
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    done = false;
    http::async_read_some(socket, buffer, parser, on_done);
    if (!RunUntil(ioc, socket, done, body_deadline)) {
      return DeadlineExceeded(what + ": not finished within " +
                              std::to_string(body_timeout.value_or(timeout_).count()) + "ms");
    }
    if (stop.stop_requested()) return Status::Ok();
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Unreachable(what + ": " + ec.message());
    std::string_view got(chunk, sizeof(chunk) - parser.get().body().size);
    if (status != 200) {
      if (error_body.size() < 64 * 1024) error_body.append(got);
      continue;
    }
    // Returning false ends the call; closing the socket (on return) ends the stream.
    if (!on_data(got)) return Status::Ok();
  }
  if (status != 200) return MapEngineError(status, error_body, what);
  return Status::Ok();
}

Status DockerClient::Logs(const std::string& id, const LogsRequest& request,
                          const LogFrameDecoder::FrameSink& sink) {
  BERTH_ASSIGN_OR_RETURN(auto prefix, Prefix());
  std::string target =
      prefix + "/containers/" + UrlEncode(id) + "/logs?stdout=" + (request.stdout ? "1" : "0") +
      "&stderr=" + (request.stderr ? "1" : "0") + "&follow=" + (request.follow ? "1" : "0");
  if (request.tail_lines >= 0) target += "&tail=" + std::to_string(request.tail_lines);
  LogFrameDecoder decoder(sink);
  // Without follow the whole answer is bounded; with follow it lasts as long as the container.
  std::optional<std::chrono::milliseconds> body_timeout;
  if (!request.follow) body_timeout = timeout_;
  BERTH_RETURN_IF_ERROR(
      StreamGet(target, "logs of container " + id, body_timeout, {}, nullptr,
                [&decoder](std::string_view data) { return decoder.Feed(data); }));
  return decoder.status();
}

Status DockerClient::Events(const EventsRequest& request,
                            const std::function<bool(const nlohmann::json& event)>& sink,
                            std::stop_token stop) {
  auto prefix = Prefix(stop);
  if (!prefix.ok()) return stop.stop_requested() ? Status::Ok() : prefix.status();
  nlohmann::json filters = nlohmann::json::object();
  for (const auto& [key, values] : request.filters) filters[key] = values;
  std::string target = *prefix + "/events";
  char sep = '?';
  if (!request.filters.empty()) {
    target += sep + std::string("filters=") + UrlEncode(filters.dump());
    sep = '&';
  }
  if (request.since_ns > 0) {
    // "<seconds>.<nanoseconds>", the form the engine parses exactly.
    std::string nanos = std::to_string(request.since_ns % 1000000000);
    target += sep + std::string("since=") + std::to_string(request.since_ns / 1000000000) + "." +
              std::string(9 - nanos.size(), '0') + nanos;
  }

  // One JSON object per line; a chunk may end anywhere.
  constexpr size_t kMaxEventBytes = 1 << 20;
  std::string pending;
  bool sink_stopped = false;
  Status stream_error;
  auto on_data = [&](std::string_view data) {
    pending.append(data);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      auto event = nlohmann::json::parse(std::string_view(pending).substr(start, nl - start),
                                         nullptr, /*allow_exceptions=*/false);
      if (!event.is_object()) continue;  // the engine sends none such; never crash on one
      if (!sink(event)) {
        sink_stopped = true;
        return false;
      }
    }
    pending.erase(0, start);
    if (pending.size() > kMaxEventBytes) {
      stream_error = Internal("events from " + address_ + ": an event longer than 1 MiB");
      return false;
    }
    return true;
  };
  BERTH_RETURN_IF_ERROR(StreamGet(target, "events", std::nullopt, stop, request.on_open, on_data));
  BERTH_RETURN_IF_ERROR(stream_error);
  if (sink_stopped || stop.stop_requested()) return Status::Ok();
  return Unavailable("Docker Engine at " + address_ + " ended the event stream");
}

Result<nlohmann::json> DockerClient::ListContainers(const std::vector<std::string>& label_filters,
                                                    bool all) {
  nlohmann::json filters = nlohmann::json::object();
  if (!label_filters.empty()) filters["label"] = label_filters;
  std::string path = std::string("/containers/json?all=") + (all ? "1" : "0");
  if (!label_filters.empty()) path += "&filters=" + UrlEncode(filters.dump());
  BERTH_ASSIGN_OR_RETURN(auto response, Call("GET", path));
  if (response.status != 200) {
    return MapEngineError(response.status, response.body, "list containers");
  }
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (!doc.is_array()) return Internal("list containers: not a JSON array");
  return doc;
}

Result<nlohmann::json> DockerClient::InspectImage(const std::string& image) {
  BERTH_ASSIGN_OR_RETURN(auto response, Call("GET", "/images/" + image + "/json"));
  if (response.status == 404) return NotFound("image " + image + " not found");
  if (response.status != 200) {
    return MapEngineError(response.status, response.body, "inspect image " + image);
  }
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (!doc.is_object()) return Internal("inspect image " + image + ": not a JSON object");
  return doc;
}

Status DockerClient::ProgressError(const std::string& body, std::string_view what) {
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    auto line = nlohmann::json::parse(body.substr(start, end - start), nullptr, false);
    if (line.is_object() && line.contains("error")) {
      std::string message =
          line["error"].is_string() ? line["error"].get<std::string>() : line["error"].dump();
      return Internal(std::string(what) + ": " + message);
    }
    start = end + 1;
  }
  return Status::Ok();
}

Status DockerClient::ImportImage(const std::string& rootfs_tar, const std::string& repo,
                                 const std::string& tag) {
  const std::string what = "import image " + repo + ":" + tag;
  BERTH_ASSIGN_OR_RETURN(
      auto response,
      Call("POST", "/images/create?fromSrc=-&repo=" + UrlEncode(repo) + "&tag=" + UrlEncode(tag),
           rootfs_tar, "application/x-tar", timeout_ * 4));
  if (response.status != 200) return MapEngineError(response.status, response.body, what);
  return ProgressError(response.body, what);
}

Status DockerClient::BuildImage(const std::string& context_tar, const std::string& tag) {
  const std::string what = "build image " + tag;
  BERTH_ASSIGN_OR_RETURN(auto response, Call("POST", "/build?rm=1&forcerm=1&t=" + UrlEncode(tag),
                                             context_tar, "application/x-tar", timeout_ * 4));
  if (response.status != 200) return MapEngineError(response.status, response.body, what);
  return ProgressError(response.body, what);
}

}  // namespace berth::driver
