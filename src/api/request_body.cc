#include "api/request_body.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace berth::api {

using nlohmann::json;

HttpResponse Json(const json& body, int status) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

Result<json> BodyObject(const HttpRequest& req, std::initializer_list<std::string_view> allowed) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return InvalidArgument("request body: expected a JSON object");
  }
  for (const auto& [key, value] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return InvalidArgument(fmt::format("request body: unknown field \"{}\" (expected {})", key,
                                         fmt::join(allowed, ", ")));
    }
  }
  return body;
}

Status BodyBool(const json& body, const char* field, bool* out) {
  auto it = body.find(field);
  if (it == body.end()) return Status::Ok();
  if (!it->is_boolean()) {
    return InvalidArgument(
        fmt::format("request body: \"{}\" must be true or false, got {}", field, it->dump()));
  }
  *out = it->get<bool>();
  return Status::Ok();
}

Status BodyString(const json& body, const char* field, std::string* out) {
  auto it = body.find(field);
  if (it == body.end()) return Status::Ok();
  if (!it->is_string()) {
    return InvalidArgument(fmt::format("request body: \"{}\" must be a string, got {}", field,
                                       it->dump(-1, ' ', false, json::error_handler_t::replace)));
  }
  *out = it->get<std::string>();
  return Status::Ok();
}

}  // namespace berth::api
