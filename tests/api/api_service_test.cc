#include "api/api_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "api/embedded_api_fixture.h"
#include "cli/api_client.h"
#include "engine/records.h"
#include "runtime/alloc.h"
#include "spec/job_parser.h"
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

// The store the routes see can be switched "down" (switch_->down); store_ is the embedded store
// behind it, for the test's own reads and writes.
class ApiServiceTest : public testing::EmbeddedApiFixture {
 protected:
  ApiServiceTest() : EmbeddedApiFixture("/api-test/") {}
  store::Store& Front() override {
    switch_ = std::make_unique<SwitchableStore>(*store_);
    return *switch_;
  }

  std::unique_ptr<SwitchableStore> switch_;
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

  auto all = store_->Range("/api-test/");
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
  switch_->down = true;
  auto r = client_->Call("GET", "/v1/jobs");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->json["error"].get<std::string>().find("down"), std::string::npos);
  r = client_->Call("POST", "/v1/jobs", kJob, "application/yaml");
  EXPECT_EQ(r->status, 503);
  auto health = client_->CallJson("GET", "/v1/health");
  ASSERT_TRUE(health.ok());
  EXPECT_NE((*health)["store"], "ok");
  switch_->down = false;
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

// Event streams whose clients hang up while changes keep arriving: the stream's end must not
// hold the lock its watch callback waits for while it cancels that watch (Cancel() waits for a
// callback in flight), or the stream thread and the store's watch dispatcher both stop for
// good. Afterwards a new stream still sees a new change.
TEST_F(ApiServiceTest, StreamsEndingUnderAStormOfChangesLeaveTheWatchesWorking) {
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      ASSERT_TRUE(store_->Put(keys_.Job("storm-" + std::to_string(i % 50)), "{}").ok());
    }
  });
  for (int round = 0; round < 300; ++round) {
    cli::ApiClient c("127.0.0.1:" + std::to_string(server_->port()));
    std::string got;
    // Hangs up as soon as one change has arrived; the server notices between two writes.
    Status st = c.Stream("/v1/events?topic=jobs", [&](std::string_view d) {
      got.append(d);
      return got.find("storm-") == std::string::npos;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  stop = true;
  writer.join();
  std::atomic<bool> ready{false};
  std::string got;
  std::thread follower([&] {
    client_
        ->Stream("/v1/events?topic=jobs",
                 [&](std::string_view d) {
                   got.append(d);
                   if (got.find("ready") != std::string::npos) ready = true;
                   return got.find("after-storm") == std::string::npos;
                 })
        .IgnoreError();
  });
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(store_->Put(keys_.Job("after-storm"), "{}").ok());
  follower.join();
  EXPECT_NE(got.find("after-storm"), std::string::npos) << got;
}

// The allocation routes, against records the test writes itself (as the placer and the
// agents' reconcilers would), and a fake log source standing in for this machine's runner.
class AllocApiTest : public ApiServiceTest {
 protected:
  // What the fake log source was asked, and what it should send.
  struct LogCall {
    std::string alloc_id;
    std::string task;
    bool follow = false;
    int64_t tail = 0;
    bool want_stdout = false;
    bool want_stderr = false;
  };

  void Customize(ApiContext& ctx) override {
    ctx.machine_id = "m1";
    if (!with_logs_) return;
    ctx.alloc_logs = [this](const std::string& id, const std::string& task, bool follow,
                            int64_t tail, bool out, bool err,
                            const std::function<bool(std::string_view)>& sink) -> Status {
      {
        std::lock_guard lock(mu_);
        calls_.push_back({id, task, follow, tail, out, err});
      }
      if (task == "missing") return NotFound("no log file for task missing");
      if (!follow) {
        if (sink("line1\n")) sink("line2\n");
        return Status::Ok();
      }
      // Follow: send what the test queues until the client goes or the test says stop.
      bool open = sink("line1\n");
      std::unique_lock lock(mu_);
      while (open) {
        cv_.wait_for(lock, std::chrono::milliseconds(20),
                     [&] { return !queued_.empty() || stop_follow_; });
        if (stop_follow_) break;
        std::string out_line;
        if (!queued_.empty()) {
          out_line = std::move(queued_.front());
          queued_.pop_front();
        }
        lock.unlock();
        open = sink(out_line);  // "" only checks that the client is still there
        lock.lock();
      }
      follow_ended_ = true;
      cv_.notify_all();
      return Status::Ok();
    };
  }

  spec::Job WebJob() {
    auto job = spec::ParseJobYaml(kTwoTasks, "web.yml");
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    return *job;
  }

  runtime::Allocation Alloc(const std::string& id, const std::string& group, int index,
                            const std::string& machine) {
    runtime::Allocation a;
    a.id = id;
    a.job = "web";
    a.group = group;
    a.index = index;
    a.machine = machine;
    a.job_version = 1;
    a.spec = WebJob();
    a.created_at_ms = 1000;
    return a;
  }

  runtime::AllocStatus Observed(const runtime::Allocation& a,
                                std::vector<std::string> tasks = {"server"}) {
    runtime::AllocStatus s;
    s.id = a.id;
    s.job = a.job;
    s.group = a.group;
    s.index = a.index;
    s.machine = a.machine;
    s.job_version = a.job_version;
    for (const auto& name : tasks) {
      runtime::TaskReport t;
      t.name = name;
      t.driver = "process";
      t.state = runtime::RunState::kRunning;
      t.pid = 4242;
      t.ports["http"] = 20001;
      t.restarts = 2;
      s.tasks.push_back(std::move(t));
    }
    s.Summarize();
    s.AddEvent({2000, "server", "started", "pid 4242"});
    s.updated_at_ms = 2000;
    return s;
  }

  void PutAlloc(const runtime::Allocation& a) {
    ASSERT_TRUE(store_->Put(keys_.Alloc(a.machine, a.id), a.ToJson().dump()).ok());
  }
  void PutStatus(const runtime::AllocStatus& s) {
    ASSERT_TRUE(store_->Put(keys_.AllocStatus(s.id), s.ToJson().dump()).ok());
  }
  void PutMachine(const std::string& id, const std::string& address) {
    json m = {{"id", id}, {"address", address}};
    ASSERT_TRUE(store_->Put(keys_.Machine(id), m.dump()).ok());
  }

  // Streams a target to the end; returns the status and what arrived.
  std::pair<Status, std::string> StreamAll(const std::string& target) {
    std::string got;
    Status st = client_->Stream(target, [&](std::string_view d) {
      got.append(d);
      return true;
    });
    return {st, got};
  }

  static constexpr const char* kTwoTasks = R"(name: web
groups:
  - name: frontend
    count: 2
    tasks:
      - name: server
        driver: process
        command: /bin/sleep
        args: ["1000"]
  - name: pair
    tasks:
      - name: app
        driver: process
        command: /bin/sleep
      - name: sidecar
        driver: process
        command: /bin/sleep
)";

  bool with_logs_ = true;
  std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::vector<LogCall> calls_;
  std::deque<std::string> queued_;
  bool stop_follow_ = false;
  bool follow_ended_ = false;
};

TEST_F(AllocApiTest, ListIsTheUnionOfAllocAndStatusRecords) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  auto a1 = Alloc("web-frontend-1-bbbb2222", "frontend", 1, "m2");
  auto gone = Alloc("web-frontend-0-cccc3333", "frontend", 0, "m2");
  PutAlloc(a0);
  PutAlloc(a1);
  PutStatus(Observed(a0));    // running
  PutStatus(Observed(gone));  // no alloc record any more: being stopped
  auto other = Alloc("api-frontend-0-dddd4444", "frontend", 0, "m1");
  other.job = "api";
  PutAlloc(other);

  auto list = client_->CallJson("GET", "/v1/allocs");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 4u) << list->dump(2);
  // Sorted by job, group, index, id.
  EXPECT_EQ((*list)[0]["id"], "api-frontend-0-dddd4444");
  EXPECT_EQ((*list)[1]["id"], "web-frontend-0-aaaa1111");
  EXPECT_EQ((*list)[2]["id"], "web-frontend-0-cccc3333");
  EXPECT_EQ((*list)[3]["id"], "web-frontend-1-bbbb2222");

  EXPECT_EQ((*list)[1]["state"], "running");
  EXPECT_EQ((*list)[1]["desired"], "run");
  EXPECT_EQ((*list)[1]["machine"], "m1");
  EXPECT_EQ((*list)[1]["tasks"][0]["pid"], 4242);
  EXPECT_EQ((*list)[1]["events"][0]["type"], "started");
  EXPECT_EQ((*list)[2]["desired"], "stop");
  EXPECT_EQ((*list)[2]["state"], "running");
  // Placed but not reported yet: pending, with the group's tasks.
  EXPECT_EQ((*list)[3]["state"], "pending");
  EXPECT_EQ((*list)[3]["desired"], "run");
  EXPECT_EQ((*list)[3]["machine"], "m2");
  EXPECT_EQ((*list)[3]["updated_at_ms"], 1000);
  ASSERT_EQ((*list)[3]["tasks"].size(), 1u);
  EXPECT_EQ((*list)[3]["tasks"][0]["name"], "server");
  EXPECT_EQ((*list)[3]["tasks"][0]["state"], "pending");

  auto web = client_->CallJson("GET", "/v1/allocs?job=web");
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->size(), 3u);
  auto none = client_->CallJson("GET", "/v1/allocs?job=nosuch");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(AllocApiTest, CorruptRecordsAreSkippedNotFatal) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  auto a1 = Alloc("web-frontend-1-bbbb2222", "frontend", 1, "m1");
  PutAlloc(a0);
  PutAlloc(a1);
  // a0's status is garbage; a1's alloc record is, but its status is fine; a lone bad status.
  ASSERT_TRUE(store_->Put(keys_.AllocStatus(a0.id), "{not json").ok());
  ASSERT_TRUE(store_->Put(keys_.Alloc("m1", a1.id), R"({"id": 7})").ok());
  PutStatus(Observed(a1));
  ASSERT_TRUE(store_->Put(keys_.AllocStatus("orphan"), R"({"id": "orphan"})").ok());

  auto list = client_->CallJson("GET", "/v1/allocs");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u) << list->dump(2);
  EXPECT_EQ((*list)[0]["id"], a0.id);
  EXPECT_EQ((*list)[0]["state"], "pending");
  EXPECT_NE((*list)[0]["message"].get<std::string>().find("status record unreadable"),
            std::string::npos)
      << (*list)[0].dump();
  EXPECT_EQ((*list)[1]["id"], a1.id);
  EXPECT_EQ((*list)[1]["state"], "running");
  EXPECT_EQ((*list)[1]["desired"], "run");  // its alloc record exists, unreadable or not

  auto r = client_->Call("GET", "/v1/allocs/orphan");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
}

