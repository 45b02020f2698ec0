// DockerClient: a small HTTP/1.1 client for the Docker Engine API over its Unix socket
// (Boost.Asio local sockets + Beast), with just the calls the docker driver and its tests need.
//
// The engine address comes from the options, else DOCKER_HOST, else
// unix:///var/run/docker.sock; tcp:// is refused for now (no TLS support yet). The API version
// is negotiated once (GET /version: min(1.41, the server's ApiVersion)) and every path is then
// prefixed with /v1.xx. Every call has a deadline; a connection is opened per call, so no
// state is shared between calls. Engine answers are mapped to berth Status codes by
// MapEngineError (404 → kNotFound, port in use → kFailedPrecondition naming the port, ...).
// Two calls stream: Logs and Events. Events (GET /events) has no deadline once open and ends
// when its std::stop_token is requested from another thread: the connection is then closed at
// once, so a read blocked on a quiet engine never delays a shutdown.
// Thread-safety: every method may be called from any thread concurrently (the negotiated
// version is guarded by a mutex; everything else is per call).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace berth::driver {

struct DockerClientOptions {
  std::string docker_host;                   // "" = $DOCKER_HOST, else unix:///var/run/docker.sock
  std::chrono::milliseconds timeout{30000};  // per call, unless the call says otherwise
};

struct DockerResponse {
  int status = 0;
  std::string body;
};

// Splits the multiplexed stdout/stderr stream of /logs and /attach (non-TTY containers):
// frames of an 8-byte header [stream, 0, 0, 0, size (4 bytes, big-endian)] and `size` bytes.
// Data may arrive cut anywhere; Feed buffers partial frames. Not thread-safe (one per stream).
class LogFrameDecoder {
 public:
  // stream: 0 stdin, 1 stdout, 2 stderr. Returns false to stop decoding.
  using FrameSink = std::function<bool(int stream, std::string_view payload)>;

  explicit LogFrameDecoder(FrameSink sink) : sink_(std::move(sink)) {}
  // Returns false once the sink asked to stop, or on a malformed header (kInternal in status()).
  bool Feed(std::string_view data);
  const Status& status() const { return status_; }
  // Bytes of an unfinished frame still buffered.
  size_t pending() const { return buffer_.size(); }

 private:
  FrameSink sink_;
  std::string buffer_;
  Status status_;
  bool stopped_ = false;
};

// Maps a non-2xx engine answer to a Status. `what` names the request ("create container x").
// The engine's {"message": ...} is kept in the message. Exposed for unit tests.
Status MapEngineError(int http_status, std::string_view body, std::string_view what);

// The host port a "port is already allocated" / "address already in use" message names, or 0.
int PortFromBindError(std::string_view message);

// What GET /events is asked for.
struct EventsRequest {
  // The engine's filters, e.g. {{"type", {"container"}}, {"event", {"die"}},
  // {"label", {"berth.alloc"}}}: values of one key are alternatives, keys must all match (two
  // "label" values must both be present).
  std::map<std::string, std::vector<std::string>> filters;
  // > 0: first replay the events the engine still holds (its last 256 or so) from this time on,
  // in ns since the epoch (an event's "timeNano"); then follow live ones. 0: live ones only.
  int64_t since_ns = 0;
  // Called once the engine has accepted the stream (HTTP 200), before any event.
  std::function<void()> on_open;
};

class DockerClient {
 public:
  // Parses the address; does not connect. kInvalidArgument for tcp:// or a malformed address.
  static Result<std::unique_ptr<DockerClient>> Create(DockerClientOptions options);

  // "unix:///var/run/docker.sock"
  const std::string& address() const { return address_; }

  Status Ping();
  // The negotiated API version ("1.41"); negotiates on first use.
  Result<std::string> ApiVersion();
  // The engine's GET /version document.
  Result<nlohmann::json> Version();

