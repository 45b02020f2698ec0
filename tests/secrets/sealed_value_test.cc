#include "secrets/sealed_value.h"

#include <gtest/gtest.h>

#include <set>

namespace berth::secrets {
namespace {

struct Fixture {
  KeyPair writer = KeyPair::Generate("op");
  KeyPair m1 = KeyPair::Generate("machine:m1");
  KeyPair m2 = KeyPair::Generate("machine:m2");
  KeyPair outsider = KeyPair::Generate("machine:m9");
  std::vector<PublicKey> recipients() const {
    return {writer.public_key(), m1.public_key(), m2.public_key()};
  }
  OpenExpectations expect(std::string_view path, int64_t version) const {
    return {path, version, {writer.public_key().sign}};
  }
};

TEST(SealedValueTest, RoundTripForEveryRecipient) {
  Fixture f;
  const std::string value = "s3cr3t\nwith\0bytes";
  auto sealed = Seal(value, "db/password", 1, f.recipients(), f.writer);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->find("s3cr3t"), std::string::npos) << "no plaintext in the encoding";
  for (const KeyPair* reader : {&f.writer, &f.m1, &f.m2}) {
    auto open = OpenSealed(*sealed, f.expect("db/password", 1), *reader);
    ASSERT_TRUE(open.ok()) << open.status().ToString();
    EXPECT_EQ(open->view(), value);
  }
  auto parsed = ParseSealed(*sealed);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->path, "db/password");
  EXPECT_EQ(parsed->version, 1);
  EXPECT_EQ(parsed->recipients.size(), 3u);
  EXPECT_EQ(parsed->plaintext_size(), value.size());
  EXPECT_TRUE(parsed->SealedTo(f.m1.public_key().box));
  EXPECT_FALSE(parsed->SealedTo(f.outsider.public_key().box));
}

TEST(SealedValueTest, EmptyAndLargestValues) {
  Fixture f;
  auto empty = Seal("", "a", 1, f.recipients(), f.writer);
  ASSERT_TRUE(empty.ok());
  auto open = OpenSealed(*empty, f.expect("a", 1), f.m1);
  ASSERT_TRUE(open.ok()) << open.status().ToString();
  EXPECT_TRUE(open->empty());
  std::string big(kMaxSecretBytes, 'x');
  auto max = Seal(big, "a", 1, f.recipients(), f.writer);
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(OpenSealed(*max, f.expect("a", 1), f.m2)->size(), big.size());
  EXPECT_EQ(Seal(big + "x", "a", 1, f.recipients(), f.writer).status().code(), Code::kTooLarge);
}

TEST(SealedValueTest, NotARecipientOrAnUntrustedWriterIsDenied) {
  Fixture f;
  auto sealed = *Seal("v", "p", 1, f.recipients(), f.writer);
  auto r = OpenSealed(sealed, f.expect("p", 1), f.outsider);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_NE(r.status().message().find("not sealed to machine:m9"), std::string::npos);
  EXPECT_NE(r.status().message().find(f.outsider.public_key().Fingerprint()), std::string::npos);

  // Someone holding only public keys seals a value of their own: no trusted writer signed it.
  auto forged = *Seal("evil", "p", 1, f.recipients(), f.outsider);
  auto fr = OpenSealed(forged, f.expect("p", 1), f.m1);
  EXPECT_EQ(fr.status().code(), Code::kPermissionDenied);
  EXPECT_NE(fr.status().message().find("not a trusted writer"), std::string::npos);
  OpenExpectations nobody{"p", 1, {}};
  EXPECT_EQ(OpenSealed(sealed, nobody, f.m1).status().code(), Code::kPermissionDenied);
}