TEST_F(AllocApiTest, GetByIdOrUniquePrefix) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  auto a1 = Alloc("web-frontend-1-bbbb2222", "frontend", 1, "m2");
  PutAlloc(a0);
  PutAlloc(a1);
  PutStatus(Observed(a0));
  PutMachine("m1", "127.0.0.1:4681");

  auto one = client_->CallJson("GET", "/v1/allocs/web-frontend-0-aaaa1111");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ((*one)["id"], a0.id);
  EXPECT_EQ((*one)["desired"], "run");
  EXPECT_EQ((*one)["machine_api"], "127.0.0.1:4681");

  auto prefix = client_->CallJson("GET", "/v1/allocs/web-frontend-1");
  ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
  EXPECT_EQ((*prefix)["id"], a1.id);
  EXPECT_EQ((*prefix)["machine_api"], "");  // m2 is not registered

  auto ambiguous = client_->Call("GET", "/v1/allocs/web-frontend");
  ASSERT_TRUE(ambiguous.ok());
  EXPECT_EQ(ambiguous->status, 400);
  std::string msg = ambiguous->json["error"];
  EXPECT_NE(msg.find("ambiguous"), std::string::npos) << msg;
  EXPECT_NE(msg.find(a0.id), std::string::npos) << msg;
  EXPECT_NE(msg.find(a1.id), std::string::npos) << msg;

  auto none = client_->Call("GET", "/v1/allocs/zzz");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->status, 404);
  EXPECT_EQ(none->json["code"], "not found");
}

