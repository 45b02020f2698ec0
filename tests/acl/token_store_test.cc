#include "acl/token_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "store/embedded_store.h"

namespace berth::acl {
namespace {

using nlohmann::json;

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::EmbeddedOptions o;
    o.expiry_thread = false;
    store_ = std::move(*store::EmbeddedStore::Open(o));
  }
  TokenStore Tokens(TokenStore::HashCompare compare = HashesEqual) {
    return TokenStore(*store_, keys_, clock_, std::move(compare));
  }

  store::Keys keys_{"/acl-test/"};
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<store::EmbeddedStore> store_;
};

TEST_F(TokenStoreTest, BootstrapOnceThenAClearRefusalNamingTheReset) {
  TokenStore tokens = Tokens();
  EXPECT_FALSE(*tokens.Bootstrapped());
  auto first = tokens.Bootstrap();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->record.policy, Policy::kAdmin);
  EXPECT_TRUE(first->record.bootstrap);
  EXPECT_TRUE(*tokens.Bootstrapped());
  auto caller = tokens.Authenticate(first->token);
  ASSERT_TRUE(caller.ok()) << caller.status().ToString();
  EXPECT_EQ(caller->policy, Policy::kAdmin);

  auto again = tokens.Bootstrap();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("/acl-test/acl/bootstrap"), std::string::npos)
      << again.status().message();
  EXPECT_NE(again.status().message().find(first->record.accessor), std::string::npos);
  // Only the one admin token was written.
  EXPECT_EQ(tokens.List()->size(), 1u);

  // The documented reset: delete the marker, bootstrap again; the old token still works.
  ASSERT_TRUE(store_->Delete(keys_.AclBootstrap()).ok());
  auto second = tokens.Bootstrap();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(tokens.Authenticate(first->token).ok());
  EXPECT_TRUE(tokens.Authenticate(second->token).ok());
}

TEST_F(TokenStoreTest, ConcurrentBootstrapsMakeExactlyOneToken) {
  std::atomic<int> won{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      TokenStore tokens = Tokens();
      if (tokens.Bootstrap().ok()) ++won;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(Tokens().List()->size(), 1u);
}

TEST_F(TokenStoreTest, TheStoreHoldsAHashNeverTheSecret) {
  TokenStore tokens = Tokens();
  auto t = tokens.Create("ci", Policy::kJobs, "team-a-");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto kv = store_->Get(keys_.AclToken(t->record.accessor));
  ASSERT_TRUE(kv.ok() && *kv);
  const std::string secret = t->token.substr(17);
  EXPECT_EQ((*kv)->value.find(secret), std::string::npos);
  json stored = json::parse((*kv)->value);
  EXPECT_EQ(stored["accessor"], t->record.accessor);
  EXPECT_EQ(stored["name"], "ci");
  EXPECT_EQ(stored["policy"], "jobs");
  EXPECT_EQ(stored["job_prefix"], "team-a-");
  EXPECT_EQ(stored["created_at_ms"], clock_->WallMillis());
  EXPECT_EQ(stored["hash"].get<std::string>().size(), 64u);
}

TEST_F(TokenStoreTest, CreateChecksItsInput) {
  TokenStore tokens = Tokens();
  EXPECT_EQ(tokens.Create("", Policy::kRead, "").status().code(), Code::kInvalidArgument);
  auto prefix_on_read = tokens.Create("x", Policy::kRead, "team-");
  EXPECT_EQ(prefix_on_read.status().code(), Code::kInvalidArgument);
  EXPECT_NE(prefix_on_read.status().message().find("policy jobs"), std::string::npos);
  EXPECT_EQ(tokens.Create("x", Policy::kJobs, "Bad/Prefix").status().code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(tokens.List()->empty());
}

TEST_F(TokenStoreTest, RevokedUnknownAndWrongSecretsAreRefusedAlike) {
  TokenStore tokens = Tokens();
  auto t = tokens.Create("ci", Policy::kRead, "");
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(tokens.Authenticate(t->token).ok());

  NewToken stranger = MakeToken("x", Policy::kAdmin, "", 0);
  auto unknown = tokens.Authenticate(stranger.token);
  EXPECT_EQ(unknown.status().code(), Code::kUnauthenticated);
  // The right accessor with someone else's secret.
  auto wrong = tokens.Authenticate(t->record.accessor + stranger.token.substr(16));
  EXPECT_EQ(wrong.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(tokens.Authenticate("garbage").status().code(), Code::kUnauthenticated);

  auto revoked = tokens.Revoke(t->record.accessor);
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->name, "ci");
  auto after = tokens.Authenticate(t->token);
  EXPECT_EQ(after.status().code(), Code::kUnauthenticated);
  EXPECT_NE(after.status().message().find(t->record.accessor), std::string::npos);
  EXPECT_EQ(after.status().message().find(t->token.substr(17)), std::string::npos);
  EXPECT_EQ(tokens.Revoke(t->record.accessor).status().code(), Code::kNotFound);
}

TEST_F(TokenStoreTest, ACorruptOrMovedRecordRefusesTheToken) {
  TokenStore tokens = Tokens();
  auto a = tokens.Create("a", Policy::kAdmin, "");
  auto b = tokens.Create("b", Policy::kRead, "");
  ASSERT_TRUE(a.ok() && b.ok());
  // b's record copied under a's accessor: b's secret does not open a's key...
  auto b_kv = store_->Get(keys_.AclToken(b->record.accessor));
  ASSERT_TRUE(store_->Put(keys_.AclToken(a->record.accessor), (*b_kv)->value).ok());
  EXPECT_EQ(tokens.Authenticate(a->token).status().code(), Code::kUnauthenticated);
  EXPECT_EQ(tokens.Authenticate(a->record.accessor + b->token.substr(16)).status().code(),
            Code::kUnauthenticated);
  // ... and a record that is not JSON refuses, without crashing.
  ASSERT_TRUE(store_->Put(keys_.AclToken(a->record.accessor), "{not json").ok());
  EXPECT_EQ(tokens.Authenticate(a->token).status().code(), Code::kUnauthenticated);
  // List skips it; revoke still removes it.
  EXPECT_EQ(tokens.List()->size(), 1u);
  EXPECT_TRUE(tokens.Revoke(a->record.accessor).ok());
}

TEST_F(TokenStoreTest, EveryCheckComparesTheFullHashThroughTheConstantTimeCompare) {
  int calls = 0;
  TokenStore tokens = Tokens([&](const TokenHash& x, const TokenHash& y) {
    ++calls;
    return HashesEqual(x, y);
  });
  auto t = tokens.Create("ci", Policy::kRead, "");
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(tokens.Authenticate(t->token).ok());
  EXPECT_EQ(calls, 1);
  // Secrets that differ from the right one in their first or in their last character both go
  // through the compare: nothing short-cuts it.
  std::string token = t->token;
  for (size_t pos : {size_t{17}, token.size() - 2}) {
    std::string wrong = token;
    wrong[pos] = wrong[pos] == 'A' ? 'B' : 'A';
    int before = calls;
    EXPECT_EQ(tokens.Authenticate(wrong).status().code(), Code::kUnauthenticated);
    EXPECT_EQ(calls, before + 1) << pos;
  }
}

}  // namespace
}  // namespace berth::acl
