// Who gets into the API: every route of the server's own route table (so a route added later is
// covered without touching this file) without a token, with a wrong one, with one of too little
// power, and with enough; bootstrap, token management, job prefixes, revocation, rate limiting
// with an injected clock, what the event stream leaves out, and the logs redirect keeping the
// token. Through the CLI's real ApiClient against a real HttpServer on an embedded store.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "acl/access_control.h"
#include "api/api_service.h"
#include "cli/api_client.h"
#include "runtime/alloc.h"
#include "spec/job_parser.h"
#include "store/embedded_store.h"

namespace berth::api {
namespace {

using nlohmann::json;

constexpr const char* kJob = R"(name: NAME
groups:
  - name: g
    tasks:
      - name: t
        driver: process
        command: /bin/sleep
        args: ["1000"]
)";

std::string JobYaml(const std::string& name) {
  std::string s = kJob;
  s.replace(s.find("NAME"), 4, name);
  return s;
}

class AclApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::EmbeddedOptions o;
    o.expiry_thread = false;
    store_ = std::move(*store::EmbeddedStore::Open(o));
    registry_ = std::make_unique<jobs::JobRegistry>(*store_, keys_, SystemClock::Shared());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  // Starts the API with access control on (or off), `max_failures` 401s per 10 s per address.
  void StartServer(bool enforce = true, int max_failures = 0) {
    server_ = std::make_unique<HttpServer>(server_opts_);
    ApiContext ctx;
    ctx.store = store_.get();
    ctx.keys = keys_;
    ctx.jobs = registry_.get();
    ctx.version = "test";
    ctx.machine_id = "m1";
    acl::AccessControl::Options ao;
    ao.enforce = enforce;
    ao.clock = clock_;
    ao.limits.max_failures = max_failures;
    ao.compare = [this](const acl::TokenHash& a, const acl::TokenHash& b) {
      ++compares_;
      return acl::HashesEqual(a, b);
    };
    access_ = std::make_shared<acl::AccessControl>(*store_, keys_, ao);
    ctx.access = access_;
    RegisterApiRoutes(*server_, ctx);
    ASSERT_TRUE(server_->Start().ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  std::string MakeToken(acl::Policy policy, const std::string& prefix = "") {
    auto t =
        access_->tokens().Create(std::string(acl::PolicyName(policy)) + "-token", policy, prefix);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? t->token : "";
  }

  cli::ApiClient Client(const std::string& token) {
    cli::ApiClientOptions o;
    o.address = addr_;
    o.token = token;
    return cli::ApiClient(o);
  }

  // The HTTP status of one request; for a stream, its head only.
  int HttpStatus(const HttpServer::RouteInfo& route, const std::string& path,
                 const std::string& token, const std::string& body = "{}",
                 const std::string& content_type = "application/json") {
    cli::ApiClient c = Client(token);
    if (route.stream) {
      berth::Status st = c.Stream(path, [](std::string_view) { return false; });
      switch (st.code()) {
        case Code::kOk:
          return 200;
        case Code::kUnauthenticated:
          return 401;
        case Code::kPermissionDenied:
          return 403;
        case Code::kNotFound:
          return 404;
        case Code::kInvalidArgument:
          return 400;
        case Code::kUnavailable:
          return 503;
        default:
          return 500;
      }
    }
    auto r = c.Call(route.method, path, route.method == "GET" ? "" : body, content_type);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->status : 0;
  }

  // A concrete path for a route pattern: ":x" becomes "x1", "*x" becomes "a/b".
  static std::string PathFor(const std::string& pattern) {
    std::string out;
    size_t i = 0;
    while (i < pattern.size()) {
      size_t j = pattern.find('/', i + 1);
      std::string seg = pattern.substr(i, j == std::string::npos ? std::string::npos : j - i);
      if (seg.size() > 1 && seg[1] == ':') {
        out += "/" + seg.substr(2) + "1";
      } else if (seg.size() > 1 && seg[1] == '*') {
        out += "/a/b";
      } else {
        out += seg;
      }
      if (j == std::string::npos) break;
      i = j;
    }
    return out;
  }

  HttpServer::Options server_opts_;
  store::Keys keys_{"/acl-api-test/"};
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<store::EmbeddedStore> store_;
  std::unique_ptr<jobs::JobRegistry> registry_;
  std::unique_ptr<HttpServer> server_;
  acl::AccessControlPtr access_;
  std::string addr_;
  std::atomic<int> compares_{0};
};

TEST_F(AclApiTest, PathsForPatterns) {
  EXPECT_EQ(PathFor("/v1/jobs"), "/v1/jobs");
  EXPECT_EQ(PathFor("/v1/jobs/:name/versions"), "/v1/jobs/name1/versions");
  EXPECT_EQ(PathFor("/v1/routes/:host/:id"), "/v1/routes/host1/id1");
  EXPECT_EQ(PathFor("/v1/secrets/*path"), "/v1/secrets/a/b");
}

TEST_F(AclApiTest, EveryRouteRefusesNoTokenAWrongOneAndTooLittlePower) {
  StartServer();
  std::map<acl::Policy, std::string> tokens;
  for (acl::Policy p :
       {acl::Policy::kRead, acl::Policy::kJobs, acl::Policy::kSecrets, acl::Policy::kAdmin}) {
    tokens[p] = MakeToken(p);
  }
  // Well-formed tokens the store does not know, or knows with another secret.
  const std::string unknown = acl::MakeToken("x", acl::Policy::kAdmin, "", 0).token;
  const std::string wrong_secret = tokens[acl::Policy::kAdmin].substr(0, 17) + unknown.substr(17);
  const std::string revoked = MakeToken(acl::Policy::kAdmin);
  ASSERT_TRUE(access_->tokens().Revoke(revoked.substr(0, 16)).ok());

  auto routes = server_->Routes();
  ASSERT_GE(routes.size(), 25u);
  std::set<std::string> seen;
  int public_routes = 0;
  for (const auto& route : routes) {
    const std::string path = PathFor(route.pattern);
    SCOPED_TRACE(route.method + " " + route.pattern + " (" + route.permission.Describe() + ")");
    seen.insert(route.method + " " + route.pattern);
    if (route.permission.need == acl::Need::kNone) {
      ++public_routes;
      int st = HttpStatus(route, path, "");
      EXPECT_NE(st, 401);
      EXPECT_NE(st, 403);
      continue;
    }
    EXPECT_EQ(HttpStatus(route, path, ""), 401) << "no token";
    EXPECT_EQ(HttpStatus(route, path, "not-a-token"), 401) << "malformed token";
    EXPECT_EQ(HttpStatus(route, path, unknown), 401) << "unknown token";
    EXPECT_EQ(HttpStatus(route, path, wrong_secret), 401) << "wrong secret";
    EXPECT_EQ(HttpStatus(route, path, revoked), 401) << "revoked token";
    for (const auto& [policy, token] : tokens) {
      SCOPED_TRACE(std::string("policy ") + std::string(acl::PolicyName(policy)));
      int st = HttpStatus(route, path, token);
      if (acl::Grants(policy, route.permission.need)) {
        EXPECT_NE(st, 401);
        EXPECT_NE(st, 403);
      } else {
        EXPECT_EQ(st, 403);
      }
    }
  }
  // Exactly the two routes that need no token.
  EXPECT_EQ(public_routes, 2);
  EXPECT_TRUE(seen.count("GET /v1/health"));
  EXPECT_TRUE(seen.count("POST /v1/acl/bootstrap"));
  // The routes that change things are among those checked.
  for (const char* r : {"POST /v1/jobs", "DELETE /v1/jobs/:name", "PUT /v1/machines/:id/drain",
                        "PUT /v1/routes/:host/:id", "POST /v1/acl/tokens", "GET /v1/events",
                        "GET /v1/allocs/:id/logs"}) {
    EXPECT_TRUE(seen.count(r)) << r;
  }
}

TEST_F(AclApiTest, WhatEachPolicyMayDoToJobsMachinesRoutesAndTokens) {
  StartServer();
  std::string read = MakeToken(acl::Policy::kRead);
  std::string jobs = MakeToken(acl::Policy::kJobs);
  std::string admin = MakeToken(acl::Policy::kAdmin);
  auto submit = [&](const std::string& token, const std::string& name) {
    auto r = Client(token).Call("POST", "/v1/jobs", JobYaml(name), "application/yaml");
    return r.ok() ? r->status : 0;
  };
  EXPECT_EQ(submit(read, "web"), 403);
  EXPECT_FALSE(registry_->Get("web").ok()) << "a refused submission stores nothing";
  EXPECT_EQ(submit(jobs, "web"), 201);
  EXPECT_EQ(Client(read).Call("GET", "/v1/jobs/web")->status, 200);
  EXPECT_EQ(Client(read).Call("DELETE", "/v1/jobs/web")->status, 403);
  EXPECT_EQ(Client(jobs).Call("DELETE", "/v1/jobs/web")->status, 200);

  // Machines and routes: admin only.
  EXPECT_EQ(Client(jobs)
                .Call("PUT", "/v1/routes/a.example.com/r1", R"({"backend":"http://127.0.0.1:9"})",
                      "application/json")
                ->status,
            403);
  EXPECT_EQ(Client(admin)
                .Call("PUT", "/v1/routes/a.example.com/r1", R"({"backend":"http://127.0.0.1:9"})",
                      "application/json")
                ->status,
            201);
  EXPECT_EQ(Client(jobs).Call("GET", "/v1/acl/tokens")->status, 403);
}

TEST_F(AclApiTest, AJobPrefixLimitsWhichJobsATokenChanges) {
  StartServer();
  std::string team = MakeToken(acl::Policy::kJobs, "team-a-");
  cli::ApiClient c = Client(team);
  auto submit = [&](const std::string& name) {
    return c.Call("POST", "/v1/jobs", JobYaml(name), "application/yaml")->status;
  };
  auto submit_json = [&](const std::string& name) {
    json j = {{"name", name},
              {"groups",
               {{{"name", "g"},
                 {"tasks", {{{"name", "t"}, {"driver", "process"}, {"command", "/bin/true"}}}}}}}};
    return c.Call("PUT", "/v1/jobs", j.dump(), "application/json")->status;
  };
  EXPECT_EQ(submit("team-a-web"), 201);
  EXPECT_EQ(submit_json("team-a-api"), 201);
  EXPECT_EQ(submit("team-b-web"), 403);
  EXPECT_EQ(submit_json("web"), 403);
  EXPECT_FALSE(registry_->Get("team-b-web").ok());
  // Someone else's job, made with an unlimited token.
  cli::ApiClient all = Client(MakeToken(acl::Policy::kJobs));
  ASSERT_EQ(all.Call("POST", "/v1/jobs", JobYaml("web"), "application/yaml")->status, 201);
  std::string v2 = JobYaml("web");
  v2.replace(v2.find("1000"), 4, "2000");
  ASSERT_EQ(all.Call("POST", "/v1/jobs", v2, "application/yaml")->status, 201);

  // Reads are not limited by the prefix.
  EXPECT_EQ(c.Call("GET", "/v1/jobs/web")->status, 200);
  EXPECT_EQ(c.Call("GET", "/v1/jobs")->status, 200);
  // Changes are.
  auto refused = c.Call("DELETE", "/v1/jobs/web");
  EXPECT_EQ(refused->status, 403);
  EXPECT_NE(refused->json["error"].get<std::string>().find("team-a-"), std::string::npos)
      << refused->body;
  EXPECT_EQ(c.Call("POST", "/v1/jobs/web/revert", R"({"version":1})", "application/json")->status,
            403);
  EXPECT_EQ(registry_->Get("web")->version, 2) << "nothing changed";
  EXPECT_EQ(c.Call("DELETE", "/v1/jobs/team-a-web")->status, 200);

  // A prefix belongs to a jobs token only.
  auto bad = Client(MakeToken(acl::Policy::kAdmin))
                 .Call("POST", "/v1/acl/tokens",
                       R"({"name":"x","policy":"read","job_prefix":"team-"})", "application/json");
  EXPECT_EQ(bad->status, 400) << bad->body;
}

// A job's tasks receive the values of the secrets it lists, so listing one is the power to read
// it: a jobs token may give a job only the secrets under the job's own name; admin any.
TEST_F(AclApiTest, AJobsTokenGivesAJobOnlyItsOwnSecrets) {
  StartServer();
  auto with_secret = [](const std::string& name, const std::string& path) {
    json j = {{"name", name},
              {"groups",
               {{{"name", "g"},
                 {"tasks",
                  {{{"name", "t"},
                    {"driver", "process"},
                    {"command", "/bin/true"},
                    {"secrets", {{{"path", path}, {"file", "s"}}}}}}}}}}};
    return j.dump();
  };
  cli::ApiClient jobs = Client(MakeToken(acl::Policy::kJobs));
  auto own =
      jobs.Call("PUT", "/v1/jobs", with_secret("web", "web/db-password"), "application/json");
  EXPECT_EQ(own->status, 201) << own->body;
  auto other = jobs.Call("PUT", "/v1/jobs", with_secret("web", "db/password"), "application/json");
  EXPECT_EQ(other->status, 403) << other->body;
  EXPECT_NE(other->body.find("db/password"), std::string::npos) << other->body;
  EXPECT_NE(other->body.find("admin"), std::string::npos) << other->body;
  // A name that only starts like the job's is not its namespace.
  EXPECT_EQ(
      jobs.Call("PUT", "/v1/jobs", with_secret("web", "webx/key"), "application/json")->status,
      403);
  EXPECT_EQ(registry_->Get("web")->version, 1) << "the refused versions wrote nothing";
  cli::ApiClient admin = Client(MakeToken(acl::Policy::kAdmin));
  EXPECT_EQ(
      admin.Call("PUT", "/v1/jobs", with_secret("web", "db/password"), "application/json")->status,
      201);
}

TEST_F(AclApiTest, BootstrapOnceThenTokensAreManagedByAdmins) {
  StartServer();
  cli::ApiClient anon = Client("");
  auto first = anon.Call("POST", "/v1/acl/bootstrap");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->status, 201) << first->body;
  const std::string admin = first->json["token"];
  EXPECT_EQ(first->json["policy"], "admin");
  EXPECT_FALSE(first->json.contains("hash"));

  auto again = anon.Call("POST", "/v1/acl/bootstrap");
  EXPECT_EQ(again->status, 409);
  EXPECT_NE(again->json["error"].get<std::string>().find(keys_.AclBootstrap()), std::string::npos)
      << again->body;
  // An admin token does not make a second bootstrap possible either.
  EXPECT_EQ(Client(admin).Call("POST", "/v1/acl/bootstrap")->status, 409);

  cli::ApiClient c = Client(admin);
  auto self = c.CallJson("GET", "/v1/acl/token/self");
  ASSERT_TRUE(self.ok());
  EXPECT_EQ((*self)["policy"], "admin");
  EXPECT_EQ((*self)["anonymous"], false);

  auto made = c.Call("POST", "/v1/acl/tokens",
                     R"({"name":"ci","policy":"jobs","job_prefix":"ci-"})", "application/json");
  ASSERT_EQ(made->status, 201) << made->body;
  const std::string ci = made->json["token"];
  const std::string ci_accessor = made->json["accessor"];
  EXPECT_EQ(made->json["job_prefix"], "ci-");

  auto list = c.CallJson("GET", "/v1/acl/tokens");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  for (const auto& t : *list) {
    EXPECT_FALSE(t.contains("hash")) << t.dump();
    EXPECT_FALSE(t.contains("token")) << t.dump();
  }
  EXPECT_EQ(list->dump().find(ci.substr(17)), std::string::npos);

  auto ci_self = Client(ci).CallJson("GET", "/v1/acl/token/self");
  ASSERT_TRUE(ci_self.ok());
  EXPECT_EQ((*ci_self)["name"], "ci");
  EXPECT_EQ((*ci_self)["job_prefix"], "ci-");

  // Bad bodies are clear 400s.
  for (const char* body :
       {"", "[]", R"({"name":"x"})", R"({"name":"x","policy":"root"})",
        R"({"name":"x","policy":"read","extra":1})", R"({"name":5,"policy":"read"})"}) {
    auto r = c.Call("POST", "/v1/acl/tokens", body, "application/json");
    EXPECT_EQ(r->status, 400) << body << " -> " << r->body;
    EXPECT_TRUE(r->json.contains("error"));
  }
  EXPECT_EQ(c.Call("DELETE", "/v1/acl/tokens/not-hex")->status, 400);
  EXPECT_EQ(c.Call("DELETE", "/v1/acl/tokens/0000000000000000")->status, 404);

  // Revocation takes effect at the next request.
  EXPECT_EQ(Client(ci).Call("GET", "/v1/jobs")->status, 200);
  auto revoked = c.Call("DELETE", "/v1/acl/tokens/" + ci_accessor);
  EXPECT_EQ(revoked->status, 200) << revoked->body;
  EXPECT_EQ(Client(ci).Call("GET", "/v1/jobs")->status, 401);
  EXPECT_EQ(Client(ci).Call("GET", "/v1/acl/token/self")->status, 401);
}

TEST_F(AclApiTest, TokensAreComparedByTheConstantTimeCompare) {
  StartServer();
  std::string read = MakeToken(acl::Policy::kRead);
  int before = compares_;
  EXPECT_EQ(Client(read).Call("GET", "/v1/jobs")->status, 200);
  EXPECT_EQ(compares_, before + 1);
  std::string wrong = read;
  wrong[20] = wrong[20] == 'A' ? 'B' : 'A';
  EXPECT_EQ(Client(wrong).Call("GET", "/v1/jobs")->status, 401);
  EXPECT_EQ(compares_, before + 2);
}

TEST_F(AclApiTest, RepeatedFailuresGet429UntilTheWindowPasses) {
  StartServer(/*enforce=*/true, /*max_failures=*/3);
  std::string read = MakeToken(acl::Policy::kRead);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Client("").Call("GET", "/v1/jobs")->status, 401);
  auto limited = Client(read).Call("GET", "/v1/jobs");
  EXPECT_EQ(limited->status, 429) << limited->body;
  EXPECT_NE(limited->json["error"].get<std::string>().find("try again in 10 s"), std::string::npos)
      << limited->body;
  // Streams too; the health probe is not refused.
  EXPECT_FALSE(Client(read).Stream("/v1/events", [](std::string_view) { return false; }).ok());
  EXPECT_EQ(Client("").Call("GET", "/v1/health")->status, 200);
  clock_->Advance(std::chrono::seconds(10));
  EXPECT_EQ(Client(read).Call("GET", "/v1/jobs")->status, 200);
}