  // POST /containers/create?name=; the new container's id.
  Result<std::string> CreateContainer(const std::string& name, const nlohmann::json& config);
  Status StartContainer(const std::string& id);
  // POST /containers/{id}/stop?t=; an already stopped container is Ok.
  Status StopContainer(const std::string& id, int grace_seconds);
  // An already exited container is Ok.
  Status KillContainer(const std::string& id, const std::string& signal = "");
  // A container that no longer exists is Ok.
  Status RemoveContainer(const std::string& id, bool force);
  Result<nlohmann::json> InspectContainer(const std::string& id);
  // POST /containers/{id}/wait: the exit code; kDeadlineExceeded after `timeout`.
  Result<int64_t> WaitContainer(const std::string& id, std::chrono::milliseconds timeout);
  // GET /containers/{id}/logs, decoded frame by frame until `sink` returns false or the stream
  // ends. With follow, the stream ends when the container exits, so there is no deadline.
  struct LogsRequest {
    bool follow = false;
    bool stdout = true;
    bool stderr = true;
    int64_t tail_lines = -1;
  };
  Status Logs(const std::string& id, const LogsRequest& request,
              const LogFrameDecoder::FrameSink& sink);
  // GET /events: calls `sink` with each event (one JSON object, e.g. {"Type":"container",
  // "Action":"die","Actor":{"ID":...,"Attributes":{<labels>,"exitCode":"0",...}},
  // "timeNano":...}) as the engine sends it; a line that is not a JSON object is skipped. Ok
  // when `sink` returns false or `stop` is requested (from any thread; the connection is closed
  // at once). kUnavailable when the engine cannot be reached, drops the connection, or ends the
  // stream (it does so when it shuts down): callers that follow events reconnect, with
  // `since_ns` just past the last event seen. A refused request is the mapped engine error.
  // Connecting and the answer's header have the call deadline; the stream itself has none.
  Status Events(const EventsRequest& request,
                const std::function<bool(const nlohmann::json& event)>& sink,
                std::stop_token stop = {});
  // GET /containers/json?all=1 filtered by labels ("key" or "key=value").
  Result<nlohmann::json> ListContainers(const std::vector<std::string>& label_filters, bool all);
  Result<nlohmann::json> InspectImage(const std::string& image);
  // POST /images/create?fromSrc=- with a rootfs tarball (docker import).
  Status ImportImage(const std::string& rootfs_tar, const std::string& repo,
                     const std::string& tag);
  // POST /build with a tar context holding a Dockerfile.
  Status BuildImage(const std::string& context_tar, const std::string& tag);

  // One request; `path` without the /v1.xx prefix (added here). Non-2xx answers are returned,
  // not mapped; transport failures are kUnavailable, a missed deadline kDeadlineExceeded.
  Result<DockerResponse> Call(const std::string& method, const std::string& path,
                              const std::string& body = "",
                              const std::string& content_type = "application/json",
                              std::optional<std::chrono::milliseconds> timeout = std::nullopt);

 private:
  DockerClient(std::string address, std::string socket_path, std::chrono::milliseconds timeout)
      : address_(std::move(address)), socket_path_(std::move(socket_path)), timeout_(timeout) {}

  // One request on a fresh connection, `target` used as is. A requested `stop` closes the
  // connection and makes it kCancelled.
  Result<DockerResponse> RoundTrip(const std::string& method, const std::string& target,
                                   const std::string& body, const std::string& content_type,
                                   std::chrono::milliseconds timeout, std::stop_token stop = {});
  Result<std::string> NegotiateVersion(std::stop_token stop);
  Result<std::string> Prefix(std::stop_token stop = {});
  // GET `target` (used as is) on a fresh connection, handing the body to `on_data` as it
  // arrives until it returns false or the body ends (Ok), or `stop` is requested (Ok; the
  // connection is closed at once). Connecting and the header have the call deadline, the body
  // `body_timeout` (nullopt: none). `on_open` runs once a 200 header is in; any other answer is
  // read whole and mapped (MapEngineError, with `what` naming the request).
  Status StreamGet(const std::string& target, const std::string& what,
                   std::optional<std::chrono::milliseconds> body_timeout, std::stop_token stop,
                   const std::function<void()>& on_open,
                   const std::function<bool(std::string_view)>& on_data);
  Status Unreachable(const std::string& why) const;
  // Checks a JSON-lines progress stream (import, build) for an {"error": ...} entry.
  static Status ProgressError(const std::string& body, std::string_view what);

  const std::string address_;
  const std::string socket_path_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::string api_version_;  // guarded by mu_; "" until negotiated
};
using DockerClientPtr = std::unique_ptr<DockerClient>;

}  // namespace berth::driver
