#include "api/api_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "cli/api_client.h"
#include "store/embedded_store.h"

namespace berth::api {
namespace {

using nlohmann::json;

// A Store that forwards to a real one until told the store is "down" (the seam where a test
// injects faults).
class SwitchableStore final : public store::Store {
 public:
  explicit SwitchableStore(store::Store& inner) : inner_(inner) {}
  std::atomic<bool> down{false};

  Result<std::optional<store::KeyValue>> Get(std::string_view k) override {
    if (down) return Down();
    return inner_.Get(k);
  }
  Result<store::RangeResult> Range(std::string_view p, int64_t l) override {
    if (down) return Down();
    return inner_.Range(p, l);
  }
  Result<int64_t> Put(std::string_view k, std::string_view v, store::LeaseId l) override {
    if (down) return Down();
    return inner_.Put(k, v, l);
  }
  Result<int64_t> Delete(std::string_view k) override {
    if (down) return Down();
    return inner_.Delete(k);
  }
  Result<int64_t> DeletePrefix(std::string_view p) override {
    if (down) return Down();
    return inner_.DeletePrefix(p);
  }
  Result<store::TxnResult> Txn(const std::vector<store::Compare>& c,
                               const std::vector<store::TxnOp>& s,
                               const std::vector<store::TxnOp>& f) override {
    if (down) return Down();
    return inner_.Txn(c, s, f);
  }
  Result<store::LeaseId> GrantLease(std::chrono::seconds t) override {
    if (down) return Down();
    return inner_.GrantLease(t);
  }
  Result<std::chrono::seconds> KeepAlive(store::LeaseId l) override {
    if (down) return Down();
    return inner_.KeepAlive(l);
  }
  Status RevokeLease(store::LeaseId l) override {
    if (down) return Down();
    return inner_.RevokeLease(l);
  }
  Result<store::WatchPtr> Watch(std::string_view p, int64_t r, store::WatchCallback cb) override {
    if (down) return Down();
    return inner_.Watch(p, r, std::move(cb));
  }
  Status Compact(int64_t r) override { return inner_.Compact(r); }
  std::string Describe() const override { return "switchable"; }

 private:
  static Status Down() { return Unavailable("store test: down"); }
  store::Store& inner_;
};

constexpr const char* kJob = R"(name: web
groups:
  - name: frontend
    count: 2
    tasks:
      - name: server
        driver: process
        command: /bin/sleep
        args: ["1000"]
)";

class ApiServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::EmbeddedOptions o;
    o.expiry_thread = false;
    inner_ = std::move(*store::EmbeddedStore::Open(o));
    store_ = std::make_unique<SwitchableStore>(*inner_);
    registry_ = std::make_unique<jobs::JobRegistry>(*store_, keys_, SystemClock::Shared());
    server_ = std::make_unique<HttpServer>(HttpServer::Options{});
    ApiContext ctx;
    ctx.store = store_.get();
    ctx.keys = keys_;
    ctx.jobs = registry_.get();
    ctx.version = "test";
    RegisterApiRoutes(*server_, ctx);
    ASSERT_TRUE(server_->Start().ok());
    client_ = std::make_unique<cli::ApiClient>("127.0.0.1:" + std::to_string(server_->port()));
  }
  void TearDown() override { server_->Stop(); }

  store::Keys keys_{"/api-test/"};
  std::unique_ptr<store::EmbeddedStore> inner_;
  std::unique_ptr<SwitchableStore> store_;
  std::unique_ptr<jobs::JobRegistry> registry_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<cli::ApiClient> client_;
};

TEST_F(ApiServiceTest, SubmitListInspectStop) {
  auto r = client_->Call("POST", "/v1/jobs", kJob, "application/yaml",
                         {{"X-Berth-Filename", "web.yml"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(r->json["version"], 1);

  auto list = client_->CallJson("GET", "/v1/jobs");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0]["name"], "web");
  EXPECT_EQ((*list)[0]["instances"], 2);

  auto job = client_->CallJson("GET", "/v1/jobs/web");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)["spec"]["groups"][0]["tasks"][0]["command"], "/bin/sleep");

  auto stop = client_->CallJson("DELETE", "/v1/jobs/web");
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ((*stop)["status"], "stopped");
  auto versions = client_->CallJson("GET", "/v1/jobs/web/versions");
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ(versions->size(), 2u);
}

