// The secrets endpoints (/v1/secrets, /v1/secret-keys) against an embedded store, through the
// CLI's API client: what is stored is checked, what is listed never carries a value.
#include <gtest/gtest.h>

#include "api/api_service.h"
#include "api/embedded_api_fixture.h"
#include "cli/api_client.h"
#include "secrets/keys.h"
#include "secrets/sealed_value.h"
#include "store/embedded_store.h"

namespace berth::api {
namespace {

using nlohmann::json;
namespace sec = berth::secrets;

class SecretApiTest : public testing::EmbeddedApiFixture {
 protected:
  SecretApiTest() : EmbeddedApiFixture("/secret-test/") {}

  cli::ApiResponse Call(const std::string& method, const std::string& target,
                        const json& body = nullptr) {
    auto r = client_->Call(method, target, body.is_null() ? "" : body.dump(),
                           body.is_null() ? "" : "application/json");
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : cli::ApiResponse{};
  }
  void AddRecipient(const sec::KeyPair& k, bool writer) {
    auto r = Call("PUT", "/v1/secret-keys/" + k.public_key().name,
                  {{"public_key", k.public_key().ToText()}, {"writer", writer}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::string Sealed(std::string_view value, const std::string& path, int64_t version,
                     const sec::KeyPair& writer) {
    return sec::Base64Encode(
        *sec::Seal(value, path, version, {op_.public_key(), m1_.public_key()}, writer));
  }

  sec::KeyPair op_ = sec::KeyPair::Generate("alice");
  sec::KeyPair m1_ = sec::KeyPair::Generate("machine:m1");
};

TEST_F(SecretApiTest, RecipientsAreAddedListedAndRemoved) {
  AddRecipient(op_, true);
  AddRecipient(m1_, false);
  auto list = Call("GET", "/v1/secret-keys");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.json.size(), 2u);
  EXPECT_EQ(list.json[0]["name"], "alice");
  EXPECT_EQ(list.json[0]["kind"], "operator");
  EXPECT_EQ(list.json[0]["writer"], true);
  EXPECT_EQ(list.json[0]["fingerprint"], op_.public_key().Fingerprint());
  EXPECT_EQ(list.json[1]["name"], "machine:m1");
  EXPECT_EQ(list.json[1]["kind"], "machine");

  auto bad = Call("PUT", "/v1/secret-keys/bob", {{"public_key", "ssh-rsa AAAA"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("public_key"), std::string::npos);
  EXPECT_EQ(
      Call("PUT", "/v1/secret-keys/bob", {{"public_key", op_.public_key().ToText()}, {"extra", 1}})
          .status,
      400);
  EXPECT_EQ(Call("DELETE", "/v1/secret-keys/machine:m1").status, 200);
  EXPECT_EQ(Call("DELETE", "/v1/secret-keys/machine:m1").status, 404);
}

TEST_F(SecretApiTest, ValuesAreCheckedStoredListedAndDeleted) {
  AddRecipient(op_, true);
  AddRecipient(m1_, false);
  auto put = Call("PUT", "/v1/secrets/db/prod/password",
                  {{"sealed", Sealed("PLAINTEXT-1", "db/prod/password", 1, op_)}});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.json["version"], 1);

  auto got = Call("GET", "/v1/secrets/db/prod/password");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.json["version"], 1);
  auto opened = sec::OpenSealed(*sec::Base64Decode(got.json["sealed"].get<std::string>()),
                                {"db/prod/password", 1, {op_.public_key().sign}}, m1_);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->view(), "PLAINTEXT-1");

  auto list = Call("GET", "/v1/secrets");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.json.size(), 1u);
  EXPECT_EQ(list.json[0]["path"], "db/prod/password");
  EXPECT_EQ(list.json[0]["writer"], "alice");
  EXPECT_EQ(list.json[0]["size"], 11);
  EXPECT_EQ(list.json[0]["recipients"], json({"alice", "machine:m1"}));
  EXPECT_FALSE(list.json[0].contains("sealed"));
  EXPECT_EQ(Call("GET", "/v1/secrets?prefix=web/").json.size(), 0u);
  EXPECT_EQ(Call("GET", "/v1/secrets?prefix=db/").json.size(), 1u);

  // The same version again (someone else's write won the race): 409.
  auto stale = Call("PUT", "/v1/secrets/db/prod/password",
                    {{"sealed", Sealed("x", "db/prod/password", 1, op_)}});
  EXPECT_EQ(stale.status, 409) << stale.body;
  // Signed by a key that is not a trusted writer: 403.
  auto forged = Call("PUT", "/v1/secrets/db/prod/password",
                     {{"sealed", Sealed("x", "db/prod/password", 2, sec::KeyPair::Generate("e"))}});
  EXPECT_EQ(forged.status, 403) << forged.body;
  // Sealed for another path: 400.
  auto moved = Call("PUT", "/v1/secrets/web/password",
                    {{"sealed", Sealed("x", "db/prod/password", 1, op_)}});
  EXPECT_EQ(moved.status, 400);
  EXPECT_NE(moved.body.find("sealed for"), std::string::npos);
  EXPECT_EQ(Call("PUT", "/v1/secrets/a", {{"sealed", "!!"}}).status, 400);
  EXPECT_EQ(Call("PUT", "/v1/secrets/a", json::object()).status, 400);
  EXPECT_EQ(Call("PUT", "/v1/secrets/a/../b", {{"sealed", "QUFB"}}).status, 400);
  EXPECT_EQ(Call("GET", "/v1/secrets/none").status, 404);

  EXPECT_EQ(Call("DELETE", "/v1/secrets/db/prod/password").status, 200);
  EXPECT_EQ(Call("DELETE", "/v1/secrets/db/prod/password").status, 404);
  EXPECT_EQ(Call("GET", "/v1/secrets").json.size(), 0u);
}

TEST_F(SecretApiTest, NoResponseAndNoStoredByteHoldsThePlaintext) {
  AddRecipient(op_, true);
  AddRecipient(m1_, false);
  const std::string value = "PLAINTEXT-needle-9f1c";
  ASSERT_EQ(
      Call("PUT", "/v1/secrets/app/key", {{"sealed", Sealed(value, "app/key", 1, op_)}}).status,
      200);
  for (const char* t : {"/v1/secrets", "/v1/secrets/app/key", "/v1/secret-keys"}) {
    EXPECT_EQ(Call("GET", t).body.find(value), std::string::npos) << t;
  }
  auto all = store_->Range("");
  ASSERT_TRUE(all.ok());
  for (const auto& kv : all->kvs) {
    EXPECT_EQ(kv.value.find(value), std::string::npos) << kv.key;
  }
}

}  // namespace
}  // namespace berth::api
