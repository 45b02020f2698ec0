#include "acl/policy.h"

#include <gtest/gtest.h>

namespace berth::acl {
namespace {

TEST(PolicyTest, NamesRoundTripAndUnknownOnesAreNamed) {
  for (Policy p : {Policy::kRead, Policy::kJobs, Policy::kSecrets, Policy::kAdmin}) {
    auto back = ParsePolicy(PolicyName(p));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, p);
  }
  auto bad = ParsePolicy("root");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("\"root\""), std::string::npos);
  EXPECT_NE(bad.status().message().find("read, jobs, secrets or admin"), std::string::npos);
}

TEST(PolicyTest, WhatEachPolicyGrants) {
  struct Row {
    Policy policy;
    bool read, jobs, secrets, admin;
  };
  for (const Row& r :
       {Row{Policy::kRead, true, false, false, false}, Row{Policy::kJobs, true, true, false, false},
        Row{Policy::kSecrets, true, false, true, false},
        Row{Policy::kAdmin, true, true, true, true}}) {
    SCOPED_TRACE(std::string(PolicyName(r.policy)));
    EXPECT_TRUE(Grants(r.policy, Need::kNone));
    EXPECT_TRUE(Grants(r.policy, Need::kToken));
    EXPECT_EQ(Grants(r.policy, Need::kRead), r.read);
    EXPECT_EQ(Grants(r.policy, Need::kJobs), r.jobs);
    EXPECT_EQ(Grants(r.policy, Need::kSecrets), r.secrets);
    EXPECT_EQ(Grants(r.policy, Need::kAdmin), r.admin);
  }
}

Caller MakeCaller(std::string name, Policy policy, std::string job_prefix = "") {
  Caller c;
  c.accessor = "0123456789abcdef";
  c.name = std::move(name);
  c.policy = policy;
  c.job_prefix = std::move(job_prefix);
  return c;
}

TEST(PolicyTest, JobPrefixLimitsWhichJobsMayChange) {
  Caller c = MakeCaller("ci", Policy::kJobs, "team-a-");
  EXPECT_TRUE(c.MayChangeJob("team-a-web").ok());
  EXPECT_TRUE(c.MayChangeJob("team-a-").ok());
  Status st = c.MayChangeJob("team-b-web");
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_NE(st.message().find("team-a-"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("0123456789abcdef"), std::string::npos) << st.message();
  EXPECT_EQ(c.MayChangeJob("team").code(), Code::kPermissionDenied);

  Caller all = MakeCaller("deployer", Policy::kJobs);
  EXPECT_TRUE(all.MayChangeJob("anything").ok());
  Caller admin = MakeCaller("root", Policy::kAdmin);
  EXPECT_TRUE(admin.MayChangeJob("anything").ok());
  for (Policy p : {Policy::kRead, Policy::kSecrets}) {
    Caller c2 = MakeCaller("x", p);
    EXPECT_EQ(c2.MayChangeJob("web").code(), Code::kPermissionDenied);
  }
}

TEST(PolicyTest, PermissionsDescribeThemselves) {
  EXPECT_EQ(Permission::Read().Describe(), "read");
  EXPECT_EQ(Permission::Jobs("name").Describe(), "jobs (job from :name)");
  EXPECT_EQ(Permission::JobsNamedInBody().Describe(), "jobs (job named in the body)");
  EXPECT_EQ(Permission::Public().need, Need::kNone);
  EXPECT_EQ(Permission::AnyToken().need, Need::kToken);
  // A permission left at its default asks for the most, not the least.
  EXPECT_EQ(Permission{}.need, Need::kAdmin);
}

}  // namespace
}  // namespace berth::acl
