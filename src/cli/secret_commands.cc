#include "cli/secret_commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/output.h"
#include "secrets/keys.h"
#include "secrets/sealed_value.h"
#include "secrets/secret_buffer.h"
#include "secrets/secret_store.h"

namespace berth::cli {

using nlohmann::json;
namespace sec = berth::secrets;

namespace {

struct Options {
  bool json = false;
  std::string key_path;
  std::string out;
  std::string name;
  std::string path;
  std::string file;
  std::string prefix;
  bool writer = false;
};

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string KeyPath(const Options& o) {
  return o.key_path.empty() ? DefaultSecretKeyPath() : o.key_path;
}

Result<sec::KeyPair> LoadOperatorKey(const Options& o) {
  std::string path = KeyPath(o);
  auto key = sec::LoadKeyPair(path, Env("BERTH_SECRET_PASSPHRASE"));
  if (!key.ok() && key.status().code() == Code::kNotFound) {
    return NotFound(key.status().message() +
                    " (make one with `berth secret keygen`, or pass --key / BERTH_SECRET_KEY)");
  }
  return key;
}

// Reads all of a file, or stdin for "-", into wiped memory.
Result<sec::SecretBuffer> ReadValue(const std::string& file) {
  int fd = file == "-" ? STDIN_FILENO : ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot read " + file + ": " + std::strerror(errno));
  sec::SecretBuffer buf(sec::kMaxSecretBytes + 1);
  size_t off = 0;
  for (;;) {
    if (off == buf.size()) break;
    ssize_t n = ::read(fd, buf.data() + off, buf.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (fd != STDIN_FILENO) ::close(fd);
      return InvalidArgument("cannot read " + file + ": " + std::strerror(err));
    }
    if (n == 0) break;
    off += static_cast<size_t>(n);
  }
  if (fd != STDIN_FILENO) ::close(fd);
  if (off > sec::kMaxSecretBytes) {
    return TooLarge("the value in " + file + " is larger than " +
                    std::to_string(sec::kMaxSecretBytes) + " bytes");
  }
  buf.Truncate(off);
  return buf;
}

// Every recipient the agent knows, parsed; records that do not parse are reported and skipped.
struct Recipients {
  std::vector<sec::PublicKey> all;
  std::vector<sec::SignPublic> writers;
  int machines = 0;
  int operators = 0;
};

Result<Recipients> FetchRecipients(ApiClient& c) {
  BERTH_ASSIGN_OR_RETURN(auto list, c.CallJson("GET", "/v1/secret-keys"));
  Recipients out;
  if (!list.is_array()) return Internal("GET /v1/secret-keys: expected a JSON array");
  for (const auto& r : list) {
    auto key = sec::ParsePublicKey(r.value("public_key", ""));
    if (!key.ok()) {
      std::cerr << "berth: skipping recipient " << r.value("name", "?") << ": "
                << key.status().message() << "\n";
      continue;
    }
    key->name = r.value("name", key->name);
    if (r.value("writer", false)) out.writers.push_back(key->sign);
    (r.value("kind", "") == "machine" ? out.machines : out.operators)++;
    out.all.push_back(std::move(key).value());
  }
  return out;
}

std::string SecretTarget(const std::string& path) {
  return "/v1/secrets/" + path;  // a valid path needs no escaping ([A-Za-z0-9._-/])
}

// The stored version of `path` (0 when there is none).
Result<int64_t> StoredVersion(ApiClient& c, const std::string& path) {
  auto got = c.CallJson("GET", SecretTarget(path));
  if (!got.ok()) {
    if (got.status().code() == Code::kNotFound) return int64_t{0};
    return got.status();
  }
  return got->value("version", int64_t{0});
}

// Seals `value` as the next version of `path` to every recipient and stores it.
Result<int64_t> SealAndPut(ApiClient& c, const sec::KeyPair& key, const Recipients& to,
                           const std::string& path, int64_t current, std::string_view value) {
  BERTH_ASSIGN_OR_RETURN(auto sealed, sec::Seal(value, path, current + 1, to.all, key));
  BERTH_ASSIGN_OR_RETURN(
      auto res, c.CallJson("PUT", SecretTarget(path),
                           json{{"sealed", sec::Base64Encode(sealed)}}.dump(), "application/json"));
  return res.value("version", current + 1);
}

bool AmongRecipients(const sec::KeyPair& key, const Recipients& r) {
  for (const auto& k : r.all) {
    if (k.box == key.public_key().box) return true;
  }
  return false;
}

int Keygen(const Options& o) {
  std::string path = o.out.empty() ? DefaultSecretKeyPath() : o.out;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::exists(parent)) {
    // ~/.config/berth may not exist yet: make it, private.
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
      return ReportFailure(
          InvalidArgument("cannot create " + parent.string() + ": " + ec.message()));
    std::filesystem::permissions(parent, std::filesystem::perms::owner_all, ec);
  }
  std::string name = o.name;
  if (name.empty()) name = Env("USER").empty() ? "operator" : Env("USER");
  if (Status st = sec::ValidateRecipientName(name); !st.ok()) return ReportFailure(st);
  auto key = sec::KeyPair::Generate(name);
  std::string passphrase = Env("BERTH_SECRET_PASSPHRASE");
  if (Status st = sec::WriteKeyFiles(key, path, passphrase); !st.ok()) return ReportFailure(st);
  if (o.json) {
    std::cout << json{{"key_file", path},
                      {"public_key_file", path + ".pub"},
                      {"public_key", key.public_key().ToText()},
                      {"fingerprint", key.public_key().Fingerprint()},
                      {"locked", !passphrase.empty()}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::cout << "wrote " << path << " (private, mode 0600" << (passphrase.empty() ? "" : ", locked")
            << ") and " << path << ".pub\n"
            << key.public_key().ToText() << "\n"
            << "fingerprint " << key.public_key().Fingerprint() << "\n"
            << "to write secrets, have it added as a writer:  berth secret recipients add " << name
            << " " << path << ".pub --writer\n";
  return 0;
}

int Set(const ApiClientOptions& api, const Options& o) {
  if (Status st = sec::ValidateSecretPath(o.path); !st.ok()) return ReportFailure(st);
  auto key = LoadOperatorKey(o);
  if (!key.ok()) return ReportFailure(key.status());
  auto value = ReadValue(o.file.empty() ? "-" : o.file);
  if (!value.ok()) return ReportFailure(value.status());
  ApiClient c(api);
  auto to = FetchRecipients(c);
  if (!to.ok()) return ReportFailure(to.status());
  auto current = StoredVersion(c, o.path);
  if (!current.ok()) return ReportFailure(current.status());
  auto version = SealAndPut(c, *key, *to, o.path, *current, value->view());
  if (!version.ok()) return ReportFailure(version.status());
  if (!AmongRecipients(*key, *to)) {
    std::cerr << "berth: warning: your key " << key->public_key().Fingerprint()
              << " is not a recipient: you cannot read or rotate " << o.path << "\n";
  }
  if (o.json) {
    std::cout << json{{"path", o.path}, {"version", *version}, {"recipients", to->all.size()}}.dump(
                     2)
              << "\n";
  } else {
    std::cout << "sealed " << o.path << " version " << *version << " to " << to->all.size()
              << " recipients (" << to->machines << " machines, " << to->operators
              << " operators)\n";
  }
  return 0;
}

// Opens `path` with the operator's key, checking it against the writers the agent knows.
Result<sec::SecretBuffer> OpenRemote(ApiClient& c, const sec::KeyPair& key, const Recipients& known,
                                     const std::string& path, int64_t* version) {
  BERTH_ASSIGN_OR_RETURN(auto got, c.CallJson("GET", SecretTarget(path)));
  auto bytes = sec::Base64Decode(got.value("sealed", ""));
  if (!bytes.ok())
    return InvalidArgument("secret " + path + ": the agent sent a value that is not base64");
  int64_t v = got.value("version", int64_t{0});
  if (version != nullptr) *version = v;
  return sec::OpenSealed(*bytes, {path, v, known.writers}, key);
}

int Get(const ApiClientOptions& api, const Options& o) {
  if (Status st = sec::ValidateSecretPath(o.path); !st.ok()) return ReportFailure(st);
  auto key = LoadOperatorKey(o);
  if (!key.ok()) return ReportFailure(key.status());
  ApiClient c(api);
  auto known = FetchRecipients(c);
  if (!known.ok()) return ReportFailure(known.status());
  auto value = OpenRemote(c, *key, *known, o.path, nullptr);
  if (!value.ok()) return ReportFailure(value.status());
  int fd = STDOUT_FILENO;
  if (!o.out.empty()) {
    fd = ::open(o.out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      return ReportFailure(InvalidArgument("cannot create " + o.out + ": " + std::strerror(errno)));
    }
  }
  std::cout.flush();
  size_t off = 0;
  while (off < value->size()) {
    ssize_t n = ::write(fd, value->data() + off, value->size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  if (fd != STDOUT_FILENO) ::close(fd);
  return off == value->size() ? 0 : ReportFailure(Internal("cannot write the value"));
}

int Ls(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  std::string target = "/v1/secrets";
  if (!o.prefix.empty()) target += "?prefix=" + o.prefix;
  auto list = c.CallJson("GET", target);
  if (!list.ok()) return ReportFailure(list.status());
  if (o.json) {
    std::cout << list->dump(2) << "\n";
    return 0;
  }
  if (!list->is_array() || list->empty()) {
    std::cout << "no secrets\n";
    return 0;
  }
  Table t({"PATH", "VERSION", "SIZE", "WRITER", "RECIPIENTS"});
  for (const auto& s : *list) {
    std::string to = std::to_string(s.contains("recipients") ? s["recipients"].size() : 0);
    if (s.contains("error")) to += " (" + s.value("error", "") + ")";
    t.Add({s.value("path", ""), std::to_string(s.value("version", 0)),
           std::to_string(s.value("size", 0)), s.value("writer", "?"), to});
  }
  t.Print(std::cout);
  return 0;
}

int Rm(const ApiClientOptions& api, const Options& o) {
  if (Status st = sec::ValidateSecretPath(o.path); !st.ok()) return ReportFailure(st);
  ApiClient c(api);
  auto res = c.CallJson("DELETE", SecretTarget(o.path));
  if (!res.ok()) return ReportFailure(res.status());
  std::cout << (o.json ? res->dump(2) : "deleted " + o.path) << "\n";
  return 0;
}

int RecipientsLs(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto list = c.CallJson("GET", "/v1/secret-keys");
  if (!list.ok()) return ReportFailure(list.status());
  if (o.json) {
    std::cout << list->dump(2) << "\n";
    return 0;
  }
  if (!list->is_array() || list->empty()) {
    std::cout << "no recipients\n";
    return 0;
  }
  Table t({"NAME", "KIND", "WRITER", "FINGERPRINT"});
  for (const auto& r : *list) {
    t.Add({r.value("name", ""), r.value("kind", ""), r.value("writer", false) ? "yes" : "no",
           r.value("fingerprint", "")});
  }
  t.Print(std::cout);
  return 0;
}

int RecipientsAdd(const ApiClientOptions& api, const Options& o) {
  auto text = ReadValue(o.file);
  if (!text.ok()) return ReportFailure(text.status());
  auto key = sec::ParsePublicKey(text->view());
  if (!key.ok()) return ReportFailure(key.status().Annotate(o.file));
  ApiClient c(api);
  auto res = c.CallJson("PUT", "/v1/secret-keys/" + o.name,
                        json{{"public_key", key->ToText()}, {"writer", o.writer}}.dump(),
                        "application/json");
  if (!res.ok()) return ReportFailure(res.status());
  if (o.json) {
    std::cout << res->dump(2) << "\n";
  } else {
    std::cout << "added " << o.name << " (" << key->Fingerprint() << ")"
              << (o.writer ? " as a writer" : "")
              << "; values sealed before now are not sealed to it: berth secret rotate\n";
  }
  return 0;
}

int RecipientsRm(const ApiClientOptions& api, const Options& o) {
  ApiClient c(api);
  auto res = c.CallJson("DELETE", "/v1/secret-keys/" + o.name);
  if (!res.ok()) return ReportFailure(res.status());
  std::cout << (o.json ? res->dump(2)
                       : "removed " + o.name +
                             "; it can still open the values sealed to it until berth secret "
                             "rotate seals them again")
            << "\n";
  return 0;
}

int Rotate(const ApiClientOptions& api, const Options& o) {
  auto key = LoadOperatorKey(o);
  if (!key.ok()) return ReportFailure(key.status());
  ApiClient c(api);
  auto to = FetchRecipients(c);
  if (!to.ok()) return ReportFailure(to.status());
  std::string target = "/v1/secrets";
  if (!o.prefix.empty()) target += "?prefix=" + o.prefix;
  auto list = c.CallJson("GET", target);
  if (!list.ok()) return ReportFailure(list.status());
  int rotated = 0;
  json failed = json::array();
  for (const auto& s : *list) {
    std::string path = s.value("path", "");
    int64_t version = 0;
    auto value = OpenRemote(c, *key, *to, path, &version);
    Status st = value.status();
    if (value.ok()) {
      auto put = SealAndPut(c, *key, *to, path, version, value->view());
      st = put.status();
    }
    if (st.ok()) {
      ++rotated;
    } else {
      failed.push_back({{"path", path}, {"error", st.message()}});
      if (!o.json) std::cerr << "berth: " << st.message() << "\n";
    }
  }
  if (o.json) {
    std::cout
        << json{{"rotated", rotated}, {"failed", failed}, {"recipients", to->all.size()}}.dump(2)
        << "\n";
  } else {
    std::cout << "sealed " << rotated << " values again to " << to->all.size() << " recipients; "
              << failed.size() << " could not be\n";
  }
  return failed.empty() ? 0 : 1;
}

}  // namespace

std::string DefaultSecretKeyPath() {
  if (std::string k = Env("BERTH_SECRET_KEY"); !k.empty()) return k;
  if (std::string x = Env("XDG_CONFIG_HOME"); !x.empty()) return x + "/berth/secret.key";
  return (Env("HOME").empty() ? std::string(".") : Env("HOME")) + "/.config/berth/secret.key";
}

void AddSecretCommands(CLI::App& app, const ApiClientOptions& api, int& rc) {
  auto opts = std::make_shared<Options>();
  Options& o = *opts;
  auto* secret = app.add_subcommand(
      "secret", "sealed configuration: values only recipients can open, written by trusted keys");
  secret->require_subcommand(1);
  auto key_option = [&o](CLI::App* cmd) {
    cmd->add_option(
        "--key", o.key_path,
        "your private key file (default $BERTH_SECRET_KEY or ~/.config/berth/secret.key)");
  };

  auto* keygen =
      secret->add_subcommand("keygen",
                             "make a key pair (X25519 + Ed25519): FILE (0600) and FILE.pub; "
                             "BERTH_SECRET_PASSPHRASE locks it");
  keygen->add_option("--out", o.out, "where to write it (default the --key default)");
  keygen->add_option("--name", o.name, "the key's name (default $USER)");
  keygen->add_flag("--json", o.json, "print JSON");
  keygen->callback([opts, &rc] { rc = Keygen(*opts); });

  auto* set =
      secret->add_subcommand("set", "seal a value (from FILE, or stdin) to every recipient");
  set->add_option("PATH", o.path, "db/password")->required();
  set->add_option("FILE", o.file, "the value's file, or - for stdin (the default)");
  key_option(set);
  set->add_flag("--json", o.json, "print JSON");
  set->callback([opts, &api, &rc] { rc = Set(api, *opts); });

  auto* get = secret->add_subcommand("get", "open a value with your key and print it");
  get->add_option("PATH", o.path)->required();
  get->add_option("-o,--out", o.out, "write it to this new file (0600) instead of stdout");
  key_option(get);
  get->callback([opts, &api, &rc] { rc = Get(api, *opts); });

  auto* ls = secret->add_subcommand("ls", "list values: path, version, size, writer, recipients");
  ls->add_option("PREFIX", o.prefix, "only paths starting with it");
  ls->add_flag("--json", o.json, "print JSON");
  ls->callback([opts, &api, &rc] { rc = Ls(api, *opts); });

  auto* rm = secret->add_subcommand("rm", "delete a value");
  rm->add_option("PATH", o.path)->required();
  rm->add_flag("--json", o.json, "print JSON");
  rm->callback([opts, &api, &rc] { rc = Rm(api, *opts); });

  auto* rec = secret->add_subcommand("recipients", "who values are sealed to, and who may write");
  rec->require_subcommand(1);
  auto* rls = rec->add_subcommand("ls", "list recipients (machines register themselves)");
  rls->add_flag("--json", o.json, "print JSON");
  rls->callback([opts, &api, &rc] { rc = RecipientsLs(api, *opts); });
  auto* radd = rec->add_subcommand("add", "add an operator's public key (from keygen's FILE.pub)");
  radd->add_option("NAME", o.name)->required();
  radd->add_option("PUBFILE", o.file, "the .pub file, or - for stdin")->required();
  radd->add_flag("--writer", o.writer, "trust values this key signs");
  radd->add_flag("--json", o.json, "print JSON");
  radd->callback([opts, &api, &rc] { rc = RecipientsAdd(api, *opts); });
  auto* rrm = rec->add_subcommand("rm", "remove a recipient (then rotate)");
  rrm->add_option("NAME", o.name)->required();
  rrm->add_flag("--json", o.json, "print JSON");
  rrm->callback([opts, &api, &rc] { rc = RecipientsRm(api, *opts); });

  auto* rotate = secret->add_subcommand(
      "rotate", "seal every value (under PREFIX) again, to the current recipients");
  rotate->add_option("PREFIX", o.prefix, "only paths starting with it");
  key_option(rotate);
  rotate->add_flag("--json", o.json, "print JSON");
  rotate->callback([opts, &api, &rc] { rc = Rotate(api, *opts); });
}

}  // namespace berth::cli
