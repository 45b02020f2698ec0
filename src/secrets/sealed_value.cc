#include "secrets/sealed_value.h"

#include <algorithm>
#include <cstring>

namespace berth::secrets {

namespace {

constexpr unsigned char kMagic[3] = {'B', 'S', 'V'};
constexpr size_t kDataKeyBytes = crypto_aead_xchacha20poly1305_ietf_KEYBYTES;
constexpr size_t kWrappedKeyBytes = crypto_box_SEALBYTES + kDataKeyBytes;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kSignatureBytes = crypto_sign_BYTES;

void PutU16(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}
void PutU32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
template <size_t N>
void PutBytes(std::string& out, const std::array<unsigned char, N>& a) {
  out.append(reinterpret_cast<const char*>(a.data()), N);
}
const unsigned char* U(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Reads the encoding front to back; every read checks what is left.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  size_t offset() const { return off_; }
  size_t left() const { return in_.size() - off_; }
  Status Need(size_t n, std::string_view what) const {
    if (left() < n) {
      return InvalidArgument("sealed value is truncated: " + std::string(what) + " needs " +
                             std::to_string(n) + " bytes at offset " + std::to_string(off_) + ", " +
                             std::to_string(left()) + " left");
    }
    return Status::Ok();
  }
  Result<uint64_t> Uint(size_t bytes, std::string_view what) {
    BERTH_RETURN_IF_ERROR(Need(bytes, what));
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(in_[off_ + i]);
    off_ += bytes;
    return v;
  }
  Result<std::string_view> Bytes(size_t n, std::string_view what) {
    BERTH_RETURN_IF_ERROR(Need(n, what));
    auto v = in_.substr(off_, n);
    off_ += n;
    return v;
  }
  template <size_t N>
  Status Array(std::array<unsigned char, N>& a, std::string_view what) {
    BERTH_ASSIGN_OR_RETURN(auto b, Bytes(N, what));
    std::memcpy(a.data(), b.data(), N);
    return Status::Ok();
  }

 private:
  std::string_view in_;
  size_t off_ = 0;
};

std::string Short(std::string_view path) {
  return path.size() <= 64 ? std::string(path) : std::string(path.substr(0, 61)) + "...";
}

}  // namespace

Status ValidateSecretPath(std::string_view path) {
  if (path.empty()) return InvalidArgument("a secret path may not be empty");
  if (path.size() > kMaxPathBytes) {
    return InvalidArgument("secret path '" + Short(path) + "' is longer than " +
                           std::to_string(kMaxPathBytes) + " bytes");
  }
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view seg = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty()) {
      return InvalidArgument("secret path '" + Short(path) +
                             "' has an empty segment (a leading, trailing or double '/')");
    }
    if (seg == "." || seg == "..") {
      return InvalidArgument("secret path '" + Short(path) + "' has a '" + std::string(seg) +
                             "' segment");
    }
    for (unsigned char c : seg) {
      if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-')) {
        return InvalidArgument("secret path '" + Short(path) +
                               "' may hold only [A-Za-z0-9._-] between '/'");
      }
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Status::Ok();
}

size_t SealedValue::plaintext_size() const {
  return ciphertext.size() >= kTagBytes ? ciphertext.size() - kTagBytes : 0;
}

bool SealedValue::SealedTo(const BoxPublic& box) const {
  return std::any_of(recipients.begin(), recipients.end(),
                     [&](const SealedRecipient& r) { return r.box == box; });
}

