#include "secrets/keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace berth::secrets {
namespace {

namespace fs = std::filesystem;

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-keys-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Read(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(KeysTest, PublicKeyTextRoundTripsAndNamesWhatIsWrong) {
  auto k = KeyPair::Generate("alice");
  auto text = k.public_key().ToText();
  EXPECT_EQ(text.rfind("berth-pub-v1 alice ", 0), 0u);
  auto back = ParsePublicKey("  " + text + "\n");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->SameKey(k.public_key()));
  EXPECT_EQ(back->name, "alice");
  EXPECT_EQ(back->Fingerprint(), k.public_key().Fingerprint());
  EXPECT_EQ(k.public_key().Fingerprint().size(), 16u);

  EXPECT_NE(ParsePublicKey("ssh-ed25519 AAAA").status().message().find("not a berth public key"),
            std::string::npos);
  auto bad_name = ParsePublicKey("berth-pub-v1 a/b " + text.substr(text.find(' ', 13) + 1));
  EXPECT_NE(bad_name.status().message().find("name"), std::string::npos);
  std::string short_box = "berth-pub-v1 bob QUFB " + text.substr(text.rfind(' ') + 1);
  EXPECT_NE(ParsePublicKey(short_box).status().message().find("X25519"), std::string::npos);
}

TEST_F(KeysTest, KeyFileIsCreated0600AndNeverOverwritten) {
  std::string p = dir_ + "/op.key";
  auto k = KeyPair::Generate("op");
  ASSERT_TRUE(WriteKeyFiles(k, p).ok());
  struct stat st {};
  ASSERT_EQ(stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto pub = ParsePublicKey(Read(p + ".pub"));
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(pub->SameKey(k.public_key()));

  auto again = WriteKeyFiles(KeyPair::Generate("other"), p);
  EXPECT_EQ(again.code(), Code::kAlreadyExists);
  auto loaded = LoadKeyPair(p);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(loaded->public_key().SameKey(k.public_key()));
  EXPECT_EQ(0, std::memcmp(loaded->box_secret(), k.box_secret(), crypto_box_SECRETKEYBYTES));
}

TEST_F(KeysTest, AKeyFileOthersMayReadIsRefused) {
  std::string p = dir_ + "/op.key";
  ASSERT_TRUE(WriteKeyFiles(KeyPair::Generate("op"), p).ok());
  for (mode_t mode : {0640, 0604, 0644, 0660}) {
    ASSERT_EQ(chmod(p.c_str(), mode), 0);
    auto k = LoadKeyPair(p);
    ASSERT_FALSE(k.ok()) << std::oct << mode;
    EXPECT_EQ(k.status().code(), Code::kPermissionDenied);
    EXPECT_NE(k.status().message().find("group or others"), std::string::npos);
    EXPECT_NE(k.status().message().find(p), std::string::npos);
  }
  ASSERT_EQ(chmod(p.c_str(), 0400), 0);
  EXPECT_TRUE(LoadKeyPair(p).ok());
  // A symlink is not followed, a missing file is NotFound.
  ASSERT_EQ(symlink(p.c_str(), (dir_ + "/link.key").c_str()), 0);
  EXPECT_FALSE(LoadKeyPair(dir_ + "/link.key").ok());
  EXPECT_EQ(LoadKeyPair(dir_ + "/none.key").status().code(), Code::kNotFound);
}

TEST_F(KeysTest, PassphraseLocksThePrivateHalves) {
  auto k = KeyPair::Generate("op");
  auto text = k.ToFileText("correct horse");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find("box-secret"), std::string::npos);
  auto none = KeyPair::FromFileText(*text, "", "f");
  EXPECT_EQ(none.status().code(), Code::kPermissionDenied);
  EXPECT_NE(none.status().message().find("passphrase"), std::string::npos);
  auto wrong = KeyPair::FromFileText(*text, "wrong", "f");
  EXPECT_EQ(wrong.status().code(), Code::kPermissionDenied);
  EXPECT_NE(wrong.status().message().find("wrong passphrase"), std::string::npos);
  auto right = KeyPair::FromFileText(*text, "correct horse", "f");
  ASSERT_TRUE(right.ok()) << right.status().ToString();
  EXPECT_EQ(0, std::memcmp(right->sign_secret(), k.sign_secret(), crypto_sign_SECRETKEYBYTES));
}

TEST_F(KeysTest, MalformedKeyFilesAreClearErrors) {
  auto k = KeyPair::Generate("op");
  auto text = *k.ToFileText();
  EXPECT_NE(KeyPair::FromFileText("", "", "f").status().message().find("not a berth secret key"),
            std::string::npos);
  std::string v2 = text;
  v2.replace(v2.find("berth-secret-key-v1"), 19, "berth-secret-key-v9");
  EXPECT_NE(KeyPair::FromFileText(v2, "", "f").status().message().find("unknown key file version"),
            std::string::npos);
  // Public halves swapped for someone else's: refused, else it would seal to them.
  auto other = KeyPair::Generate("mallory");
  auto other_text = *other.ToFileText();
  auto line_of = [](const std::string& t, const std::string& field) {
    auto at = t.find(field);
    return t.substr(at, t.find('\n', at) - at);
  };
  std::string swapped = text;
  swapped.replace(swapped.find(line_of(text, "box-public")), line_of(text, "box-public").size(),
                  line_of(other_text, "box-public"));
  EXPECT_NE(KeyPair::FromFileText(swapped, "", "f").status().message().find("do not match"),
            std::string::npos);
  std::string missing = text;
  missing.erase(missing.find(line_of(text, "sign-secret")), line_of(text, "sign-secret").size());
  EXPECT_NE(KeyPair::FromFileText(missing, "", "f").status().message().find("sign-secret"),
            std::string::npos);
  // Every truncation is an error, never a crash.
  for (size_t n = 0; n < text.size(); n += 7) {
    auto r = KeyPair::FromFileText(text.substr(0, n), "", "f");
    EXPECT_FALSE(r.ok()) << n;
  }
}

TEST(Base64Test, RoundTripAndStrictDecoding) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_FALSE(Base64Decode("QUJD!").ok());
  EXPECT_FALSE(Base64Decode("QUJD QUJD").ok());
  EXPECT_FALSE(Base64Decode("QUI").ok());
}

}  // namespace
}  // namespace berth::secrets
