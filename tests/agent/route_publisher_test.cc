// RoutePublisher: routes appear for running, healthy routed tasks, under the machine lease, and
// go away when the task stops, turns unhealthy, or its allocation is closed.
#include "agent/route_publisher.h"

#include <gtest/gtest.h>

#include <atomic>

#include "store/store_factory.h"

namespace berth::agent {
namespace {

using runtime::RunState;

runtime::Allocation RoutedAlloc() {
  runtime::Allocation a;
  a.id = "web-g-0-abc";
  a.job = "web";
  a.group = "g";
  a.machine = "m1";
  spec::Group g;
  g.name = "g";
  spec::Task t;
  t.name = "server";
  t.ports.push_back({"http", 0, 0});
  t.route = spec::Route{{"web.example.com", "*.web.test"}, "http", "/api"};
  g.tasks.push_back(t);
  spec::Task plain;
  plain.name = "sidecar";
  g.tasks.push_back(plain);
  a.spec.name = "web";
  a.spec.groups.push_back(g);
  return a;
}

runtime::AllocStatus StatusWith(RunState state, const std::string& health) {
  runtime::AllocStatus s;
  s.id = "web-g-0-abc";
  runtime::TaskReport r;
  r.name = "server";
  r.state = state;
  r.health = health;
  r.ports["http"] = 20005;
  s.tasks.push_back(r);
  return s;
}

class RoutePublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*store::OpenStore("memory:"));
    lease_ = *store_->GrantLease(std::chrono::seconds(30));
  }
  std::vector<store::KeyValue> Routes() { return store_->Range(keys_.Routes())->kvs; }

  store::StorePtr store_;
  store::Keys keys_;
  std::atomic<store::LeaseId> lease_{0};
};

TEST_F(RoutePublisherTest, HealthyRunningTaskGetsARoutePerHostUnderTheLease) {
  RoutePublisher p(*store_, keys_, "10.1.2.3", [&] { return lease_.load(); });
  auto alloc = RoutedAlloc();
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kPending, "unknown")).ok());
  EXPECT_TRUE(Routes().empty());
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRunning, "unknown")).ok());
  EXPECT_TRUE(Routes().empty());  // checked, not healthy yet
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRunning, "healthy")).ok());
  auto routes = Routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].key, "/berth/routes/*.web.test/web-g-0-abc-server");
  EXPECT_EQ(routes[1].key, "/berth/routes/web.example.com/web-g-0-abc-server");
  auto v = nlohmann::json::parse(routes[0].value);
  EXPECT_EQ(v["backend"], "http://10.1.2.3:20005");
  EXPECT_EQ(v["path_prefix"], "/api");
  EXPECT_EQ(v["alloc"], "web-g-0-abc");
  EXPECT_EQ(routes[0].lease, lease_.load());

  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRunning, "unhealthy")).ok());
  EXPECT_TRUE(Routes().empty());
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRunning, "healthy")).ok());
  EXPECT_EQ(Routes().size(), 2u);
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRestarting, "healthy")).ok());
  EXPECT_TRUE(Routes().empty());
}

TEST_F(RoutePublisherTest, ClosedAllocationLosesItsRoutesForGood) {
  RoutePublisher p(*store_, keys_, "127.0.0.1", [&] { return lease_.load(); });
  auto alloc = RoutedAlloc();
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRunning, "healthy")).ok());
  ASSERT_EQ(Routes().size(), 2u);
  p.Close(alloc.id);
  EXPECT_TRUE(Routes().empty());
  // A status still in flight from the runner does not bring them back.
  ASSERT_TRUE(p.Sync(alloc, StatusWith(RunState::kRunning, "healthy")).ok());
  EXPECT_TRUE(Routes().empty());
}

TEST_F(RoutePublisherTest, NewLeaseGetsTheRoutesAgainAndNoLeaseWritesNothing) {
  lease_ = 0;
  RoutePublisher p(*store_, keys_, "127.0.0.1", [&] { return lease_.load(); });
  auto alloc = RoutedAlloc();
  EXPECT_FALSE(p.Sync(alloc, StatusWith(RunState::kRunning, "healthy")).ok());
  EXPECT_TRUE(Routes().empty());  // never without a lease: it would outlive the machine
  lease_ = *store_->GrantLease(std::chrono::seconds(30));
  p.Refresh();
  ASSERT_EQ(Routes().size(), 2u);
  // The machine registers again: the routes move to the new lease.
  store::LeaseId old = lease_;
  lease_ = *store_->GrantLease(std::chrono::seconds(30));
  p.Refresh();
  ASSERT_TRUE(store_->RevokeLease(old).ok());
  auto routes = Routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].lease, lease_.load());
}

}  // namespace
}  // namespace berth::agent
