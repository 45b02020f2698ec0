#include "acl/access_control.h"

#include <gtest/gtest.h>

#include "store/embedded_store.h"

namespace berth::acl {
namespace {

using std::chrono::seconds;

class AccessControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::EmbeddedOptions o;
    o.expiry_thread = false;
    store_ = std::move(*store::EmbeddedStore::Open(o));
  }
  std::unique_ptr<AccessControl> Make(bool enforce = true, int max_failures = 3) {
    AccessControl::Options o;
    o.enforce = enforce;
    o.clock = clock_;
    o.limits.max_failures = max_failures;
    o.limits.window = seconds(10);
    return std::make_unique<AccessControl>(*store_, keys_, o);
  }
  std::string Bearer(const std::string& token) { return "Bearer " + token; }

  store::Keys keys_{"/ac-test/"};
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<store::EmbeddedStore> store_;
};

TEST_F(AccessControlTest, TheDecisionTable) {
  auto ac = Make(true, 0);
  auto read = ac->tokens().Create("r", Policy::kRead, "");
  auto jobs = ac->tokens().Create("j", Policy::kJobs, "team-");
  auto admin = ac->tokens().Create("a", Policy::kAdmin, "");
  ASSERT_TRUE(read.ok() && jobs.ok() && admin.ok());
  const std::string remote = "10.1.2.3:5555";

  // Public: no token looked at, even a bad one.
  EXPECT_TRUE(ac->Check("", remote, Permission::Public(), "", "GET /v1/health").allowed());
  EXPECT_TRUE(ac->Check("Bearer junk", remote, Permission::Public(), "", "x").allowed());

  for (const char* header : {"", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc",
                             "Bearer not-a-token"}) {
    Verdict v = ac->Check(header, remote, Permission::Read(), "", "GET /v1/jobs");
    EXPECT_EQ(v.status.code(), Code::kUnauthenticated) << "[" << header << "]";
    EXPECT_FALSE(v.rate_limited);
  }
  Verdict none = ac->Check("", remote, Permission::Read(), "", "GET /v1/jobs");
  EXPECT_NE(none.status.message().find("BERTH_TOKEN"), std::string::npos);

  // The scheme is case-insensitive, spaces around the token are tolerated.
  Verdict ok = ac->Check("bearer  " + read->token + " ", remote, Permission::Read(), "", "x");
  ASSERT_TRUE(ok.allowed()) << ok.status.ToString();
  EXPECT_EQ(ok.caller.name, "r");
  EXPECT_EQ(ok.caller.policy, Policy::kRead);

  Verdict denied =
      ac->Check(Bearer(read->token), remote, Permission::Admin(), "", "PUT /v1/machines/m1/drain");
  EXPECT_EQ(denied.status.code(), Code::kPermissionDenied);
  EXPECT_NE(denied.status.message().find("PUT /v1/machines/m1/drain"), std::string::npos);
  EXPECT_NE(denied.status.message().find("admin policy"), std::string::npos);

  // Job prefix from the route's parameter.
  EXPECT_TRUE(
      ac->Check(Bearer(jobs->token), remote, Permission::Jobs("name"), "team-web", "x").allowed());
  EXPECT_EQ(
      ac->Check(Bearer(jobs->token), remote, Permission::Jobs("name"), "web", "x").status.code(),
      Code::kPermissionDenied);
  // Named in the body: let in here, the handler checks Caller::MayChangeJob.
  Verdict body = ac->Check(Bearer(jobs->token), remote, Permission::JobsNamedInBody(), "", "x");
  ASSERT_TRUE(body.allowed());
  EXPECT_EQ(body.caller.MayChangeJob("web").code(), Code::kPermissionDenied);
  EXPECT_EQ(ac->Check(Bearer(jobs->token), remote, Permission::Secrets(), "", "x").status.code(),
            Code::kPermissionDenied);
  for (Permission p : {Permission::Read(), Permission::Jobs("name"), Permission::Secrets(),
                       Permission::Admin(), Permission::AnyToken()}) {
    EXPECT_TRUE(ac->Check(Bearer(admin->token), remote, p, "anything", "x").allowed());
  }
}