Result<std::string> Seal(std::string_view plaintext, std::string_view path, int64_t version,
                         const std::vector<PublicKey>& recipients, const KeyPair& writer) {
  EnsureSodium();
  BERTH_RETURN_IF_ERROR(ValidateSecretPath(path));
  if (version < 1) return InvalidArgument("a sealed value's version starts at 1");
  if (plaintext.size() > kMaxSecretBytes) {
    return TooLarge("secret " + std::string(path) + " is " + std::to_string(plaintext.size()) +
                    " bytes; the limit is " + std::to_string(kMaxSecretBytes));
  }
  std::vector<const PublicKey*> unique;
  for (const auto& r : recipients) {
    if (std::none_of(unique.begin(), unique.end(),
                     [&](const PublicKey* u) { return u->box == r.box; })) {
      unique.push_back(&r);
    }
  }
  if (unique.empty()) {
    return FailedPrecondition("secret " + std::string(path) +
                              ": no recipients to seal to (berth secret recipients add)");
  }
  if (unique.size() > kMaxRecipients) {
    return InvalidArgument("more than " + std::to_string(kMaxRecipients) + " recipients");
  }

  SecretBuffer data_key(kDataKeyBytes);
  crypto_aead_xchacha20poly1305_ietf_keygen(data_key.data());

  std::string out;
  out.reserve(64 + path.size() + unique.size() * (32 + kWrappedKeyBytes) + plaintext.size() +
              kTagBytes + kSignatureBytes);
  out.append(reinterpret_cast<const char*>(kMagic), sizeof(kMagic));
  out.push_back(static_cast<char>(kSealedFormatVersion));
  PutU16(out, static_cast<uint32_t>(path.size()));
  out.append(path);
  PutU64(out, static_cast<uint64_t>(version));
  PutBytes(out, writer.public_key().sign);
  PutU16(out, static_cast<uint32_t>(unique.size()));
  for (const PublicKey* r : unique) {
    PutBytes(out, r->box);
    unsigned char wrapped[kWrappedKeyBytes];
    if (crypto_box_seal(wrapped, data_key.data(), data_key.size(), r->box.data()) != 0) {
      return InvalidArgument("cannot seal to recipient " + r->name + " (" + r->Fingerprint() +
                             "): not a valid X25519 public key");
    }
    out.append(reinterpret_cast<const char*>(wrapped), sizeof(wrapped));
  }
  unsigned char nonce[kNonceBytes];
  randombytes_buf(nonce, sizeof(nonce));
  out.append(reinterpret_cast<const char*>(nonce), sizeof(nonce));
  const size_t header = out.size();

  PutU32(out, static_cast<uint32_t>(plaintext.size() + kTagBytes));
  const size_t ct_at = out.size();
  out.resize(ct_at + plaintext.size() + kTagBytes);
  unsigned long long ct_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.data() + ct_at), &ct_len,
      reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(), U(out), header,
      nullptr, nonce, data_key.data());

  unsigned char sig[kSignatureBytes];
  crypto_sign_detached(sig, nullptr, U(out), out.size(), writer.sign_secret());
  out.append(reinterpret_cast<const char*>(sig), sizeof(sig));
  return out;
}

Result<SealedValue> ParseSealed(std::string_view encoded) {
  Reader r(encoded);
  SealedValue v;
  BERTH_ASSIGN_OR_RETURN(auto magic, r.Bytes(3, "the magic"));
  if (std::memcmp(magic.data(), kMagic, 3) != 0) {
    return InvalidArgument("not a berth sealed value (bad magic)");
  }
  BERTH_ASSIGN_OR_RETURN(auto format, r.Uint(1, "the format version"));
  if (format != kSealedFormatVersion) {
    return InvalidArgument("unknown sealed-value format version " + std::to_string(format) +
                           " (this berth reads version " + std::to_string(kSealedFormatVersion) +
                           ")");
  }
  v.format = static_cast<uint8_t>(format);
  BERTH_ASSIGN_OR_RETURN(auto path_len, r.Uint(2, "the path length"));
  if (path_len == 0 || path_len > kMaxPathBytes) {
    return InvalidArgument("sealed value has a path of " + std::to_string(path_len) + " bytes");
  }
  BERTH_ASSIGN_OR_RETURN(auto path, r.Bytes(path_len, "the path"));
  v.path = std::string(path);
  BERTH_ASSIGN_OR_RETURN(auto version, r.Uint(8, "the version"));
  if (version == 0 || version > static_cast<uint64_t>(INT64_MAX)) {
    return InvalidArgument("sealed value has version " + std::to_string(version));
  }
  v.version = static_cast<int64_t>(version);
  BERTH_RETURN_IF_ERROR(r.Array(v.writer, "the writer's key"));
  BERTH_ASSIGN_OR_RETURN(auto n, r.Uint(2, "the recipient count"));
  if (n == 0 || n > kMaxRecipients) {
    return InvalidArgument("sealed value has " + std::to_string(n) + " recipients");
  }
  BERTH_RETURN_IF_ERROR(r.Need(n * (sizeof(BoxPublic) + kWrappedKeyBytes), "the recipients"));
  v.recipients.resize(n);
  for (auto& rec : v.recipients) {
    BERTH_RETURN_IF_ERROR(r.Array(rec.box, "a recipient's key"));
    BERTH_ASSIGN_OR_RETURN(auto w, r.Bytes(kWrappedKeyBytes, "a wrapped key"));
    rec.wrapped_key = std::string(w);
  }
  BERTH_ASSIGN_OR_RETURN(auto nonce, r.Bytes(kNonceBytes, "the nonce"));
  v.nonce = std::string(nonce);
  v.header_bytes = r.offset();
  BERTH_ASSIGN_OR_RETURN(auto ct_len, r.Uint(4, "the ciphertext length"));
  if (ct_len < kTagBytes || ct_len > kMaxSecretBytes + kTagBytes) {
    return InvalidArgument("sealed value has a ciphertext of " + std::to_string(ct_len) + " bytes");
  }
  BERTH_ASSIGN_OR_RETURN(auto ct, r.Bytes(ct_len, "the ciphertext"));
  v.ciphertext = std::string(ct);
  v.signed_bytes = r.offset();
  BERTH_ASSIGN_OR_RETURN(auto sig, r.Bytes(kSignatureBytes, "the signature"));
  v.signature = std::string(sig);
  if (r.left() != 0) {
    return InvalidArgument("sealed value has " + std::to_string(r.left()) +
                           " bytes after its signature");
  }
  return v;
}

