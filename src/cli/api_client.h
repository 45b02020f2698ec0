// ApiClient: the CLI's HTTP/1.1 client for an agent's API (Boost.Beast, blocking).
// The CLI speaks only to this API, never to the store.
// Thread-safety: one client per thread.
#pragma once

#include <chrono>
#include <functional>
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

class ApiClient {
 public:
  // `address` is "HOST:PORT" or "http://HOST:PORT".
  explicit ApiClient(std::string address,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Sends one request. Transport failures are kUnavailable naming the address; HTTP error
  // statuses are returned as a response (see Check()).
  Result<ApiResponse> Call(const std::string& method, const std::string& target,
                           const std::string& body = {}, const std::string& content_type = {},
                           const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Calls, then turns a non-2xx answer into a Status carrying the API's error message.
  Result<nlohmann::json> CallJson(
      const std::string& method, const std::string& target, const std::string& body = {},
      const std::string& content_type = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Streams a chunked response, calling on_data for each piece until it returns false or the
  // server ends the stream. Follows one redirect (307/308 to http://HOST:PORT/...: another
  // agent); an HTTP error is a Status carrying the API's message, as from CallJson.
  Status Stream(const std::string& target, const std::function<bool(std::string_view)>& on_data);

  const std::string& address() const { return address_; }

 private:
  // "HOST:PORT" as the Host header carries it (an agent compares it with machine addresses).
  std::string HostHeader() const;
  // One request; on a redirect sets *location (and returns Ok) instead of streaming.
  Status StreamOnce(const std::string& target, const std::function<bool(std::string_view)>& on_data,
                    std::string* location);

  std::string address_;
  std::string host_;
  std::string port_;
  std::chrono::milliseconds timeout_;
};

}  // namespace berth::cli