TEST_F(AllocApiTest, JobDetailListsItsAllocationsInTheSameShape) {
  ASSERT_EQ(client_->Call("POST", "/v1/jobs", kJob, "application/yaml")->status, 201);
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  PutAlloc(a0);
  PutStatus(Observed(a0));
  auto other = Alloc("api-frontend-0-dddd4444", "frontend", 0, "m1");
  other.job = "api";
  PutAlloc(other);
  auto job = client_->CallJson("GET", "/v1/jobs/web");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_EQ((*job)["allocations"].size(), 1u);
  EXPECT_EQ((*job)["allocations"][0]["id"], a0.id);
  EXPECT_EQ((*job)["allocations"][0]["desired"], "run");
  EXPECT_EQ((*job)["allocations"][0]["state"], "running");
}

TEST_F(AllocApiTest, AllocsStoreDownIs503) {
  switch_->down = true;
  auto r = client_->Call("GET", "/v1/allocs");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  auto [st, got] = StreamAll("/v1/allocs/x/logs");
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_TRUE(got.empty());
}

TEST_F(AllocApiTest, LogsOfTheOnlyTask) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  PutAlloc(a0);
  PutStatus(Observed(a0));
  auto [st, got] = StreamAll("/v1/allocs/web-frontend-0/logs?tail=10&stderr=0");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "line1\nline2\n");
  std::lock_guard lock(mu_);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_[0].alloc_id, a0.id);  // the full id, not the prefix
  EXPECT_EQ(calls_[0].task, "server");
  EXPECT_FALSE(calls_[0].follow);
  EXPECT_EQ(calls_[0].tail, 10);
  EXPECT_TRUE(calls_[0].want_stdout);
  EXPECT_FALSE(calls_[0].want_stderr);
}