Result<SealedValue> VerifySealed(std::string_view encoded, const OpenExpectations& expect) {
  EnsureSodium();
  BERTH_ASSIGN_OR_RETURN(auto v, ParseSealed(encoded));
  const std::string where = "secret " + Short(expect.path);
  if (v.path != expect.path) {
    return InvalidArgument(where + ": the value was sealed for '" + Short(v.path) +
                           "' (copied from another path?)");
  }
  if (expect.version != 0 && v.version != expect.version) {
    return InvalidArgument(where + ": the value was sealed as version " +
                           std::to_string(v.version) + " but is stored as version " +
                           std::to_string(expect.version) + " (an older value put back?)");
  }
  if (std::none_of(expect.trusted_writers.begin(), expect.trusted_writers.end(),
                   [&](const SignPublic& w) { return w == v.writer; })) {
    return PermissionDenied(where + ": written by a key that is not a trusted writer");
  }
  if (crypto_sign_verify_detached(U(v.signature),
                                  reinterpret_cast<const unsigned char*>(encoded.data()),
                                  v.signed_bytes, v.writer.data()) != 0) {
    return InvalidArgument(where + ": the signature does not verify (the value was altered)");
  }
  return v;
}

Result<SecretBuffer> OpenSealed(std::string_view encoded, const OpenExpectations& expect,
                                const KeyPair& reader) {
  BERTH_ASSIGN_OR_RETURN(auto v, VerifySealed(encoded, expect));
  const std::string where = "secret " + Short(expect.path);
  const BoxPublic& mine = reader.public_key().box;
  auto it = std::find_if(v.recipients.begin(), v.recipients.end(),
                         [&](const SealedRecipient& r) { return r.box == mine; });
  if (it == v.recipients.end()) {
    return PermissionDenied(where + ": not sealed to " + reader.public_key().name + " (key " +
                            reader.public_key().Fingerprint() +
                            "); berth secret rotate seals it to the current recipients");
  }
  SecretBuffer data_key(kDataKeyBytes);
  if (crypto_box_seal_open(data_key.data(), U(it->wrapped_key), it->wrapped_key.size(), mine.data(),
                           reader.box_secret()) != 0) {
    return InvalidArgument(
        where + ": the data key sealed to " + reader.public_key().name +
        " does not open (altered, or a different key with the same public half)");
  }
  SecretBuffer plain(v.plaintext_size());
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          plain.data(), &n, nullptr, U(v.ciphertext), v.ciphertext.size(),
          reinterpret_cast<const unsigned char*>(encoded.data()), v.header_bytes, U(v.nonce),
          data_key.data()) != 0) {
    return InvalidArgument(where + ": the ciphertext does not authenticate (altered)");
  }
  plain.Truncate(static_cast<size_t>(n));
  return plain;
}

}  // namespace berth::secrets
