#include "secrets/keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "secrets/secret_buffer.h"

namespace berth::secrets {

namespace {

constexpr std::string_view kPublicTag = "berth-pub-v1";
constexpr std::string_view kFileTag = "berth-secret-key-v1";
constexpr size_t kMaxKeyFileBytes = 16 << 10;

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '@')) {
      return false;
    }
  }
  return true;
}

std::string Hex(const unsigned char* p, size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.pop_back();
  return out;
}

// Decodes base64 into exactly `n` bytes at `out`.
Status DecodeInto(std::string_view text, unsigned char* out, size_t n, std::string_view what) {
  auto bytes = Base64Decode(text);
  if (!bytes.ok() || bytes->size() != n) {
    return InvalidArgument(std::string(what) + " is not " + std::to_string(n) + " bytes of base64");
  }
  std::memcpy(out, bytes->data(), n);
  sodium_memzero(bytes->data(), bytes->size());
  return Status::Ok();
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Derives the 32-byte key that locks a key file's private halves.
Status DeriveLockKey(std::string_view passphrase, const unsigned char* salt, unsigned long long ops,
                     size_t mem, unsigned char* key) {
  if (crypto_pwhash(key, crypto_secretbox_KEYBYTES, passphrase.data(), passphrase.size(), salt, ops,
                    mem, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Internal("cannot derive a key from the passphrase (out of memory?)");
  }
  return Status::Ok();
}

}  // namespace

void EnsureSodium() {
  static const bool ready = [] { return sodium_init() >= 0; }();
  if (!ready) std::abort();
}

std::string Base64Encode(std::string_view data) {
  size_t len = sodium_base64_encoded_len(data.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string out(len, '\0');
  sodium_bin2base64(out.data(), len, reinterpret_cast<const unsigned char*>(data.data()),
                    data.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(len - 1);  // the terminating NUL
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t n = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size()) {
    return InvalidArgument("not valid base64");
  }
  out.resize(n);
  return out;
}

std::string PublicKey::Fingerprint() const {
  unsigned char h[8];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof(h));
  crypto_generichash_update(&st, box.data(), box.size());
  crypto_generichash_update(&st, sign.data(), sign.size());
  crypto_generichash_final(&st, h, sizeof(h));
  return Hex(h, sizeof(h));
}

std::string PublicKey::ToText() const {
  std::string_view b(reinterpret_cast<const char*>(box.data()), box.size());
  std::string_view s(reinterpret_cast<const char*>(sign.data()), sign.size());
  return std::string(kPublicTag) + " " + name + " " + Base64Encode(b) + " " + Base64Encode(s);
}

Result<PublicKey> ParsePublicKey(std::string_view text) {
  auto f = Fields(Trim(text));
  if (f.size() != 4 || f[0] != kPublicTag) {
    return InvalidArgument(
        "not a berth public key (expected one line: berth-pub-v1 NAME X25519 ED25519)");
  }
  if (!ValidName(f[1])) {
    return InvalidArgument("public key name '" + std::string(f[1]) +
                           "' is not 1-128 of [A-Za-z0-9._:@-]");
  }
  PublicKey k;
  k.name = std::string(f[1]);
  BERTH_RETURN_IF_ERROR(DecodeInto(f[2], k.box.data(), k.box.size(), "the X25519 public key"));
  BERTH_RETURN_IF_ERROR(DecodeInto(f[3], k.sign.data(), k.sign.size(), "the Ed25519 public key"));
  return k;
}

KeyPair KeyPair::Generate(std::string name) {
  EnsureSodium();
  KeyPair k;
  k.pub_.name = std::move(name);
  crypto_box_keypair(k.pub_.box.data(), k.box_sk_.data());
  crypto_sign_keypair(k.pub_.sign.data(), k.sign_sk_.data());
  return k;
}

KeyPair KeyPair::FromSeed(std::string name, const unsigned char (&seed)[32]) {
  EnsureSodium();
  KeyPair k;
  k.pub_.name = std::move(name);
  crypto_box_seed_keypair(k.pub_.box.data(), k.box_sk_.data(), seed);
  crypto_sign_seed_keypair(k.pub_.sign.data(), k.sign_sk_.data(), seed);
  return k;
}

KeyPair::KeyPair(KeyPair&& o) noexcept : pub_(o.pub_), box_sk_(o.box_sk_), sign_sk_(o.sign_sk_) {
  o.Wipe();
}

KeyPair& KeyPair::operator=(KeyPair&& o) noexcept {
  if (this != &o) {
    pub_ = o.pub_;
    box_sk_ = o.box_sk_;
    sign_sk_ = o.sign_sk_;
    o.Wipe();
  }
  return *this;
}

KeyPair::~KeyPair() {
  Wipe();
}

void KeyPair::Wipe() {
  sodium_memzero(box_sk_.data(), box_sk_.size());
  sodium_memzero(sign_sk_.data(), sign_sk_.size());
}

Result<std::string> KeyPair::ToFileText(std::string_view passphrase) const {
  auto b64 = [](const unsigned char* p, size_t n) {
    return Base64Encode(std::string_view(reinterpret_cast<const char*>(p), n));
  };
  std::string out =
      "# berth secret key: keep it private (mode 0600); its public half is in the\n"
      "# .pub file beside it. Losing it loses every value sealed only to it.\n";
  out += std::string(kFileTag) + "\n";
  out += "name: " + pub_.name + "\n";
  out += "box-public: " + b64(pub_.box.data(), pub_.box.size()) + "\n";
  out += "sign-public: " + b64(pub_.sign.data(), pub_.sign.size()) + "\n";
  if (passphrase.empty()) {
    out += "box-secret: " + b64(box_sk_.data(), box_sk_.size()) + "\n";
    out += "sign-secret: " + b64(sign_sk_.data(), sign_sk_.size()) + "\n";
    return out;
  }
  unsigned char salt[crypto_pwhash_SALTBYTES];
  randombytes_buf(salt, sizeof(salt));
  const unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
  const size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  SecretBuffer lock(crypto_secretbox_KEYBYTES);
  BERTH_RETURN_IF_ERROR(DeriveLockKey(passphrase, salt, ops, mem, lock.data()));
  SecretBuffer plain(box_sk_.size() + sign_sk_.size());
  std::memcpy(plain.data(), box_sk_.data(), box_sk_.size());
  std::memcpy(plain.data() + box_sk_.size(), sign_sk_.data(), sign_sk_.size());
  unsigned char nonce[crypto_secretbox_NONCEBYTES];
  randombytes_buf(nonce, sizeof(nonce));
  std::vector<unsigned char> boxed(plain.size() + crypto_secretbox_MACBYTES);
  crypto_secretbox_easy(boxed.data(), plain.data(), plain.size(), nonce, lock.data());
  out += "lock: argon2id13 " + std::to_string(ops) + " " + std::to_string(mem) + " " +
         b64(salt, sizeof(salt)) + " " + b64(nonce, sizeof(nonce)) + "\n";
  out += "locked-secrets: " + b64(boxed.data(), boxed.size()) + "\n";
  return out;
}

Result<KeyPair> KeyPair::FromFileText(std::string_view text, std::string_view passphrase,
                                      std::string_view source) {
  EnsureSodium();
  auto bad = [&](const std::string& why) {
    return InvalidArgument("key file " + std::string(source) + ": " + why);
  };
  if (text.size() > kMaxKeyFileBytes) return bad("too large to be a key file");
  std::map<std::string, std::string, std::less<>> fields;
  bool tagged = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = Trim(text.substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty() || line[0] == '#') continue;
    if (!tagged) {
      if (line != kFileTag) {
        return bad(line.rfind("berth-secret-key-v", 0) == 0
                       ? "unknown key file version '" + std::string(line) + "' (this berth reads " +
                             std::string(kFileTag) + ")"
                       : "not a berth secret key (the first line is not " + std::string(kFileTag) +
                             ")");
      }
      tagged = true;
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return bad("a line without 'field: value'");
    std::string key(Trim(line.substr(0, colon)));
    if (!fields.emplace(key, std::string(Trim(line.substr(colon + 1)))).second) {
      return bad("field '" + key + "' given twice");
    }
  }
  if (!tagged) return bad("empty, or not a berth secret key");
  auto need = [&](std::string_view f) -> Result<std::string> {
    auto it = fields.find(f);
    if (it == fields.end()) return bad("missing field '" + std::string(f) + "'");
    return it->second;
  };
  KeyPair k;
  BERTH_ASSIGN_OR_RETURN(k.pub_.name, need("name"));
  if (!ValidName(k.pub_.name)) return bad("name is not 1-128 of [A-Za-z0-9._:@-]");
  BERTH_ASSIGN_OR_RETURN(auto box_pub, need("box-public"));
  BERTH_ASSIGN_OR_RETURN(auto sign_pub, need("sign-public"));
  BERTH_RETURN_IF_ERROR(DecodeInto(box_pub, k.pub_.box.data(), k.pub_.box.size(), "box-public")
                            .Annotate("key file " + std::string(source)));
  BERTH_RETURN_IF_ERROR(DecodeInto(sign_pub, k.pub_.sign.data(), k.pub_.sign.size(), "sign-public")
                            .Annotate("key file " + std::string(source)));
  if (fields.count("lock") != 0) {
    if (passphrase.empty()) {
      return PermissionDenied("key file " + std::string(source) +
                              " is locked with a passphrase: set BERTH_SECRET_PASSPHRASE");
    }
    auto f = Fields(fields.find("lock")->second);
    if (f.size() != 5 || f[0] != "argon2id13") return bad("unknown lock '" + fields["lock"] + "'");
    unsigned long long ops = std::strtoull(std::string(f[1]).c_str(), nullptr, 10);
    size_t mem = std::strtoull(std::string(f[2]).c_str(), nullptr, 10);
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > 64 || mem < crypto_pwhash_MEMLIMIT_MIN ||
        mem > (size_t{4} << 30)) {
      return bad("lock limits out of range");
    }
    unsigned char salt[crypto_pwhash_SALTBYTES];
    unsigned char nonce[crypto_secretbox_NONCEBYTES];
    BERTH_RETURN_IF_ERROR(DecodeInto(f[3], salt, sizeof(salt), "the lock's salt"));
    BERTH_RETURN_IF_ERROR(DecodeInto(f[4], nonce, sizeof(nonce), "the lock's nonce"));
    BERTH_ASSIGN_OR_RETURN(auto locked_b64, need("locked-secrets"));
    auto locked = Base64Decode(locked_b64);
    const size_t plain_size = k.box_sk_.size() + k.sign_sk_.size();
    if (!locked.ok() || locked->size() != plain_size + crypto_secretbox_MACBYTES) {
      return bad("locked-secrets is malformed");
    }
    SecretBuffer lock(crypto_secretbox_KEYBYTES);
    BERTH_RETURN_IF_ERROR(DeriveLockKey(passphrase, salt, ops, mem, lock.data()));
    SecretBuffer plain(plain_size);
    if (crypto_secretbox_open_easy(plain.data(),
                                   reinterpret_cast<const unsigned char*>(locked->data()),
                                   locked->size(), nonce, lock.data()) != 0) {
      return PermissionDenied("key file " + std::string(source) +
                              ": wrong passphrase (or the file was altered)");
    }
    std::memcpy(k.box_sk_.data(), plain.data(), k.box_sk_.size());
    std::memcpy(k.sign_sk_.data(), plain.data() + k.box_sk_.size(), k.sign_sk_.size());
  } else {
    BERTH_ASSIGN_OR_RETURN(auto box_sec, need("box-secret"));
    BERTH_ASSIGN_OR_RETURN(auto sign_sec, need("sign-secret"));
    BERTH_RETURN_IF_ERROR(DecodeInto(box_sec, k.box_sk_.data(), k.box_sk_.size(), "box-secret")
                              .Annotate("key file " + std::string(source)));
    BERTH_RETURN_IF_ERROR(DecodeInto(sign_sec, k.sign_sk_.data(), k.sign_sk_.size(), "sign-secret")
                              .Annotate("key file " + std::string(source)));
    sodium_memzero(fields["box-secret"].data(), fields["box-secret"].size());
    sodium_memzero(fields["sign-secret"].data(), fields["sign-secret"].size());
  }
  // The halves must belong together: a file whose public keys were swapped for someone
  // else's would seal to them while opening with ours.
  BoxPublic box_check{};
  crypto_scalarmult_base(box_check.data(), k.box_sk_.data());
  SignPublic sign_check{};
  crypto_sign_ed25519_sk_to_pk(sign_check.data(), k.sign_sk_.data());
  if (box_check != k.pub_.box || sign_check != k.pub_.sign) {
    return bad("the public keys do not match the private keys");
  }
  return k;
}