TEST_F(AllocApiTest, LogsRefusalsAreHttpErrors) {
  auto pair = Alloc("web-pair-0-eeee5555", "pair", 0, "m1");
  PutAlloc(pair);
  PutStatus(Observed(pair, {"app", "sidecar"}));

  auto [st, got] = StreamAll("/v1/allocs/web-pair/logs");
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("app, sidecar"), std::string::npos) << st.message();
  EXPECT_TRUE(got.empty());

  std::tie(st, got) = StreamAll("/v1/allocs/web-pair/logs?task=nosuch");
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();

  std::tie(st, got) = StreamAll("/v1/allocs/web-pair/logs?task=app&tail=-3");
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  std::tie(st, got) = StreamAll("/v1/allocs/web-pair/logs?task=app&stdout=0&stderr=0");
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  std::tie(st, got) = StreamAll("/v1/allocs/nosuch/logs");
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();

  // An error from the log source before any output is the response's status.
  auto odd = Observed(pair, {"app", "missing"});
  PutStatus(odd);
  std::tie(st, got) = StreamAll("/v1/allocs/web-pair/logs?task=missing");
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();
  EXPECT_NE(st.message().find("no log file"), std::string::npos) << st.message();

  std::tie(st, got) = StreamAll("/v1/allocs/web-pair/logs?task=app");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "line1\nline2\n");
}

TEST_F(AllocApiTest, LogsFollowStreamsAsOutputArrives) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  PutAlloc(a0);
  std::mutex got_mu;  // guards got
  std::condition_variable got_cv;
  std::string got;
  Status st;
  std::thread follower([&] {
    st = client_->Stream("/v1/allocs/" + a0.id + "/logs?follow=1", [&](std::string_view d) {
      std::lock_guard lock(got_mu);
      got.append(d);
      got_cv.notify_all();
      return true;
    });
  });
  auto wait_for = [&](const std::string& want) {
    std::unique_lock lock(got_mu);
    return got_cv.wait_for(lock, std::chrono::seconds(10), [&] { return got == want; });
  };
  EXPECT_TRUE(wait_for("line1\n")) << got;
  {
    std::lock_guard lock(mu_);
    queued_.push_back("line2\n");
    cv_.notify_all();
  }
  EXPECT_TRUE(wait_for("line1\nline2\n")) << got;
  {
    std::lock_guard lock(mu_);
    stop_follow_ = true;  // the allocation's output ends: so does the stream
    cv_.notify_all();
  }
  follower.join();
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "line1\nline2\n");
  std::lock_guard lock(mu_);
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_TRUE(calls_[0].follow);
  EXPECT_EQ(calls_[0].tail, -1);
  EXPECT_EQ(calls_[0].task, "server");  // from the alloc record's group: no status yet
}

