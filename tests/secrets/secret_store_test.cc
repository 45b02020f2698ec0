#include "secrets/secret_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "secrets/machine_secrets.h"
#include "store/embedded_store.h"

namespace berth::secrets {
namespace {

namespace fs = std::filesystem;

class SecretStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto st = store::EmbeddedStore::Open({});
    ASSERT_TRUE(st.ok());
    store_ = std::move(st).value();
    secrets_ = std::make_unique<SecretStore>(*store_, keys_);
    Recipient w;
    w.key = op_.public_key();
    w.writer = true;
    ASSERT_TRUE(secrets_->PutRecipient(w).ok());
    Recipient m;
    m.key = m1_.public_key();
    m.kind = "machine";
    ASSERT_TRUE(secrets_->PutRecipient(m).ok());
    char tmpl[] = "/tmp/berth-secrets-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<PublicKey> All() {
    std::vector<PublicKey> out;
    auto all = secrets_->Recipients();
    for (auto& r : *all) out.push_back(r.key);
    return out;
  }
  std::string SealB64(std::string_view value, const std::string& path, int64_t version,
                      const KeyPair& writer) {
    return Base64Encode(*Seal(value, path, version, All(), writer));
  }

  store::Keys keys_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<SecretStore> secrets_;
  KeyPair op_ = KeyPair::Generate("op");
  KeyPair m1_ = KeyPair::Generate("machine:m1");
  std::string dir_;
};

TEST_F(SecretStoreTest, RecipientsAreListedWithTheirKindAndWriterMark) {
  auto all = secrets_->Recipients();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].key.name, "machine:m1");
  EXPECT_EQ((*all)[0].kind, "machine");
  EXPECT_FALSE((*all)[0].writer);
  EXPECT_EQ((*all)[1].key.name, "op");
  EXPECT_TRUE((*all)[1].writer);
  EXPECT_GT((*all)[1].added_at_ms, 0);
  EXPECT_EQ(secrets_->TrustedWriters()->size(), 1u);
  EXPECT_EQ(secrets_->DeleteRecipient("nobody").code(), Code::kNotFound);
  Recipient bad;
  bad.key = op_.public_key();
  bad.key.name = "a/b";
  EXPECT_EQ(secrets_->PutRecipient(bad).code(), Code::kInvalidArgument);
  // A record someone broke in the store is skipped, not fatal.
  ASSERT_TRUE(store_->Put(keys_.SecretKey("junk"), "{not json").ok());
  EXPECT_EQ(secrets_->Recipients()->size(), 2u);
}

TEST_F(SecretStoreTest, PutChecksTheValueAndFollowsVersions) {
  ASSERT_EQ(*secrets_->Put("db/pw", SealB64("one", "db/pw", 1, op_)), 1);
  // Another writer's seal of version 1 lost the race: the stored version is 1 now.
  auto late = secrets_->Put("db/pw", SealB64("late", "db/pw", 1, op_));
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("at version 1"), std::string::npos);
  ASSERT_EQ(*secrets_->Put("db/pw", SealB64("two", "db/pw", 2, op_)), 2);

  auto forged = secrets_->Put("db/pw", SealB64("evil", "db/pw", 3, KeyPair::Generate("x")));
  EXPECT_EQ(forged.status().code(), Code::kPermissionDenied);
  auto moved = secrets_->Put("web/pw", SealB64("two", "db/pw", 1, op_));
  EXPECT_EQ(moved.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(secrets_->Put("db/pw", "!!").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(secrets_->Put("../x", SealB64("v", "db/pw", 3, op_)).status().code(),
            Code::kInvalidArgument);

  auto got = secrets_->Get("db/pw");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->version, 2);
  EXPECT_EQ(secrets_->Get("db/none").status().code(), Code::kNotFound);
  ASSERT_TRUE(secrets_->Put("db/other", SealB64("o", "db/other", 1, op_)).ok());
  ASSERT_TRUE(secrets_->Put("web/a", SealB64("a", "web/a", 1, op_)).ok());
  auto db = secrets_->List("db/");
  ASSERT_TRUE(db.ok());
  ASSERT_EQ(db->size(), 2u);
  EXPECT_EQ((*db)[0].path, "db/other");
  EXPECT_EQ((*db)[1].path, "db/pw");
  EXPECT_EQ(secrets_->List("")->size(), 3u);
  ASSERT_TRUE(secrets_->Delete("web/a").ok());
  EXPECT_EQ(secrets_->Delete("web/a").code(), Code::kNotFound);
}

