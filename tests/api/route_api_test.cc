// The route endpoints (GET /v1/routes, PUT and DELETE /v1/routes/:host/:id) against an
// embedded store, through the CLI's API client; and the CLI's route table and default ids.
#include <gtest/gtest.h>

#include <sstream>

#include "api/api_service.h"
#include "api/embedded_api_fixture.h"
#include "cli/api_client.h"
#include "cli/route_commands.h"
#include "store/embedded_store.h"

namespace berth::api {
namespace {

using nlohmann::json;

class RouteApiTest : public testing::EmbeddedApiFixture {
 protected:
  RouteApiTest() : EmbeddedApiFixture("/route-test/") {}

  cli::ApiResponse Call(const std::string& method, const std::string& target,
                        const std::string& body = {}) {
    auto r = client_->Call(method, target, body, body.empty() ? "" : "application/json");
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : cli::ApiResponse{};
  }
  json List() {
    auto r = client_->CallJson("GET", "/v1/routes");
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : json();
  }
  std::optional<json> Stored(const std::string& host_and_id) {
    auto kv = store_->Get(keys_.Routes() + host_and_id);
    EXPECT_TRUE(kv.ok());
    if (!kv.ok() || !*kv) return std::nullopt;
    return json::parse((*kv)->value);
  }
};

TEST_F(RouteApiTest, PutListDeleteAManualRoute) {
  EXPECT_EQ(List(), json::array());
  auto r = Call("PUT", "/v1/routes/App.Example.COM/db",
                R"({"backend": "http://127.0.0.1:9000", "path_prefix": "/api/"})");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json["host"], "app.example.com");
  EXPECT_EQ(r.json["id"], "db");
  EXPECT_EQ(r.json["path_prefix"], "/api");
  EXPECT_EQ(r.json["leased"], false);
  // Stored under the normalized host, as the router reads it, without a lease.
  auto v = Stored("app.example.com/db");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, (json{{"backend", "http://127.0.0.1:9000"}, {"path_prefix", "/api"}}));
  auto kv = store_->Get(keys_.Routes() + "app.example.com/db");
  ASSERT_TRUE(kv.ok() && *kv);
  EXPECT_EQ((*kv)->lease, 0);

  // Again, changed: replaced (200).
  r = Call("PUT", "/v1/routes/app.example.com/db",
           R"({"backend": "127.0.0.1:9001", "balance": "least_conn"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["path_prefix"], "/");
  EXPECT_EQ(r.json["balance"], "least_conn");

  r = Call("PUT", "/v1/routes/*.example.com/w", R"({"backend": "http://[::1]:80"})");
  EXPECT_EQ(r.status, 201) << r.body;

  json list = List();
  ASSERT_EQ(list.size(), 2u) << list.dump();
  EXPECT_EQ(list[0]["host"], "*.example.com");
  EXPECT_EQ(list[1]["host"], "app.example.com");
  EXPECT_EQ(list[1]["backend"], "127.0.0.1:9001");
  EXPECT_FALSE(list[1].contains("alloc"));
  EXPECT_GT(list[1]["modify_index"].get<int64_t>(), 0);

  // DELETE finds the route by the host as given or as normalized.
  r = Call("DELETE", "/v1/routes/APP.example.com/db");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["deleted"], true);
  EXPECT_EQ(r.json["backend"], "127.0.0.1:9001");
  EXPECT_FALSE(Stored("app.example.com/db"));
  r = Call("DELETE", "/v1/routes/app.example.com/db");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json["error"], "route app.example.com/db not found");
  EXPECT_EQ(List().size(), 1u);
}

TEST_F(RouteApiTest, BadRoutesAre400NamingTheProblemAndStoreNothing) {
  struct Case {
    std::string target;
    std::string body;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"/v1/routes/a.example.com/x", R"({"backend": "http://web.internal:80"})",
       "must be an IP address or localhost"},
      {"/v1/routes/a.example.com/x", R"({"backend": "https://127.0.0.1:443"})", "only http://"},
      {"/v1/routes/a.example.com/x", R"({"backend": "http://127.0.0.1:99999"})",
       "backend: port out of range"},
      {"/v1/routes/a.example.com/x", R"({"backend": "http://127.0.0.1:80/app"})",
       "a path is not supported"},
      {"/v1/routes/a%20b.example.com/x", R"({"backend": "http://127.0.0.1:80"})",
       "malformed host \"a b.example.com\""},
      {"/v1/routes/a.example.com/x", R"({"backend": "http://127.0.0.1:80", "path_prefix": "api"})",
       "\"path_prefix\" must be a path starting with /"},
      {"/v1/routes/a.example.com/x", R"({"backend": "http://127.0.0.1:80", "balance": "random"})",
       "\"balance\" must be round_robin or least_conn"},
      {"/v1/routes/a.example.com/x", R"({"path_prefix": "/"})",
       "\"backend\" (http://IP:PORT) is required"},
      {"/v1/routes/a.example.com/x", R"({"backend": "http://127.0.0.1:80", "weight": 2})",
       "unknown field \"weight\""},
      {"/v1/routes/a.example.com/x", R"(["http://127.0.0.1:80"])", "expected a JSON object"},
      {"/v1/routes/a.example.com/x%20y", R"({"backend": "http://127.0.0.1:80"})",
       "route id \"x y\""},
  };
  for (const auto& c : cases) {
    auto r = Call("PUT", c.target, c.body);
    EXPECT_EQ(r.status, 400) << c.target << " " << c.body << ": " << r.body;
    EXPECT_NE(r.json.value("error", "").find(c.error), std::string::npos)
        << c.body << ": " << r.body;
  }
  EXPECT_EQ(List(), json::array());
}

TEST_F(RouteApiTest, AgentRoutesAreShownWithTheirAllocAndNotOverwritten) {
  auto lease = store_->GrantLease(std::chrono::seconds(30));
  ASSERT_TRUE(lease.ok());
  json agent = {{"backend", "http://127.0.0.1:20001"},
                {"path_prefix", "/"},
                {"alloc", "web-frontend-0-1f3a9c2e"},
                {"job", "web"},
                {"task", "server"},
                {"machine", "m1"}};
  ASSERT_TRUE(
      store_->Put(keys_.Routes() + "web.local/web-frontend-0-1f3a9c2e-server", agent.dump(), *lease)
          .ok());
  // Written by hand, malformed: listed with the router's reason.
  ASSERT_TRUE(store_->Put(keys_.Routes() + "bad.local/x", R"({"backend": "nope"})").ok());

  json list = List();
  ASSERT_EQ(list.size(), 2u) << list.dump();
  EXPECT_EQ(list[0]["host"], "bad.local");
  EXPECT_EQ(list[0]["backend"], "nope");
  EXPECT_NE(list[0].value("error", "").find("IP address"), std::string::npos) << list[0].dump();
  const json& w = list[1];
  EXPECT_EQ(w["id"], "web-frontend-0-1f3a9c2e-server");
  EXPECT_EQ(w["leased"], true);
  EXPECT_EQ(w["alloc"], "web-frontend-0-1f3a9c2e");
  EXPECT_EQ(w["job"], "web");
  EXPECT_EQ(w["task"], "server");
  EXPECT_EQ(w["machine"], "m1");

  auto r = Call("PUT", "/v1/routes/web.local/web-frontend-0-1f3a9c2e-server",
                R"({"backend": "http://127.0.0.1:1"})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.json.value("error", "")
                .find("published by an agent for allocation "
                      "web-frontend-0-1f3a9c2e"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(Stored("web.local/web-frontend-0-1f3a9c2e-server")->at("backend"),
            "http://127.0.0.1:20001");

  // Removing it is allowed; the answer says it was leased (the agent will put it back).
  r = Call("DELETE", "/v1/routes/web.local/web-frontend-0-1f3a9c2e-server");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["leased"], true);
  EXPECT_EQ(r.json["alloc"], "web-frontend-0-1f3a9c2e");
  EXPECT_FALSE(Stored("web.local/web-frontend-0-1f3a9c2e-server"));
}

TEST(RouteCliTest, DefaultIdsAreStableAndDifferByBackendAndPath) {
  std::string a = cli::DefaultRouteId("http://127.0.0.1:9000", "/");
  EXPECT_EQ(a.size(), std::string("manual-").size() + 8);
  EXPECT_EQ(a.rfind("manual-", 0), 0u);
  EXPECT_EQ(a, cli::DefaultRouteId("http://127.0.0.1:9000", "/"));
  EXPECT_NE(a, cli::DefaultRouteId("http://127.0.0.1:9001", "/"));
  EXPECT_NE(a, cli::DefaultRouteId("http://127.0.0.1:9000", "/api"));
}

TEST(RouteCliTest, TableShowsSourceAndWhatTheRouterSkips) {
  json routes = json::array(
      {{{"host", "web.local"},
        {"id", "web-0-server"},
        {"backend", "http://127.0.0.1:20001"},
        {"path_prefix", "/"},
        {"alloc", "web-0"},
        {"leased", true}},
       {{"host", "db.local"},
        {"id", "manual-1234abcd"},
        {"backend", "http://127.0.0.1:5000"},
        {"path_prefix", "/admin"},
        {"leased", false}},
       {{"host", "bad.local"}, {"id", "x"}, {"backend", "nope"}, {"error", "bad backend"}}});
  std::ostringstream out;
  cli::PrintRouteTable(routes, out);
  EXPECT_EQ(out.str(),
            "HOST       PATH    BACKEND                 SOURCE  ID\n"
            "web.local  /       http://127.0.0.1:20001  web-0   web-0-server\n"
            "db.local   /admin  http://127.0.0.1:5000   manual  manual-1234abcd\n"
            "bad.local  /       nope                    manual  x\n"
            "skipped by the router: bad.local/x: bad backend\n");
}

}  // namespace
}  // namespace berth::api