TEST_F(AllocApiTest, LogsFollowEndsWhenTheClientHangsUp) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  PutAlloc(a0);
  // The client stops after the first piece and closes its connection; the quiet follow loop
  // (which only checks the client with sink("")) must notice and return.
  auto [st, got] = [&] {
    std::string g;
    Status s =
        client_->Stream("/v1/allocs/" + a0.id + "/logs?follow=true", [&](std::string_view d) {
          g.append(d);
          return false;
        });
    return std::make_pair(s, g);
  }();
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "line1\n");
  std::unique_lock lock(mu_);
  EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(10), [&] { return follow_ended_; }));
}

TEST_F(AllocApiTest, LogsOnAnotherMachineRedirectToItsAgent) {
  // The agent of machine m2: its own server with its own log source.
  HttpServer m2(HttpServer::Options{});
  ApiContext ctx2;
  ctx2.store = switch_.get();
  ctx2.keys = keys_;
  ctx2.jobs = registry_.get();
  ctx2.machine_id = "m2";
  ctx2.access = std::make_shared<acl::AccessControl>(*switch_, keys_,
                                                     acl::AccessControl::Options{.enforce = false});
  std::string asked;
  ctx2.alloc_logs = [&](const std::string& id, const std::string& task, bool, int64_t tail, bool,
                        bool, const std::function<bool(std::string_view)>& sink) {
    asked = id + "/" + task + " tail " + std::to_string(tail);
    sink("from m2\n");
    return Status::Ok();
  };
  RegisterApiRoutes(m2, ctx2);
  ASSERT_TRUE(m2.Start().ok());
  auto a1 = Alloc("web-frontend-1-bbbb2222", "frontend", 1, "m2");
  PutAlloc(a1);
  PutStatus(Observed(a1));

  // m2 not registered: nowhere to send the client.
  auto [st, got] = StreamAll("/v1/allocs/web-frontend-1/logs?tail=5");
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("not registered"), std::string::npos) << st.message();

  std::string m2_addr = "127.0.0.1:" + std::to_string(m2.port());
  PutMachine("m2", m2_addr);
  auto raw = client_->Call("GET", "/v1/allocs/web-frontend-1/logs?tail=5");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->status, 307);
  EXPECT_EQ(raw->json["location"],
            "http://" + m2_addr + "/v1/allocs/web-frontend-1-bbbb2222/logs?tail=5");
  EXPECT_NE(raw->json["error"].get<std::string>().find("m2"), std::string::npos);

  // An agent that finds itself registered as the allocation's machine must not redirect to
  // itself (it would loop): 503.
  PutMachine("m3", "127.0.0.1:" + std::to_string(server_->port()));
  auto a3 = Alloc("web-frontend-3-ffff6666", "frontend", 3, "m3");
  PutAlloc(a3);
  std::tie(st, got) = StreamAll("/v1/allocs/" + a3.id + "/logs");
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("whose agent is this one"), std::string::npos) << st.message();

  // The client follows the redirect and gets m2's output.
  std::tie(st, got) = StreamAll("/v1/allocs/web-frontend-1/logs?tail=5");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(got, "from m2\n");
  EXPECT_EQ(asked, "web-frontend-1-bbbb2222/server tail 5");
  m2.Stop();
}

class NoLogsAllocApiTest : public AllocApiTest {
 protected:
  NoLogsAllocApiTest() { with_logs_ = false; }
};

TEST_F(NoLogsAllocApiTest, LogsWithoutALogSourceAre503) {
  auto a0 = Alloc("web-frontend-0-aaaa1111", "frontend", 0, "m1");
  PutAlloc(a0);
  auto [st, got] = StreamAll("/v1/allocs/" + a0.id + "/logs");
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("runs no allocations"), std::string::npos) << st.message();
  EXPECT_TRUE(got.empty());
}

using cli::ApiResponse;

// Machine admin settings, the engine leader, deployments and revert: records the engine and
// agents write are written here by the test itself.
class ClusterApiTest : public ApiServiceTest {
 protected:
  void Customize(ApiContext& ctx) override { ctx.clock = clock_; }