Status WriteKeyFiles(const KeyPair& key, const std::string& path, std::string_view passphrase) {
  BERTH_ASSIGN_OR_RETURN(auto text, key.ToFileText(passphrase));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    sodium_memzero(text.data(), text.size());
    if (err == EEXIST) {
      return AlreadyExists("key file " + path + " exists: berth never overwrites a key");
    }
    return InvalidArgument("cannot create key file " + path + ": " + std::strerror(err));
  }
  // The mode given to open() is masked by the umask; make sure it is exactly 0600.
  bool ok = ::fchmod(fd, 0600) == 0;
  size_t off = 0;
  while (ok && off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<size_t>(n);
  }
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  sodium_memzero(text.data(), text.size());
  if (!ok) {
    ::unlink(path.c_str());
    return Internal("cannot write key file " + path + ": " + std::strerror(errno));
  }
  std::string pub_path = path + ".pub";
  std::string line = key.public_key().ToText() + "\n";
  int pfd = ::open(pub_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (pfd < 0 || ::write(pfd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    int err = errno;
    if (pfd >= 0) ::close(pfd);
    return Internal("wrote " + path + " but cannot write " + pub_path + ": " + std::strerror(err));
  }
  ::close(pfd);
  return Status::Ok();
}

Result<KeyPair> LoadKeyPair(const std::string& path, std::string_view passphrase) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return NotFound("key file " + path + " does not exist");
    return PermissionDenied("cannot open key file " + path + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return PermissionDenied("key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PermissionDenied("key file " + path + " may be read by group or others (mode " + mode +
                            "): berth refuses to use it; chmod 600 " + path +
                            " if nobody else could have read it, else make a new key");
  }
  if (st.st_size > static_cast<off_t>(kMaxKeyFileBytes)) {
    ::close(fd);
    return InvalidArgument("key file " + path + " is too large to be a key file");
  }
  SecretBuffer text(static_cast<size_t>(st.st_size));
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::read(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  text.Truncate(off);
  return KeyPair::FromFileText(text.view(), passphrase, path);
}

}  // namespace berth::secrets