TEST_F(SecretStoreTest, TheSourceOpensWhatIsSealedToItAndRefusesAReplay) {
  StoreSecretSource src(*store_, keys_, KeyPair::Generate("machine:m1"), {});
  ASSERT_TRUE(secrets_->Put("db/pw", SealB64("one", "db/pw", 1, op_)).ok());
  EXPECT_EQ(src.Open("db/pw").status().code(), Code::kPermissionDenied) << "another m1 key";

  StoreSecretSource m1(*store_, keys_, std::move(m1_), {});
  auto v1 = m1.Open("db/pw");
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(v1->view(), "one");
  std::string old = secrets_->Get("db/pw")->sealed;
  ASSERT_TRUE(secrets_->Put("db/pw", SealB64("two", "db/pw", 2, op_)).ok());
  EXPECT_EQ(m1.Open("db/pw")->view(), "two");

  // Someone with write access to the store puts the old value back: it is now the key's
  // version 3 but was sealed as version 1.
  ASSERT_TRUE(store_->Put(keys_.Secret("db/pw"), old).ok());
  auto replay = m1.Open("db/pw");
  EXPECT_EQ(replay.status().code(), Code::kInvalidArgument);
  EXPECT_NE(replay.status().message().find("an older value put back"), std::string::npos);
  EXPECT_EQ(m1.Open("db/none").status().code(), Code::kNotFound);
  // Copied to another key by hand: refused.
  ASSERT_TRUE(store_->Put(keys_.Secret("web/pw"), old).ok());
  EXPECT_EQ(m1.Open("web/pw").status().code(), Code::kInvalidArgument);
}

TEST_F(SecretStoreTest, PinnedWritersReplaceTheStoresWriters) {
  ASSERT_TRUE(secrets_->Put("p", SealB64("v", "p", 1, op_)).ok());
  auto other = KeyPair::Generate("pinned");
  StoreSecretSource pinned(*store_, keys_, std::move(m1_), {other.public_key().sign});
  EXPECT_EQ(pinned.Open("p").status().code(), Code::kPermissionDenied);
}

TEST_F(SecretStoreTest, MachineSecretsCreateRegisterAndGuardTheMachineKey) {
  MachineSecretsOptions o{dir_, "m7", ""};
  auto ms = SetUpMachineSecrets(*store_, keys_, o);
  ASSERT_TRUE(ms.ok()) << ms.status().ToString();
  struct stat st {};
  ASSERT_EQ(stat((dir_ + "/keys/machine.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto rec = store_->Get(keys_.SecretKey("machine:m7"));
  ASSERT_TRUE(rec.ok() && rec->has_value());
  auto r = Recipient::FromJson(nlohmann::json::parse((*rec)->value));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, "machine");
  EXPECT_TRUE(r->key.SameKey((*ms)->public_key()));

  // Sealed to the machine after it registered: it opens.
  ASSERT_TRUE(secrets_->Put("app/token", SealB64("tok", "app/token", 1, op_)).ok());
  EXPECT_EQ((*ms)->Open("app/token")->view(), "tok");

  // Restarted: the same key, no new registration write.
  int64_t rev = (*rec)->mod_revision;
  auto again = SetUpMachineSecrets(*store_, keys_, o);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->public_key().SameKey((*ms)->public_key()));
  EXPECT_EQ((*store_->Get(keys_.SecretKey("machine:m7")))->mod_revision, rev);

  // The data dir of another machine: refused.
  auto wrong = SetUpMachineSecrets(*store_, keys_, {dir_, "m8", ""});
  EXPECT_EQ(wrong.status().code(), Code::kFailedPrecondition);
  // A key file others may read: refused.
  ASSERT_EQ(chmod((dir_ + "/keys/machine.key").c_str(), 0644), 0);
  EXPECT_EQ(SetUpMachineSecrets(*store_, keys_, o).status().code(), Code::kPermissionDenied);
}

TEST_F(SecretStoreTest, TrustedWritersFileIsParsedStrictly) {
  std::string f = dir_ + "/writers";
  std::ofstream(f) << "# operators\n" << op_.public_key().ToText() << "\n";
  auto ms = SetUpMachineSecrets(*store_, keys_, {dir_, "m1", f});
  ASSERT_TRUE(ms.ok()) << ms.status().ToString();
  std::ofstream(f) << "garbage\n";
  auto bad = SetUpMachineSecrets(*store_, keys_, {dir_, "m1", f});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos);
  std::ofstream(f) << "# nobody\n";
  EXPECT_NE(
      SetUpMachineSecrets(*store_, keys_, {dir_, "m1", f}).status().message().find("lists no key"),
      std::string::npos);
}

}  // namespace
}  // namespace berth::secrets
