// ApiClient: the CLI's HTTP/1.1 client for an agent's API (Boost.Beast, blocking), over plain
// HTTP or, for an address "https://HOST:PORT", TLS (OpenSSL: the server's certificate is
// verified against the CA file or the system's CAs, and its name against HOST; a client
// certificate is sent when one is given). Every request carries the bearer token, if any.
// The CLI speaks only to this API, never to the store.
// Thread-safety: one client per thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace berth::cli {

struct ApiResponse {
  int status = 0;
  std::string body;
  nlohmann::json json;  // parsed body, or null when it is not JSON
};

struct ApiClientOptions {
  // "HOST:PORT", "http://HOST:PORT" or "https://HOST:PORT" (port 4680 when left out).
  std::string address = "127.0.0.1:4680";
  std::string token{};             // sent as "Authorization: Bearer <token>"; "" = none
  std::string ca_file{};           // PEM CAs to verify an https:// agent; "" = the system's
  std::string client_cert_file{};  // PEM client certificate (chain) for agents that ask for one
  std::string client_key_file{};   // its private key
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

class ApiClient {
 public:
  explicit ApiClient(ApiClientOptions options);
  // A plain client without a token (tests, `berth version`'s probe).
  explicit ApiClient(std::string address,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Sends one request. Transport failures (TLS ones included) are kUnavailable naming the
  // address; HTTP error statuses are returned as a response (see CallJson()).
  Result<ApiResponse> Call(const std::string& method, const std::string& target,
                           const std::string& body = {}, const std::string& content_type = {},
                           const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Calls, then turns a non-2xx answer into a Status carrying the API's error message
  // (401 kUnauthenticated, 403 kPermissionDenied, 404 kNotFound, ...).
  Result<nlohmann::json> CallJson(
      const std::string& method, const std::string& target, const std::string& body = {},
      const std::string& content_type = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Streams a chunked response, calling on_data for each piece until it returns false or the
  // server ends the stream. Follows one redirect (307/308 to another agent, with the same token
  // and TLS settings; never from https:// to http://); an HTTP error is a Status carrying the
  // API's message, as from CallJson.
  Status Stream(const std::string& target, const std::function<bool(std::string_view)>& on_data);

  // The address as given, without a trailing '/'.
  const std::string& address() const { return address_; }
  bool tls() const { return tls_; }

 private:
  struct Tls;  // the OpenSSL context, made once per client
  // "HOST:PORT" as the Host header carries it (an agent compares it with machine addresses).
  std::string HostHeader() const;
  Status Init();
  // One request; on a redirect sets *location (and returns Ok) instead of streaming.
  Status StreamOnce(const std::string& target, const std::function<bool(std::string_view)>& on_data,
                    std::string* location);

  ApiClientOptions opts_;
  std::string address_;
  std::string host_;
  std::string port_;
  bool tls_ = false;
  std::unique_ptr<Tls> tls_ctx_;
  Status init_;  // a TLS setup error, returned by every call
};

}  // namespace berth::cli
