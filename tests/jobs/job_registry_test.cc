#include "jobs/job_registry.h"

#include <gtest/gtest.h>

#include <thread>

#include "spec/job_json.h"
#include "store/embedded_store.h"

namespace berth::jobs {
namespace {

spec::Job MakeJob(const std::string& name, int count) {
  spec::Job job;
  job.name = name;
  spec::Group g;
  g.name = "g";
  g.count = count;
  spec::Task t;
  t.name = "t";
  t.driver = spec::DriverKind::kProcess;
  t.command = "/bin/true";
  g.tasks.push_back(t);
  job.groups.push_back(g);
  return job;
}

class JobRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::EmbeddedOptions o;
    o.clock = clock_;
    o.expiry_thread = false;
    auto s = store::EmbeddedStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    registry_ = std::make_unique<JobRegistry>(*store_, keys_, clock_);
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  store::Keys keys_{"/t/"};
  std::unique_ptr<store::EmbeddedStore> store_;
  std::unique_ptr<JobRegistry> registry_;
};

TEST_F(JobRegistryTest, SubmitWritesVersionsAndHistory) {
  auto r1 = registry_->Submit(MakeJob("web", 1));
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->version, 1);
  EXPECT_TRUE(r1->changed);

  auto same = registry_->Submit(MakeJob("web", 1));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->version, 1);
  EXPECT_FALSE(same->changed);

  auto r2 = registry_->Submit(MakeJob("web", 3));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->version, 2);

  auto cur = registry_->Get("web");
  ASSERT_TRUE(cur.ok());
  EXPECT_EQ(cur->version, 2);
  EXPECT_EQ(cur->status, "running");
  auto job = spec::JobFromJson(cur->spec);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(*job, MakeJob("web", 3));

  auto hist = registry_->History("web");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), 2u);
  EXPECT_EQ((*hist)[0].version, 1);
  EXPECT_EQ((*hist)[1].version, 2);
}

TEST_F(JobRegistryTest, StopAndPurge) {
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 1)).ok());
  auto stopped = registry_->Stop("web");
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->version, 2);
  EXPECT_EQ(stopped->status, "stopped");
  // Stopping twice is not a new version.
  EXPECT_EQ(registry_->Stop("web")->version, 2);
  // Submitting again after a stop revives it as a new version, even with the same spec.
  auto again = registry_->Submit(MakeJob("web", 1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->version, 3);
  EXPECT_TRUE(again->changed);

  ASSERT_TRUE(registry_->Purge("web").ok());
  EXPECT_EQ(registry_->Get("web").status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->History("web").status().code(), Code::kNotFound);
  auto all = store_->Range("/t/");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->kvs.empty());
}

TEST_F(JobRegistryTest, RevertSubmitsAnOldSpecAsANewVersion) {
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 1)).ok());
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 3)).ok());
  auto r = registry_->Revert("web", 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->version, 3);
  EXPECT_TRUE(r->changed);
  auto cur = registry_->Get("web");
  ASSERT_TRUE(cur.ok());
  EXPECT_EQ(cur->status, "running");
  EXPECT_EQ(*spec::JobFromJson(cur->spec), MakeJob("web", 1));
  // History only grows: the reverted-to version is still there, and so is the one undone.
  auto hist = registry_->History("web");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), 3u);
  EXPECT_EQ((*hist)[1].spec["groups"][0]["count"], 3);

  // Reverting to what already runs writes nothing, like submitting the same file.
  auto same = registry_->Revert("web", 1);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->version, 3);
  EXPECT_FALSE(same->changed);

  // A stopped job comes back running with the old spec.
  ASSERT_TRUE(registry_->Stop("web").ok());
  auto back = registry_->Revert("web", 2);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->version, 5);
  EXPECT_EQ(registry_->Get("web")->status, "running");
  EXPECT_EQ(*spec::JobFromJson(registry_->Get("web")->spec), MakeJob("web", 3));
}

TEST_F(JobRegistryTest, RevertErrorsNameWhatIsMissing) {
  ASSERT_TRUE(registry_->Submit(MakeJob("web", 1)).ok());
  auto missing = registry_->Revert("web", 9);
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_EQ(missing.status().message(), "job web has no version 9 (its versions are 1 to 1)");
  auto nojob = registry_->Revert("nosuch", 1);
  EXPECT_EQ(nojob.status().code(), Code::kNotFound);
  EXPECT_EQ(nojob.status().message(), "job nosuch not found");
  EXPECT_EQ(registry_->Revert("web", 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->Revert("Bad", 1).status().code(), Code::kInvalidArgument);

  // A corrupt old version is an error naming its key; nothing is written.
  ASSERT_TRUE(store_
                  ->Put(keys_.JobVersion("web", 1),
                        R"({"name":"web","version":1,"status":"running","spec":{"name":"web"}})")
                  .ok());
  auto corrupt = registry_->Revert("web", 1);
  EXPECT_EQ(corrupt.status().code(), Code::kInternal);
  EXPECT_NE(corrupt.status().message().find("/t/job-versions/web/"), std::string::npos)
      << corrupt.status().message();
  EXPECT_EQ(registry_->Get("web")->version, 1);
}

TEST_F(JobRegistryTest, UnknownAndInvalidNames) {
  EXPECT_EQ(registry_->Get("nosuch").status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->Stop("nosuch").status().code(), Code::kNotFound);
  EXPECT_EQ(registry_->Get("Bad/Name").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(registry_->Submit(MakeJob("-x", 1)).status().code(), Code::kInvalidArgument);
}

TEST_F(JobRegistryTest, ConcurrentSubmittersGetDenseVersions) {
  constexpr int kThreads = 4;
  constexpr int kEach = 10;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = registry_->Submit(MakeJob("web", t * 100 + i + 1));
        EXPECT_TRUE(r.ok()) << r.status().ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  auto hist = registry_->History("web");
  ASSERT_TRUE(hist.ok());
  ASSERT_EQ(hist->size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 0; i < hist->size(); ++i) EXPECT_EQ((*hist)[i].version, static_cast<int>(i + 1));
  EXPECT_EQ(registry_->Get("web")->version, kThreads * kEach);
}

TEST_F(JobRegistryTest, CorruptRecordIsAnErrorNotACrash) {
  ASSERT_TRUE(store_->Put(keys_.Job("web"), "{not json").ok());
  auto r = registry_->Get("web");
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_NE(r.status().message().find("/t/jobs/web"), std::string::npos);
  ASSERT_TRUE(store_->Put(keys_.Job("web"), R"({"name": 3})").ok());
  EXPECT_FALSE(registry_->Get("web").ok());
  EXPECT_FALSE(registry_->List().ok());
}

}  // namespace
}  // namespace berth::jobs