  void Put(const std::string& key, const json& value) {
    ASSERT_TRUE(store_->Put(key, value.dump()).ok());
  }
  void PutMachine(const std::string& id) {
    Put(keys_.Machine(id),
        {{"id", id}, {"address", "10.0.0.1:4680"}, {"cpus", 4}, {"eligible", true}});
  }
  // The stored admin settings of a machine.
  engine::MachineAdmin StoredAdmin(const std::string& id) {
    auto kv = store_->Get(keys_.MachineAdmin(id));
    EXPECT_TRUE(kv.ok() && kv->has_value());
    if (!kv.ok() || !kv->has_value()) return {};
    auto a = engine::MachineAdmin::FromJson(json::parse((*kv)->value));
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? *a : engine::MachineAdmin{};
  }
  Result<ApiResponse> PutJson(const std::string& target, const std::string& body) {
    return client_->Call("PUT", target, body, "application/json");
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
};

TEST_F(ClusterApiTest, MachinesShowAdminSettingsAllocationsAndLeader) {
  PutMachine("m1");
  PutMachine("m2");
  Put(keys_.MachineAdmin("m2"), engine::MachineAdmin{false, false, 5}.ToJson());
  Put(keys_.MachineAdmin("m4"), engine::MachineAdmin{true, true, 6}.ToJson());
  Put(keys_.Alloc("m1", "a"), json::object());
  Put(keys_.Alloc("m1", "b"), json::object());
  Put(keys_.Alloc("m3", "c"), json::object());
  Put(keys_.EngineLeader(), engine::LeaderRecord{"m1", "10.0.0.1:4680", 7}.ToJson());

  auto list = client_->CallJson("GET", "/v1/machines");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 4u) << list->dump();
  const json& m1 = (*list)[0];
  EXPECT_EQ(m1["id"], "m1");
  EXPECT_EQ(m1["status"], "ready");
  EXPECT_EQ(m1["cpus"], 4);
  EXPECT_EQ(m1["eligible"], true);
  EXPECT_EQ(m1["drain"], false);
  EXPECT_EQ(m1["allocations"], 2);
  EXPECT_EQ(m1["leader"], true);
  const json& m2 = (*list)[1];
  EXPECT_EQ(m2["eligible"], false);  // the admin record wins over the machine record's field
  EXPECT_EQ(m2["admin_updated_at"], 5);
  EXPECT_EQ(m2["allocations"], 0);
  EXPECT_EQ(m2["leader"], false);
  // Known only by its allocations, or only by its admin settings: down.
  EXPECT_EQ((*list)[2], (json{{"id", "m3"},
                              {"status", "down"},
                              {"eligible", true},
                              {"drain", false},
                              {"admin_updated_at", 0},
                              {"allocations", 1},
                              {"leader", false}}));
  EXPECT_EQ((*list)[3]["id"], "m4");
  EXPECT_EQ((*list)[3]["status"], "down");
  EXPECT_EQ((*list)[3]["drain"], true);

  auto one = client_->CallJson("GET", "/v1/machines/m1");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, m1);
  auto down = client_->CallJson("GET", "/v1/machines/m3");
  ASSERT_TRUE(down.ok());
  EXPECT_EQ((*down)["status"], "down");
  auto missing = client_->Call("GET", "/v1/machines/nosuch");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->json["error"], "machine nosuch not found");

  // An unreadable admin record counts as the defaults; a corrupt leader record loses the mark
  // only.
  Put(keys_.MachineAdmin("m2"), "eligible");
  ASSERT_TRUE(store_->Put(keys_.EngineLeader(), "{").ok());
  list = client_->CallJson("GET", "/v1/machines");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ((*list)[1]["eligible"], true);
  EXPECT_EQ((*list)[0]["leader"], false);
}

