#include "acl/token.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <set>

namespace berth::acl {
namespace {

using nlohmann::json;

TEST(TokenTest, MadeTokensParseAndHashToTheirRecord) {
  NewToken t = MakeToken("ci", Policy::kJobs, "team-a-", 1234);
  ASSERT_EQ(t.token.size(), 16u + 1 + 43);
  EXPECT_EQ(t.token.substr(0, 16), t.record.accessor);
  EXPECT_EQ(t.token[16], '.');
  auto p = ParseToken(t.token);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->accessor, t.record.accessor);
  EXPECT_TRUE(HashesEqual(HashSecret(p->secret), t.record.hash));
  EXPECT_EQ(t.record.name, "ci");
  EXPECT_EQ(t.record.policy, Policy::kJobs);
  EXPECT_EQ(t.record.job_prefix, "team-a-");
  EXPECT_EQ(t.record.created_at_ms, 1234);
}

TEST(TokenTest, TokensAreRandom) {
  std::set<std::string> tokens, accessors;
  for (int i = 0; i < 100; ++i) {
    NewToken t = MakeToken("x", Policy::kRead, "", 0);
    tokens.insert(t.token);
    accessors.insert(t.record.accessor);
  }
  EXPECT_EQ(tokens.size(), 100u);
  EXPECT_EQ(accessors.size(), 100u);
}

TEST(TokenTest, MalformedTokensAreClearErrorsThatNeverEchoTheSecret) {
  NewToken t = MakeToken("x", Policy::kRead, "", 0);
  const std::string secret = t.token.substr(17);
  struct Case {
    std::string token;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "ACCESSOR.SECRET"},
           {"nodot", "ACCESSOR.SECRET"},
           {"0123." + secret, "16 lower-case hex"},
           {"0123456789ABCDEF." + secret, "16 lower-case hex"},
           {"0123456789abcdeg." + secret, "16 lower-case hex"},
           {t.record.accessor + "." + secret.substr(1), "43 base64url"},
           {t.record.accessor + "." + secret + "A", "43 base64url"},
           {t.record.accessor + "." + secret.substr(0, 42) + "+", "43 base64url"},
           {t.record.accessor + "." + secret.substr(0, 42) + "=", "43 base64url"},
           {t.record.accessor + ".", "43 base64url"},
           {std::string(5000, 'a'), "ACCESSOR.SECRET"},
           {std::string("0123456789abcdef.\0\0\0", 20), "43 base64url"},
       }) {
    auto p = ParseToken(c.token);
    ASSERT_FALSE(p.ok()) << c.token;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
    EXPECT_NE(p.status().message().find(c.says), std::string::npos) << p.status().message();
    EXPECT_EQ(p.status().message().find(secret.substr(0, 20)), std::string::npos);
  }
}

TEST(TokenTest, RecordJsonKeepsTheHashNeverTheSecret) {
  NewToken t = MakeToken("ops", Policy::kAdmin, "", 99);
  json stored = t.record.ToJson(/*with_hash=*/true);
  EXPECT_EQ(stored.dump().find(t.token.substr(17)), std::string::npos);
  ASSERT_TRUE(stored.contains("hash"));
  // The hash is BLAKE2b-256 of the 32 decoded secret bytes, in hex.
  auto p = ParseToken(t.token);
  ASSERT_TRUE(p.ok());
  unsigned char h[32];
  crypto_generichash(h, sizeof(h), p->secret.data(), p->secret.size(), nullptr, 0);
  char hex[65];
  sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
  EXPECT_EQ(stored["hash"], std::string(hex));

  auto back = TokenRecord::FromJson(stored, "k");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->accessor, t.record.accessor);
  EXPECT_EQ(back->name, "ops");
  EXPECT_EQ(back->policy, Policy::kAdmin);
  EXPECT_TRUE(HashesEqual(back->hash, t.record.hash));
  EXPECT_EQ(back->created_at_ms, 99);

  json shown = t.record.ToJson(/*with_hash=*/false);
  EXPECT_FALSE(shown.contains("hash"));
}

TEST(TokenTest, BadRecordsNameTheField) {
  json good = MakeToken("ops", Policy::kRead, "", 1).record.ToJson(true);
  struct Case {
    const char* field;
    json value;  // null: removed
    const char* says;
  };
  for (const Case& c : std::vector<Case>{{"policy", "root", "policy \"root\""},
                                         {"hash", "abcd", "\"hash\" must be 64 hex"},
                                         {"hash", std::string(64, 'z'), "\"hash\" must be 64 hex"},
                                         {"name", 5, "\"name\" must be a string"},
                                         {"created_at_ms", nullptr, "created_at_ms"},
                                         {"accessor", nullptr, "\"accessor\""}}) {
    json j = good;
    if (c.value.is_null()) {
      j.erase(c.field);
    } else {
      j[c.field] = c.value;
    }
    auto r = TokenRecord::FromJson(j, "acl/tokens/x");
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("acl/tokens/x"), std::string::npos);
  }
  EXPECT_FALSE(TokenRecord::FromJson(json::array(), "k").ok());
}

TEST(TokenTest, HashesEqualIsExactAndUsesEveryByte) {
  TokenHash a{};
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<unsigned char>(i);
  TokenHash b = a;
  EXPECT_TRUE(HashesEqual(a, b));
  for (size_t i : {size_t{0}, size_t{15}, a.size() - 1}) {
    TokenHash c = a;
    c[i] ^= 1;
    EXPECT_FALSE(HashesEqual(a, c)) << i;
  }
}

TEST(TokenTest, NamesAndPrefixesAreChecked) {
  EXPECT_TRUE(CheckTokenName("ci deploy (team a)").ok());
  EXPECT_FALSE(CheckTokenName("").ok());
  EXPECT_FALSE(CheckTokenName(std::string(129, 'a')).ok());
  EXPECT_FALSE(CheckTokenName("line\nbreak").ok());
  EXPECT_TRUE(CheckJobPrefix("").ok());
  EXPECT_TRUE(CheckJobPrefix("team-a-").ok());
  EXPECT_FALSE(CheckJobPrefix("Team").ok());
  EXPECT_FALSE(CheckJobPrefix("a/b").ok());
}

}  // namespace
}  // namespace berth::acl