TEST_F(ApiServiceTest, JsonSubmission) {
  json j = {{"name", "api"},
            {"groups",
             {{{"name", "g"},
               {"tasks", {{{"name", "t"}, {"driver", "process"}, {"command", "/bin/true"}}}}}}}};
  auto r = client_->CallJson("POST", "/v1/jobs", j.dump(), "application/json");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["name"], "api");
}

TEST_F(ApiServiceTest, BadJobsAreClearErrorsAndStoreNothing) {
  auto r = client_->Call("POST", "/v1/jobs", "name: web\nbogus: 1\n", "application/yaml",
                         {{"X-Berth-Filename", "web.yml"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);
  std::string msg = r->json["error"];
  EXPECT_NE(msg.find("web.yml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bogus"), std::string::npos) << msg;

  r = client_->Call("POST", "/v1/jobs", "{\"name\": ", "application/json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);

  r = client_->Call("POST", "/v1/jobs", "", "application/yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);

  auto all = inner_->Range("/api-test/");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->kvs.empty());
}

TEST_F(ApiServiceTest, UnknownJobIs404) {
  auto r = client_->Call("GET", "/v1/jobs/nosuch");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->json["code"], "not found");
}

TEST_F(ApiServiceTest, StoreDownIs503AndRecovers) {
  ASSERT_EQ(client_->Call("POST", "/v1/jobs", kJob, "application/yaml")->status, 201);
  store_->down = true;
  auto r = client_->Call("GET", "/v1/jobs");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->json["error"].get<std::string>().find("down"), std::string::npos);
  r = client_->Call("POST", "/v1/jobs", kJob, "application/yaml");
  EXPECT_EQ(r->status, 503);
  auto health = client_->CallJson("GET", "/v1/health");
  ASSERT_TRUE(health.ok());
  EXPECT_NE((*health)["store"], "ok");
  store_->down = false;
  auto list = client_->CallJson("GET", "/v1/jobs");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(ApiServiceTest, EventStreamReplaysAndFollows) {
  ASSERT_EQ(client_->Call("POST", "/v1/jobs", kJob, "application/yaml")->status, 201);
  std::mutex mu;  // guards lines
  std::vector<json> lines;
  std::string buffer;
  std::thread follower([&] {
    cli::ApiClient c("127.0.0.1:" + std::to_string(server_->port()));
    c.Stream("/v1/events?index=1&topic=jobs", [&](std::string_view d) {
       std::lock_guard lock(mu);
       buffer.append(d);
       size_t nl;
       while ((nl = buffer.find('\n')) != std::string::npos) {
         lines.push_back(json::parse(buffer.substr(0, nl)));
         buffer.erase(0, nl + 1);
       }
       // Stop after the live stop event arrives.
       return !(lines.size() >= 3 && lines.back().value("type", "") == "put" &&
                lines.back()["value"]["status"] == "stopped");
     }).IgnoreError();
  });
  // The replayed put proves the watch is in place; then make a live change.
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard lock(mu);
    if (lines.size() >= 2) break;
  }
  ASSERT_TRUE(client_->CallJson("DELETE", "/v1/jobs/web").ok());
  follower.join();
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[0]["type"], "ready");
  EXPECT_EQ(lines[1]["topic"], "jobs");
  EXPECT_EQ(lines[1]["key"], "web");
  EXPECT_EQ(lines[1]["value"]["version"], 1);
  EXPECT_EQ(lines.back()["value"]["status"], "stopped");
}

TEST_F(ApiServiceTest, EventStreamRejectsBadIndex) {
  std::string got;
  ASSERT_TRUE(client_
                  ->Stream("/v1/events?index=abc",
                           [&](std::string_view d) {
                             got.append(d);
                             return true;
                           })
                  .ok());
  EXPECT_NE(got.find("index must be"), std::string::npos) << got;
}

}  // namespace
}  // namespace berth::api
