// JSON in and out of the API's handlers: a response with a JSON body, and reading request
// bodies strictly (an object with only the fields a route knows, each of the type it needs;
// errors name the field: 400).
// Thread-safety: pure functions.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/http_server.h"
#include "common/status.h"

namespace berth::api {

// A response whose body is `body` (application/json).
HttpResponse Json(const nlohmann::json& body, int status = 200);
// The body as a JSON object (an empty body is an empty object) holding only `allowed` keys.
Result<nlohmann::json> BodyObject(const HttpRequest& req,
                                  std::initializer_list<std::string_view> allowed);
// A boolean field; `*out` keeps its value when the field is absent.
Status BodyBool(const nlohmann::json& body, const char* field, bool* out);
// A string field; `*out` keeps its value when the field is absent.
Status BodyString(const nlohmann::json& body, const char* field, std::string* out);

}  // namespace berth::api