TEST_F(ClusterApiTest, DrainAndEligibilityReadModifyWriteTheAdminRecord) {
  PutMachine("m1");
  // An empty body drains.
  auto r = client_->Call("PUT", "/v1/machines/m1/drain");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->json, (json{{"id", "m1"},
                           {"eligible", true},
                           {"drain", true},
                           {"updated_at", clock_->WallMillis()}}));
  EXPECT_EQ(StoredAdmin("m1"), (engine::MachineAdmin{true, true, clock_->WallMillis()}));

  clock_->Advance(std::chrono::seconds(5));
  r = PutJson("/v1/machines/m1/eligibility", R"({"eligible": false})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  // Only eligibility changed: the machine still drains.
  EXPECT_EQ(StoredAdmin("m1"), (engine::MachineAdmin{false, true, clock_->WallMillis()}));
  r = PutJson("/v1/machines/m1/drain", R"({"enable": false})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(StoredAdmin("m1"), (engine::MachineAdmin{false, false, clock_->WallMillis()}));
  r = PutJson("/v1/machines/m1/drain", R"({"enable": true})");
  ASSERT_TRUE(r.ok());
  // `berth machine eligible`: both at once.
  r = PutJson("/v1/machines/m1/eligibility", R"({"eligible": true, "drain": false})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(StoredAdmin("m1"), (engine::MachineAdmin{true, false, clock_->WallMillis()}));
  auto view = client_->CallJson("GET", "/v1/machines/m1");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ((*view)["eligible"], true);
  EXPECT_EQ((*view)["drain"], false);

  // A machine that is down but has settings can still be changed; one never seen cannot.
  ASSERT_TRUE(store_->Delete(keys_.Machine("m1")).ok());
  r = PutJson("/v1/machines/m1/drain", "{}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  r = PutJson("/v1/machines/m9/drain", "{}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->json["error"],
            "machine m9 not found (it is not registered and has no admin settings)");
  auto absent = store_->Get(keys_.MachineAdmin("m9"));
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

TEST_F(ClusterApiTest, AdminBodiesAreCheckedStrictly) {
  PutMachine("m1");
  struct Case {
    std::string target;
    std::string body;
    std::string error;
  };
  const Case cases[] = {
      {"/v1/machines/m1/drain", R"({"enable": "yes"})",
       "request body: \"enable\" must be true or false, got \"yes\""},
      {"/v1/machines/m1/drain", R"({"enabled": true})",
       "request body: unknown field \"enabled\" (expected enable)"},
      {"/v1/machines/m1/drain", "true", "request body: expected a JSON object"},
      {"/v1/machines/m1/drain", "{", "request body: expected a JSON object"},
      {"/v1/machines/m1/eligibility", "{}",
       "request body: \"eligible\" (true or false) is required"},
      {"/v1/machines/m1/eligibility", R"({"eligible": 1})",
       "request body: \"eligible\" must be true or false, got 1"},
      {"/v1/machines/m1/eligibility", R"({"eligible": true, "drain": null})",
       "request body: \"drain\" must be true or false, got null"},
  };
  for (const Case& c : cases) {
    auto r = PutJson(c.target, c.body);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 400) << c.body;
    EXPECT_EQ(r->json["error"], c.error) << c.body;
  }
  // Nothing was written.
  auto kv = store_->Get(keys_.MachineAdmin("m1"));
  ASSERT_TRUE(kv.ok());
  EXPECT_FALSE(kv->has_value());
}

TEST_F(ClusterApiTest, ConcurrentAdminChangesAreNotLost) {
  PutMachine("m1");
  for (int round = 0; round < 10; ++round) {
    ASSERT_TRUE(
        PutJson("/v1/machines/m1/eligibility", R"({"eligible": true, "drain": false})").ok());
    std::thread drain([&] {
      cli::ApiClient c(client_->address());
      EXPECT_EQ(c.Call("PUT", "/v1/machines/m1/drain", "{}", "application/json")->status, 200);
    });
    std::thread ineligible([&] {
      cli::ApiClient c(client_->address());
      EXPECT_EQ(
          c.Call("PUT", "/v1/machines/m1/eligibility", R"({"eligible": false})", "application/json")
              ->status,
          200);
    });
    drain.join();
    ineligible.join();
    engine::MachineAdmin a = StoredAdmin("m1");
    EXPECT_TRUE(a.drain) << "round " << round;
    EXPECT_FALSE(a.eligible) << "round " << round;
  }
}

TEST_F(ClusterApiTest, EngineLeader) {
  auto r = client_->Call("GET", "/v1/engine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->json["error"],
            "no engine leader: no agent holds the engine lease (none running, or an election "
            "is under way)");
  Put(keys_.EngineLeader(), engine::LeaderRecord{"m1", "10.0.0.1:4680", 7}.ToJson());
  auto leader = client_->CallJson("GET", "/v1/engine");
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(*leader, (json{{"machine", "m1"}, {"address", "10.0.0.1:4680"}, {"since", 7}}));
  Put(keys_.EngineLeader(), json{{"address", "x"}});
  r = client_->Call("GET", "/v1/engine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->json["error"].get<std::string>().find("/api-test/engine/leader"), std::string::npos)
      << r->body;
}

TEST_F(ClusterApiTest, JobShowsItsDeploymentAndHistoryItsStableVersion) {
  ASSERT_TRUE(client_->Call("POST", "/v1/jobs", kJob, "application/yaml").ok());
  std::string v2 = kJob;
  v2.replace(v2.find("count: 2"), 8, "count: 3");
  ASSERT_TRUE(client_->Call("POST", "/v1/jobs", v2, "application/yaml").ok());
  auto job = client_->CallJson("GET", "/v1/jobs/web");
  ASSERT_TRUE(job.ok());
  EXPECT_FALSE(job->contains("deployment"));
  auto versions = client_->CallJson("GET", "/v1/jobs/web/versions");
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ((*versions)[0]["stable"], false);
  EXPECT_FALSE((*versions)[1].contains("deployment"));

  engine::Deployment d;
  d.job = "web";
  d.version = 2;
  d.state = engine::DeploymentState::kFailed;
  d.message = "healthy deadline passed";
  d.stable_version = 1;
  d.groups["frontend"] = {3, 2, 1, 1, "0 of 3 machines: 2 lacked memory, 1 is ineligible"};
  Put(keys_.Deployment("web"), d.ToJson());
  job = client_->CallJson("GET", "/v1/jobs/web");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)["deployment"], d.ToJson());
  versions = client_->CallJson("GET", "/v1/jobs/web/versions");
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ((*versions)[0]["stable"], true);
  EXPECT_EQ((*versions)[1]["stable"], false);
  EXPECT_EQ((*versions)[1]["deployment"], "failed");

  // A corrupt deployment record does not hide the job.
  Put(keys_.Deployment("web"), json{{"job", "web"}, {"state", "exploded"}});
  job = client_->CallJson("GET", "/v1/jobs/web");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_FALSE(job->contains("deployment"));
  EXPECT_NE((*job)["deployment_error"].get<std::string>().find("unknown state"), std::string::npos);
}

TEST_F(ClusterApiTest, RevertSubmitsAnOldVersion) {
  ASSERT_TRUE(client_->Call("POST", "/v1/jobs", kJob, "application/yaml").ok());
  std::string v2 = kJob;
  v2.replace(v2.find("count: 2"), 8, "count: 3");
  ASSERT_TRUE(client_->Call("POST", "/v1/jobs", v2, "application/yaml").ok());

  auto r = client_->Call("POST", "/v1/jobs/web/revert", R"({"version": 1})", "application/json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(r->json, (json{{"name", "web"}, {"version", 3}, {"changed", true}}));
  auto job = client_->CallJson("GET", "/v1/jobs/web");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ((*job)["spec"]["groups"][0]["count"], 2);
  r = client_->Call("POST", "/v1/jobs/web/revert", R"({"version": 1})", "application/json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->json["changed"], false);

  r = client_->Call("POST", "/v1/jobs/web/revert", R"({"version": 9})", "application/json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->json["error"], "job web has no version 9 (its versions are 1 to 3)");
  r = client_->Call("POST", "/v1/jobs/nosuch/revert", R"({"version": 1})", "application/json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  for (const char* body : {"", R"({"version": "1"})", R"({"version": 1.5})", R"({"v": 1})"}) {
    r = client_->Call("POST", "/v1/jobs/web/revert", body, "application/json");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 400) << body;
  }
  r = client_->Call("POST", "/v1/jobs/web/revert", R"({"version": 0})", "application/json");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->json["error"], "job web: version must be at least 1, got 0");
}

}  // namespace
}  // namespace berth::api