TEST(SealedValueTest, AValueCopiedToAnotherPathOrPutBackAsOlderFails) {
  Fixture f;
  auto sealed = *Seal("v", "db/password", 3, f.recipients(), f.writer);
  auto moved = OpenSealed(sealed, f.expect("web/password", 3), f.m1);
  EXPECT_EQ(moved.status().code(), Code::kInvalidArgument);
  EXPECT_NE(moved.status().message().find("sealed for 'db/password'"), std::string::npos);
  auto replayed = OpenSealed(sealed, f.expect("db/password", 5), f.m1);
  EXPECT_EQ(replayed.status().code(), Code::kInvalidArgument);
  EXPECT_NE(replayed.status().message().find("sealed as version 3"), std::string::npos);
  EXPECT_TRUE(OpenSealed(sealed, f.expect("db/password", 3), f.m1).ok());
}

// The tamper matrix: every byte flipped, one at a time, in every way that matters, is an
// error (never a crash, never a value); and so is every truncation and every extension.
TEST(SealedValueTest, AnyByteFlippedTruncatedOrAppendedIsAnError) {
  Fixture f;
  auto sealed = *Seal("PLAINTEXT-42", "app/key", 2, f.recipients(), f.writer);
  std::set<Code> codes;
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80}) {
      std::string t = sealed;
      t[i] = static_cast<char>(t[i] ^ mask);
      auto r = OpenSealed(t, f.expect("app/key", 2), f.m1);
      ASSERT_FALSE(r.ok()) << "byte " << i << " mask " << int(mask) << " opened";
      EXPECT_EQ(r.status().message().find("PLAINTEXT-42"), std::string::npos);
      codes.insert(r.status().code());
    }
  }
  EXPECT_TRUE(codes.count(Code::kInvalidArgument));
  for (size_t n = 0; n < sealed.size(); ++n) {
    auto r = OpenSealed(sealed.substr(0, n), f.expect("app/key", 2), f.m1);
    ASSERT_FALSE(r.ok()) << "truncated to " << n;
  }
  EXPECT_NE(OpenSealed(sealed + "x", f.expect("app/key", 2), f.m1)
                .status()
                .message()
                .find("after its signature"),
            std::string::npos);
}

TEST(SealedValueTest, FormatErrorsSayWhatIsWrong) {
  Fixture f;
  auto sealed = *Seal("v", "p", 1, f.recipients(), f.writer);
  std::string v2 = sealed;
  v2[3] = 2;
  EXPECT_NE(ParseSealed(v2).status().message().find("unknown sealed-value format version 2"),
            std::string::npos);
  EXPECT_NE(ParseSealed("hello").status().message().find("bad magic"), std::string::npos);
  EXPECT_NE(ParseSealed(sealed.substr(0, 20)).status().message().find("truncated"),
            std::string::npos);
  EXPECT_FALSE(ParseSealed("").ok());
}

TEST(SealedValueTest, SealingChecksItsInputs) {
  Fixture f;
  EXPECT_EQ(Seal("v", "../etc", 1, f.recipients(), f.writer).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Seal("v", "p", 0, f.recipients(), f.writer).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Seal("v", "p", 1, {}, f.writer).status().code(), Code::kFailedPrecondition);
  // A recipient listed twice is sealed to once.
  auto twice = Seal("v", "p", 1, {f.m1.public_key(), f.m1.public_key()}, f.writer);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(ParseSealed(*twice)->recipients.size(), 1u);
  // Two seals of the same value differ (fresh data key and nonce).
  EXPECT_NE(*Seal("v", "p", 1, f.recipients(), f.writer),
            *Seal("v", "p", 1, f.recipients(), f.writer));
}

TEST(SecretPathTest, ValidAndInvalidPaths) {
  for (const char* ok : {"a", "db/password", "team-1/app.v2/key_3"}) {
    EXPECT_TRUE(ValidateSecretPath(ok).ok()) << ok;
  }
  for (const char* bad : {"", "/a", "a/", "a//b", "a/../b", "./a", "a b", "a\\b", "ü"}) {
    auto st = ValidateSecretPath(bad);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateSecretPath(std::string(kMaxPathBytes + 1, 'a')).ok());
}

}  // namespace
}  // namespace berth::secrets