TEST_F(AclApiTest, WithoutEnforcementEveryoneIsTheAnonymousAdmin) {
  StartServer(/*enforce=*/false);
  cli::ApiClient anon = Client("");
  EXPECT_EQ(anon.Call("POST", "/v1/jobs", JobYaml("web"), "application/yaml")->status, 201);
  auto self = anon.CallJson("GET", "/v1/acl/token/self");
  ASSERT_TRUE(self.ok()) << self.status().ToString();
  EXPECT_EQ((*self)["anonymous"], true);
  EXPECT_EQ((*self)["policy"], "admin");
}

TEST_F(AclApiTest, TheEventStreamLeavesOutWhatThePolicyMayNotRead) {
  StartServer();
  std::string read = MakeToken(acl::Policy::kRead);
  std::string admin = MakeToken(acl::Policy::kAdmin);
  ASSERT_TRUE(store_->Put(keys_.Secret("db/password"), R"({"sealed":"xyz"})").ok());
  ASSERT_TRUE(store_->Put(keys_.Job("web"), R"({"name":"web"})").ok());
  auto events_of = [&](const std::string& token) {
    std::string got;
    Status st = Client(token).Stream("/v1/events?index=1", [&](std::string_view d) {
      got += d;
      return got.find(R"("key":"web")") == std::string::npos;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return got;
  };
  std::string as_read = events_of(read);
  EXPECT_NE(as_read.find(R"("key":"web")"), std::string::npos) << as_read;
  EXPECT_EQ(as_read.find("\"secrets\""), std::string::npos) << as_read;
  EXPECT_EQ(as_read.find("\"acl\""), std::string::npos) << as_read;
  std::string as_admin = events_of(admin);
  EXPECT_NE(as_admin.find("\"topic\":\"acl\""), std::string::npos) << as_admin;
  EXPECT_NE(as_admin.find("db/password"), std::string::npos) << as_admin;
  EXPECT_EQ(as_admin.find("\"hash\""), std::string::npos) << as_admin;
}

TEST_F(AclApiTest, AnOpenStreamEndsOnceItsTokenIsRevoked) {
  server_opts_.stream_reauthorize_interval = std::chrono::milliseconds(0);
  StartServer();
  auto t = access_->tokens().Create("watcher", acl::Policy::kRead, "");
  ASSERT_TRUE(t.ok());
  std::atomic<bool> ready{false};
  Status result;
  std::thread watcher([&] {
    result = Client(t->token).Stream("/v1/events", [&](std::string_view d) {
      if (d.find("ready") != std::string_view::npos) ready = true;
      return true;  // keeps reading until the server ends the stream
    });
  });
  while (!ready) std::this_thread::yield();
  ASSERT_TRUE(access_->tokens().Revoke(t->record.accessor).ok());
  // The next change the stream would carry (or its idle check) finds the token gone.
  ASSERT_TRUE(store_->Put(keys_.Job("after-revoke"), "{}").ok());
  watcher.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
}

TEST_F(AclApiTest, TheLogsRedirectToAnotherAgentKeepsTheToken) {
  StartServer();
  // The agent of machine m2, checking tokens against the same store.
  HttpServer m2(HttpServer::Options{});
  ApiContext ctx2;
  ctx2.store = store_.get();
  ctx2.keys = keys_;
  ctx2.jobs = registry_.get();
  ctx2.machine_id = "m2";
  ctx2.access = access_;
  std::string seen_by_m2;
  ctx2.alloc_logs = [&](const std::string&, const std::string&, bool, int64_t, bool, bool,
                        const std::function<bool(std::string_view)>& sink) {
    sink("from m2\n");
    return Status::Ok();
  };
  RegisterApiRoutes(m2, ctx2);
  ASSERT_TRUE(m2.Start().ok());
  runtime::Allocation a;
  a.id = "web-g-0-aaaa";
  a.job = "web";
  a.group = "g";
  a.machine = "m2";
  a.job_version = 1;
  auto spec = spec::ParseJobYaml(JobYaml("web"), "web.yml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  a.spec = *spec;
  ASSERT_TRUE(store_->Put(keys_.Alloc("m2", a.id), a.ToJson().dump()).ok());
  ASSERT_TRUE(
      store_
          ->Put(keys_.Machine("m2"),
                json{{"id", "m2"}, {"address", "127.0.0.1:" + std::to_string(m2.port())}}.dump())
          .ok());
  std::string read = MakeToken(acl::Policy::kRead);
  std::string got;
  Status st = Client(read).Stream("/v1/allocs/" + a.id + "/logs", [&](std::string_view d) {
    got += d;
    return true;
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "from m2\n");
  // Without the token m2 refuses too (the first agent already does).
  EXPECT_EQ(Client("")
                .Stream("/v1/allocs/" + a.id + "/logs", [](std::string_view) { return true; })
                .code(),
            Code::kUnauthenticated);
  m2.Stop();
}

}  // namespace
}  // namespace berth::api
