#include "scheduler/version_constraint.h"

#include <gtest/gtest.h>

namespace berth::scheduler {
namespace {

bool Matches(const char* constraint, const char* version) {
  auto vc = VersionConstraint::Parse(constraint);
  EXPECT_TRUE(vc.ok()) << constraint << ": " << vc.status().ToString();
  return vc.ok() && vc->Matches(version);
}

TEST(VersionTest, Parse) {
  EXPECT_EQ(ParseVersion("1.2.3"), (Version{1, 2, 3}));
  EXPECT_EQ(ParseVersion("v2"), (Version{2}));
  EXPECT_EQ(ParseVersion("6.1.0-18-amd64"), (Version{6, 1, 0}));
  EXPECT_EQ(ParseVersion(" 1.10 "), (Version{1, 10}));
  EXPECT_EQ(ParseVersion("1.2."), (Version{1, 2}));
  EXPECT_EQ(ParseVersion("abc"), std::nullopt);
  EXPECT_EQ(ParseVersion(""), std::nullopt);
}

TEST(VersionTest, CompareIsNumericWithMissingPartsZero) {
  EXPECT_LT(CompareVersions({1, 9}, {1, 10}), 0);
  EXPECT_EQ(CompareVersions({2}, {2, 0, 0}), 0);
  EXPECT_GT(CompareVersions({2, 0, 1}, {2}), 0);
}

TEST(VersionConstraintTest, Operators) {
  EXPECT_TRUE(Matches(">= 1.2, < 2", "1.2"));
  EXPECT_TRUE(Matches(">= 1.2, < 2", "1.10.3"));
  EXPECT_FALSE(Matches(">= 1.2, < 2", "2.0"));
  EXPECT_FALSE(Matches(">= 1.2, < 2", "1.1.9"));
  EXPECT_TRUE(Matches("> 1.2", "1.2.1"));
  EXPECT_FALSE(Matches("> 1.2", "1.2.0"));
  EXPECT_TRUE(Matches("<= 3", "3.0.0"));
  EXPECT_FALSE(Matches("<= 3", "3.0.1"));
  EXPECT_TRUE(Matches("= 1.2", "1.2.0"));
  EXPECT_TRUE(Matches("== 1.2", "1.2"));
  EXPECT_TRUE(Matches("1.2", "1.2"));
  EXPECT_FALSE(Matches("1.2", "1.3"));
  EXPECT_TRUE(Matches("!= 1.2", "1.3"));
  EXPECT_FALSE(Matches("!= 1.2", "1.2.0"));
  EXPECT_TRUE(Matches(">= 6.1", "6.18.44-fc-v782"));  // kernel.version style
}

TEST(VersionConstraintTest, Pessimistic) {
  EXPECT_TRUE(Matches("~> 1.2", "1.9"));
  EXPECT_FALSE(Matches("~> 1.2", "2.0"));
  EXPECT_FALSE(Matches("~> 1.2", "1.1"));
  EXPECT_TRUE(Matches("~> 1.2.3", "1.2.9"));
  EXPECT_FALSE(Matches("~> 1.2.3", "1.3.0"));
  EXPECT_TRUE(Matches("~> 1", "7"));
}

TEST(VersionConstraintTest, ValuesWithoutAVersionNeverMatch) {
  EXPECT_FALSE(Matches("!= 1.2", "unknown"));
  EXPECT_FALSE(Matches(">= 0", ""));
}

TEST(VersionConstraintTest, MalformedConstraints) {
  for (const char* bad : {"", ">=", ">= 1,", ">= x", "1.2, , 3", "=> 1"}) {
    EXPECT_FALSE(VersionConstraint::Parse(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace berth::scheduler