TEST_F(AccessControlTest, RepeatedFailuresFromOneAddressAreRateLimitedThenForgiven) {
  auto ac = Make(true, 3);
  auto good = ac->tokens().Create("r", Policy::kRead, "");
  ASSERT_TRUE(good.ok());
  const std::string bad = "Bearer " + MakeToken("x", Policy::kAdmin, "", 0).token;
  for (int i = 0; i < 3; ++i) {
    Verdict v = ac->Check(bad, "10.0.0.9:1000", Permission::Read(), "", "GET /v1/jobs");
    EXPECT_EQ(v.status.code(), Code::kUnauthenticated);
    EXPECT_FALSE(v.rate_limited);
  }
  // Now even a good token from that address is refused before it is looked at...
  Verdict limited = ac->Check(Bearer(good->token), "10.0.0.9:1001", Permission::Read(), "", "x");
  EXPECT_TRUE(limited.rate_limited);
  EXPECT_FALSE(limited.allowed());
  EXPECT_EQ(limited.retry_after, seconds(10));
  // ... while another address is served,
  EXPECT_TRUE(ac->Check(Bearer(good->token), "10.0.0.8:1", Permission::Read(), "", "x").allowed());
  // and 403s (a valid token) do not count as failures.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(
        ac->Check(Bearer(good->token), "10.0.0.7:1", Permission::Admin(), "", "x").status.code(),
        Code::kPermissionDenied);
  }
  EXPECT_TRUE(ac->Check(Bearer(good->token), "10.0.0.7:1", Permission::Read(), "", "x").allowed());

  clock_->Advance(seconds(4));
  EXPECT_EQ(ac->Check(Bearer(good->token), "10.0.0.9:1", Permission::Read(), "", "x").retry_after,
            seconds(6));
  clock_->Advance(seconds(6));
  EXPECT_TRUE(ac->Check(Bearer(good->token), "10.0.0.9:1", Permission::Read(), "", "x").allowed());
}

TEST_F(AccessControlTest, NotEnforcingLetsEveryoneInAsAnonymousAdmin) {
  auto ac = Make(false);
  EXPECT_FALSE(ac->enforcing());
  Verdict v = ac->Check("", "127.0.0.1:1", Permission::Admin(), "", "x");
  ASSERT_TRUE(v.allowed());
  EXPECT_TRUE(v.caller.anonymous);
  EXPECT_EQ(v.caller.policy, Policy::kAdmin);
  EXPECT_TRUE(v.caller.MayChangeJob("anything").ok());
}

TEST_F(AccessControlTest, AStoreThatCannotBeReadIsUnavailableNotAFailure) {
  // A store whose every call fails: the check says so (503), and no failure is counted.
  class DownStore final : public store::Store {
   public:
    Result<std::optional<store::KeyValue>> Get(std::string_view) override { return Down(); }
    Result<store::RangeResult> Range(std::string_view, int64_t) override { return Down(); }
    Result<int64_t> Put(std::string_view, std::string_view, store::LeaseId) override {
      return Down();
    }
    Result<int64_t> Delete(std::string_view) override { return Down(); }
    Result<int64_t> DeletePrefix(std::string_view) override { return Down(); }
    Result<store::TxnResult> Txn(const std::vector<store::Compare>&,
                                 const std::vector<store::TxnOp>&,
                                 const std::vector<store::TxnOp>&) override {
      return Down();
    }
    Result<store::LeaseId> GrantLease(std::chrono::seconds) override { return Down(); }
    Result<std::chrono::seconds> KeepAlive(store::LeaseId) override { return Down(); }
    Status RevokeLease(store::LeaseId) override { return Down(); }
    Result<store::WatchPtr> Watch(std::string_view, int64_t, store::WatchCallback) override {
      return Down();
    }
    Status Compact(int64_t) override { return Down(); }
    std::string Describe() const override { return "down"; }

   private:
    static Status Down() { return Unavailable("store down"); }
  } down;
  AccessControl::Options o;
  o.clock = clock_;
  o.limits.max_failures = 1;
  AccessControl ac(down, keys_, o);
  const std::string token = "Bearer " + MakeToken("x", Policy::kAdmin, "", 0).token;
  for (int i = 0; i < 3; ++i) {
    Verdict v = ac.Check(token, "10.0.0.1:1", Permission::Read(), "", "x");
    EXPECT_EQ(v.status.code(), Code::kUnavailable);
    EXPECT_FALSE(v.rate_limited);
  }
}

TEST(RemoteAddressTest, DropsThePort) {
  EXPECT_EQ(RemoteAddress("10.0.0.1:5000"), "10.0.0.1");
  EXPECT_EQ(RemoteAddress("::1:5000"), "::1");
  EXPECT_EQ(RemoteAddress("weird"), "weird");
}

}  // namespace
}  // namespace berth::acl
