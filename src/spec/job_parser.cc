#include "spec/job_parser.h"

#include <charconv>
#include <initializer_list>
#include <limits>
#include <set>
#include <utility>

namespace berth::spec {
namespace {

using std::chrono::milliseconds;

constexpr int64_t kMaxCount = 1'000'000;
constexpr int64_t kMaxCpu = 10'000'000;
constexpr int64_t kMinMemory = 1 << 20;

std::string KindName(const DocNode& n) {
  switch (n.kind) {
    case DocNode::Kind::kNull:
      return "nothing";
    case DocNode::Kind::kScalar:
      return "a scalar";
    case DocNode::Kind::kSequence:
      return "a list";
    case DocNode::Kind::kMap:
      return "a map";
  }
  return "?";
}

// The offending value as it should appear in a message: quoted, escaped, shortened.
std::string Shown(const DocNode& n) {
  if (n.kind != DocNode::Kind::kScalar) return KindName(n);
  constexpr size_t kMaxShown = 60;
  std::string out = "\"";
  for (size_t i = 0; i < n.scalar.size() && i < kMaxShown; ++i) {
    unsigned char c = static_cast<unsigned char>(n.scalar[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n.scalar.size() > kMaxShown) out += "...";
  return out + "\"";
}

bool IsLower(char c) {
  return c >= 'a' && c <= 'z';
}
bool IsUpper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// Port names become environment variable suffixes (BERTH_PORT_http), hence no '-'.
bool IsValidPortName(std::string_view s) {
  if (s.empty() || s.size() > 32 || !IsLower(s[0])) return false;
  for (char c : s) {
    if (!IsLower(c) && !IsDigit(c) && c != '_') return false;
  }
  return true;
}

bool IsValidEnvName(std::string_view s) {
  if (s.empty() || s.size() > 255 || IsDigit(s[0])) return false;
  for (char c : s) {
    if (!IsLower(c) && !IsUpper(c) && !IsDigit(c) && c != '_') return false;
  }
  return true;
}

// Machine attributes, label keys, datacenters, volume names: a conservative token alphabet.
bool IsToken(std::string_view s, std::string_view extra, size_t max_len) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    if (!IsLower(c) && !IsUpper(c) && !IsDigit(c) && extra.find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool IsAbsolutePath(std::string_view s) {
  return !s.empty() && s[0] == '/' && s.size() <= 4096 && s.find('\0') == std::string_view::npos;
}

// A DNS name in lower case, optionally "*." followed by one.
bool IsValidHost(std::string_view s) {
  if (s.substr(0, 2) == "*.") s.remove_prefix(2);
  if (s.empty() || s.size() > 253) return false;
  size_t label_len = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (label_len == 0 || s[i - 1] == '-') return false;
      label_len = 0;
      continue;
    }
    if (!IsLower(c) && !IsDigit(c) && c != '-') return false;
    if (c == '-' && label_len == 0) return false;
    if (++label_len > 63) return false;
  }
  return label_len > 0 && s.back() != '-';
}

bool IsPlacementStrategy(std::string_view s) {
  return s == "binpack" || s == "spread" || s == "random";
}

// A job name in which '*' may stand for any run of characters ("db-*", "*-cache").
bool IsJobPattern(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!IsLower(c) && !IsDigit(c) && c != '-' && c != '*') return false;
  }
  return true;
}

// An octal file mode written "0400", "400" or "0o400" (a string in JSON, since JSON has no
// octal numbers); nullopt for anything else or above 07777.
std::optional<int> ParseFileMode(std::string_view s) {
  if (s.substr(0, 2) == "0o") s.remove_prefix(2);
  if (s.empty() || s.size() > 5) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') return std::nullopt;
    v = v * 8 + (c - '0');
  }
  if (v > 07777) return std::nullopt;
  return v;
}

std::string Join(std::initializer_list<std::string_view> items) {
  std::string out;
  for (std::string_view s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

// One decoding pass over a document: each method reads one part of the schema into the model,
// applying defaults, and returns the first error found.
class Decoder {
 public:
  explicit Decoder(std::string_view source) : source_(source) {}

  Status DecodeJob(const DocNode& n, Job* job);

 private:
  // A map being read, with the path used in its messages.
  struct Fields {
    const DocNode& node;
    std::string path;

    // The value of `key`, or nullptr when it is absent or null (null means "use the default").
    const DocNode* Get(std::string_view key) const {
      for (size_t i = 0; i < node.keys.size(); ++i) {
        if (node.keys[i] == key) {
          const DocNode& v = node.children[i];
          return v.kind == DocNode::Kind::kNull ? nullptr : &v;
        }
      }
      return nullptr;
    }
    std::string PathOf(std::string_view key) const {
      return path.empty() ? std::string(key) : path + "." + std::string(key);
    }
  };

  Status Error(const DocNode& n, std::string_view path, std::string_view message) const {
    return DocumentError(source_, n.mark, path, message);
  }
  Status Missing(const Fields& f, std::string_view key, std::string_view why = "") const {
    std::string m = "required field is missing";
    if (!why.empty()) m = std::string(why);
    return Error(f.node, f.PathOf(key), m);
  }

  // Checks that `n` is a map whose keys are all in `allowed`.
  Status ExpectMap(const DocNode& n, const std::string& path,
                   std::initializer_list<std::string_view> allowed) const {
    if (n.kind != DocNode::Kind::kMap) {
      return Error(n, path, "expected a map, got " + KindName(n));
    }
    for (size_t i = 0; i < n.keys.size(); ++i) {
      bool known = false;
      for (std::string_view a : allowed) known = known || a == n.keys[i];
      if (!known) {
        std::string key_path = path.empty() ? n.keys[i] : path + "." + n.keys[i];
        return DocumentError(source_, n.key_marks[i], key_path,
                             "unknown field (expected one of: " + Join(allowed) + ")");
      }
    }
    return Status::Ok();
  }

  Status ExpectList(const DocNode& n, const std::string& path) const {
    if (n.kind != DocNode::Kind::kSequence) {
      return Error(n, path, "expected a list, got " + KindName(n));
    }
    return Status::Ok();
  }

  Status ScalarString(const DocNode& n, const std::string& path, std::string* out) const {
    if (n.kind != DocNode::Kind::kScalar) {
      return Error(n, path, "expected a string, got " + KindName(n));
    }
    if (n.scalar.find('\0') != std::string::npos) {
      return Error(n, path, "NUL characters are not allowed");
    }
    *out = n.scalar;
    return Status::Ok();
  }

  // Optional string field; `*out` keeps its default when absent.
  Status String(const Fields& f, std::string_view key, std::string* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    return ScalarString(*v, f.PathOf(key), out);
  }

  Status RequiredString(const Fields& f, std::string_view key, std::string* out) const {
    if (f.Get(key) == nullptr) return Missing(f, key);
    BERTH_RETURN_IF_ERROR(String(f, key, out));
    if (out->empty()) return Error(*f.Get(key), f.PathOf(key), "must not be empty");
    return Status::Ok();
  }

  Status Name(const Fields& f, std::string_view key, std::string* out) const {
    BERTH_RETURN_IF_ERROR(RequiredString(f, key, out));
    if (!IsValidName(*out)) {
      return Error(*f.Get(key), f.PathOf(key),
                   "expected a name of lower-case letters, digits and '-' (at most 63, "
                   "starting with a letter or digit), got " +
                       Shown(*f.Get(key)));
    }
    return Status::Ok();
  }

  template <typename T>
  Status Int(const Fields& f, std::string_view key, int64_t min, int64_t max, T* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    std::string range = std::to_string(min) + " to " + std::to_string(max);
    if (v->kind != DocNode::Kind::kScalar || v->quoted) {
      // A quoted "2" is a string in YAML and in JSON: strict typing says no.
      return Error(
          *v, f.PathOf(key),
          "expected an integer from " + range + ", got " +
              (v->kind == DocNode::Kind::kScalar ? "the string " + Shown(*v) : KindName(*v)));
    }
    const std::string& s = v->scalar;
    int64_t value = 0;
    const char* begin = s.data();
    const char* end = s.data() + s.size();
    if (!s.empty() && s[0] == '+') ++begin;
    auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec != std::errc() || ptr != end || begin == end || value < min || value > max) {
      return Error(*v, f.PathOf(key), "expected an integer from " + range + ", got " + Shown(*v));
    }
    *out = static_cast<T>(value);
    return Status::Ok();
  }

  Status Bool(const Fields& f, std::string_view key, bool* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    if (v->kind == DocNode::Kind::kScalar && !v->quoted) {
      const std::string& s = v->scalar;
      if (s == "true" || s == "True" || s == "TRUE") {
        *out = true;
        return Status::Ok();
      }
      if (s == "false" || s == "False" || s == "FALSE") {
        *out = false;
        return Status::Ok();
      }
    }
    return Error(*v, f.PathOf(key), "expected true or false, got " + Shown(*v));
  }

  Status Duration(const Fields& f, std::string_view key, milliseconds min,
                  milliseconds* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    std::optional<milliseconds> d;
    if (v->kind == DocNode::Kind::kScalar) d = ParseDuration(v->scalar);
    if (!d) {
      return Error(*v, f.PathOf(key),
                   "expected a duration like 500ms, 10s, 5m or 1h30m, got " + Shown(*v));
    }
    if (*d < min) {
      return Error(*v, f.PathOf(key), "must be at least " + FormatDuration(min));
    }
    *out = *d;
    return Status::Ok();
  }

  template <typename E>
  Status Enum(const Fields& f, std::string_view key,
              std::optional<E> (*from_name)(std::string_view),
              std::initializer_list<std::string_view> names, E* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    std::optional<E> e;
    if (v->kind == DocNode::Kind::kScalar) e = from_name(v->scalar);
    if (!e) {
      return Error(*v, f.PathOf(key), "expected one of " + Join(names) + ", got " + Shown(*v));
    }
    *out = *e;
    return Status::Ok();
  }

  Status StringList(const Fields& f, std::string_view key, std::vector<std::string>* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    std::string path = f.PathOf(key);
    BERTH_RETURN_IF_ERROR(ExpectList(*v, path));
    out->clear();
    for (size_t i = 0; i < v->children.size(); ++i) {
      std::string s;
      BERTH_RETURN_IF_ERROR(ScalarString(v->children[i], path + "[" + std::to_string(i) + "]", &s));
      out->push_back(std::move(s));
    }
    return Status::Ok();
  }

  // A map of strings; `valid_key` and `key_rule` describe what its keys may be.
  Status StringMap(const Fields& f, std::string_view key, bool (*valid_key)(std::string_view),
                   std::string_view key_rule, std::map<std::string, std::string>* out) const {
    const DocNode* v = f.Get(key);
    if (v == nullptr) return Status::Ok();
    std::string path = f.PathOf(key);
    if (v->kind != DocNode::Kind::kMap) {
      return Error(*v, path, "expected a map, got " + KindName(*v));
    }
    for (size_t i = 0; i < v->keys.size(); ++i) {
      std::string item_path = path + "." + v->keys[i];
      if (!valid_key(v->keys[i])) {
        return DocumentError(source_, v->key_marks[i], item_path, std::string(key_rule));
      }
      std::string s;
      // An env or label value may be written as a number or a boolean: it is kept as text.
      if (v->children[i].kind != DocNode::Kind::kNull) {
        BERTH_RETURN_IF_ERROR(ScalarString(v->children[i], item_path, &s));
      }
      (*out)[v->keys[i]] = std::move(s);
    }
    return Status::Ok();
  }

  Status DecodeConstraints(const Fields& f, std::vector<Constraint>* out) const;
  Status DecodeConstraint(const DocNode& n, const std::string& path, Constraint* c) const;
  Status DecodeUpdate(const DocNode& n, const std::string& path, UpdatePolicy* u) const;
  Status DecodeGroup(const DocNode& n, const std::string& path, const Job& job, Group* g) const;
  // Reads a placement block over `*p`, which holds what the block inherits (the defaults, or
  // the job-level block for a group): each key written replaces the inherited value, and
  // writing `strategy` drops an inherited `spread`.
  Status DecodePlacement(const DocNode& n, const std::string& path, const Job& job,
                         Placement* p) const;
  Status DecodeRestart(const DocNode& n, const std::string& path, RestartPolicy* r) const;
  Status DecodeTask(const DocNode& n, const std::string& path, Task* t) const;
  Status DecodePort(const DocNode& n, const std::string& path, const Task& t, Port* p) const;
  Status DecodeResources(const DocNode& n, const std::string& path, Resources* r) const;
  Status DecodeHealth(const DocNode& n, const std::string& path, const Task& t,
                      HealthCheck* h) const;
  Status DecodeRoute(const DocNode& n, const std::string& path, const Task& t, Route* r) const;
  Status DecodeVolume(const DocNode& n, const std::string& path, Volume* v) const;
  Status DecodeSecret(const DocNode& n, const std::string& path, const Task& t, SecretRef* s) const;
  // Reads a port reference, defaulting to the task's only port.
  Status PortRef(const Fields& f, const Task& t, std::string* out) const;

  std::string_view source_;
};

Status Decoder::DecodeJob(const DocNode& n, Job* job) {
  if (n.kind == DocNode::Kind::kNull) return Error(n, "", "the document is empty");
  BERTH_RETURN_IF_ERROR(ExpectMap(n, "",
                                  {"name", "type", "priority", "datacenters", "constraints",
                                   "update", "placement", "groups", "version"}));
  Fields f{n, ""};
  BERTH_RETURN_IF_ERROR(Name(f, "name", &job->name));
  BERTH_RETURN_IF_ERROR(
      Enum<JobType>(f, "type", &JobTypeFromName, {"service", "batch", "system"}, &job->type));
  BERTH_RETURN_IF_ERROR(Int(f, "priority", 1, 100, &job->priority));
  BERTH_RETURN_IF_ERROR(StringList(f, "datacenters", &job->datacenters));
  std::set<std::string> dcs;
  for (size_t i = 0; i < job->datacenters.size(); ++i) {
    const DocNode& item = f.Get("datacenters")->children[i];
    std::string path = "datacenters[" + std::to_string(i) + "]";
    if (!IsToken(job->datacenters[i], "-_.", 63)) {
      return Error(
          item, path,
          "expected a datacenter name of letters, digits, '-', '_' and '.', got " + Shown(item));
    }
    if (!dcs.insert(job->datacenters[i]).second) return Error(item, path, "duplicate datacenter");
  }
  BERTH_RETURN_IF_ERROR(DecodeConstraints(f, &job->constraints));
  if (const DocNode* u = f.Get("update")) {
    BERTH_RETURN_IF_ERROR(DecodeUpdate(*u, "update", &job->update));
  }
  // The job-level block is every group's starting point.
  Placement job_placement;
  if (const DocNode* p = f.Get("placement")) {
    BERTH_RETURN_IF_ERROR(DecodePlacement(*p, "placement", *job, &job_placement));
  }
  const DocNode* groups = f.Get("groups");
  if (groups == nullptr) return Missing(f, "groups");
  BERTH_RETURN_IF_ERROR(ExpectList(*groups, "groups"));
  if (groups->children.empty()) return Error(*groups, "groups", "a job needs at least one group");
  std::set<std::string> names;
  for (size_t i = 0; i < groups->children.size(); ++i) {
    std::string path = "groups[" + std::to_string(i) + "]";
    Group g;
    g.placement = job_placement;
    BERTH_RETURN_IF_ERROR(DecodeGroup(groups->children[i], path, *job, &g));
    if (!names.insert(g.name).second) {
      return Error(*Fields{groups->children[i], path}.Get("name"), path + ".name",
                   "duplicate group name \"" + g.name + "\"");
    }
    job->groups.push_back(std::move(g));
  }
  BERTH_RETURN_IF_ERROR(Int(f, "version", 0, std::numeric_limits<int64_t>::max(), &job->version));
  return Status::Ok();
}

Status Decoder::DecodeConstraints(const Fields& f, std::vector<Constraint>* out) const {
  const DocNode* v = f.Get("constraints");
  if (v == nullptr) return Status::Ok();
  std::string path = f.PathOf("constraints");
  BERTH_RETURN_IF_ERROR(ExpectList(*v, path));
  for (size_t i = 0; i < v->children.size(); ++i) {
    Constraint c;
    BERTH_RETURN_IF_ERROR(
        DecodeConstraint(v->children[i], path + "[" + std::to_string(i) + "]", &c));
    out->push_back(std::move(c));
  }
  return Status::Ok();
}

Status Decoder::DecodeConstraint(const DocNode& n, const std::string& path, Constraint* c) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"attribute", "operator", "value"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(Enum<ConstraintOperator>(
      f, "operator", &ConstraintOperatorFromName,
      {"==", "!=", "regexp", "set_contains", "version", "is_set", "is_not_set", "distinct_hosts"},
      &c->op));
  BERTH_RETURN_IF_ERROR(String(f, "attribute", &c->attribute));
  BERTH_RETURN_IF_ERROR(String(f, "value", &c->value));
  std::string_view op = ConstraintOperatorName(c->op);
  if (c->op == ConstraintOperator::kDistinctHosts) {
    if (f.Get("attribute") != nullptr) {
      return Error(*f.Get("attribute"), f.PathOf("attribute"),
                   "not allowed with operator distinct_hosts");
    }
  } else {
    if (f.Get("attribute") == nullptr) return Missing(f, "attribute");
    if (!IsToken(c->attribute, "-_./", 255)) {
      return Error(
          *f.Get("attribute"), f.PathOf("attribute"),
          "expected an attribute such as os.name or meta.rack, got " + Shown(*f.Get("attribute")));
    }
  }
  bool wants_value = c->op != ConstraintOperator::kIsSet &&
                     c->op != ConstraintOperator::kIsNotSet &&
                     c->op != ConstraintOperator::kDistinctHosts;
  if (wants_value && c->value.empty()) {
    if (f.Get("value") == nullptr) {
      return Missing(f, "value", "required with operator " + std::string(op));
    }
    return Error(*f.Get("value"), f.PathOf("value"), "must not be empty");
  }
  if (!wants_value && f.Get("value") != nullptr) {
    return Error(*f.Get("value"), f.PathOf("value"),
                 "not allowed with operator " + std::string(op));
  }
  return Status::Ok();
}

Status Decoder::DecodeUpdate(const DocNode& n, const std::string& path, UpdatePolicy* u) const {
  BERTH_RETURN_IF_ERROR(
      ExpectMap(n, path, {"max_parallel", "min_healthy_time", "healthy_deadline", "auto_revert"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(Int(f, "max_parallel", 0, kMaxCount, &u->max_parallel));
  BERTH_RETURN_IF_ERROR(Duration(f, "min_healthy_time", milliseconds(0), &u->min_healthy_time));
  BERTH_RETURN_IF_ERROR(Duration(f, "healthy_deadline", milliseconds(1), &u->healthy_deadline));
  BERTH_RETURN_IF_ERROR(Bool(f, "auto_revert", &u->auto_revert));
  if (u->healthy_deadline <= u->min_healthy_time) {
    const DocNode* at = f.Get("healthy_deadline") ? f.Get("healthy_deadline") : &n;
    return Error(
        *at, f.PathOf("healthy_deadline"),
        "must be longer than min_healthy_time (" + FormatDuration(u->min_healthy_time) + ")");
  }
  return Status::Ok();
}

Status Decoder::DecodePlacement(const DocNode& n, const std::string& path, const Job& job,
                                Placement* p) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"strategy", "spread", "machine_of", "conflicts"}));
  Fields f{n, path};
  if (const DocNode* v = f.Get("strategy")) {
    std::string strategy;
    BERTH_RETURN_IF_ERROR(ScalarString(*v, f.PathOf("strategy"), &strategy));
    if (!IsPlacementStrategy(strategy)) {
      return Error(*v, f.PathOf("strategy"),
                   "unknown strategy " + Shown(*v) + " (expected one of binpack, spread, random)");
    }
    // An inherited spread attribute goes with an inherited spread strategy only.
    if (strategy != "spread") p->spread_attribute.clear();
    p->strategy = std::move(strategy);
  }
  if (const DocNode* v = f.Get("spread")) {
    BERTH_RETURN_IF_ERROR(ScalarString(*v, f.PathOf("spread"), &p->spread_attribute));
    if (p->strategy != "spread") {
      return Error(*v, f.PathOf("spread"),
                   "only allowed with strategy spread (the strategy here is " + p->strategy + ")");
    }
    if (!IsToken(p->spread_attribute, "-_./", 255)) {
      return Error(*v, f.PathOf("spread"),
                   "expected an attribute such as meta.rack or machine.id, got " + Shown(*v));
    }
  }
  if (p->strategy == "spread" && p->spread_attribute.empty()) p->spread_attribute = "machine.id";

  if (const DocNode* v = f.Get("machine_of")) {
    std::vector<std::string> jobs;
    BERTH_RETURN_IF_ERROR(StringList(f, "machine_of", &jobs));
    std::set<std::string> seen;
    for (size_t i = 0; i < jobs.size(); ++i) {
      const DocNode& item = v->children[i];
      std::string item_path = f.PathOf("machine_of") + "[" + std::to_string(i) + "]";
      if (!IsValidName(jobs[i])) {
        return Error(
            item, item_path,
            "expected a job name of lower-case letters, digits and '-', got " + Shown(item));
      }
      if (jobs[i] == job.name) {
        return Error(item, item_path,
                     "names this job itself (a job cannot wait for machines already running it)");
      }
      if (!seen.insert(jobs[i]).second) return Error(item, item_path, "duplicate job name");
    }
    p->machine_of = std::move(jobs);
  }
  if (const DocNode* v = f.Get("conflicts")) {
    std::vector<std::string> patterns;
    BERTH_RETURN_IF_ERROR(StringList(f, "conflicts", &patterns));
    std::set<std::string> seen;
    for (size_t i = 0; i < patterns.size(); ++i) {
      const DocNode& item = v->children[i];
      std::string item_path = f.PathOf("conflicts") + "[" + std::to_string(i) + "]";
      if (!IsJobPattern(patterns[i])) {
        return Error(item, item_path,
                     "expected a job name or a pattern of lower-case letters, digits, '-' and "
                     "'*' (at most 63), got " +
                         Shown(item));
      }
      if (!seen.insert(patterns[i]).second) return Error(item, item_path, "duplicate pattern");
    }
    p->conflicts = std::move(patterns);
  }
  return Status::Ok();
}

Status Decoder::DecodeGroup(const DocNode& n, const std::string& path, const Job& job,
                            Group* g) const {
  BERTH_RETURN_IF_ERROR(
      ExpectMap(n, path, {"name", "count", "restart", "constraints", "placement", "tasks"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(Name(f, "name", &g->name));
  BERTH_RETURN_IF_ERROR(Int(f, "count", 0, kMaxCount, &g->count));
  if (const DocNode* r = f.Get("restart")) {
    BERTH_RETURN_IF_ERROR(DecodeRestart(*r, f.PathOf("restart"), &g->restart));
  }
  BERTH_RETURN_IF_ERROR(DecodeConstraints(f, &g->constraints));
  if (const DocNode* p = f.Get("placement")) {
    BERTH_RETURN_IF_ERROR(DecodePlacement(*p, f.PathOf("placement"), job, &g->placement));
  }
  const DocNode* tasks = f.Get("tasks");
  std::string tasks_path = f.PathOf("tasks");
  if (tasks == nullptr) return Missing(f, "tasks");
  BERTH_RETURN_IF_ERROR(ExpectList(*tasks, tasks_path));
  if (tasks->children.empty()) return Error(*tasks, tasks_path, "a group needs at least one task");
  std::set<std::string> names;
  std::set<int> static_ports;  // the group's tasks share a machine, so its host ports
  for (size_t i = 0; i < tasks->children.size(); ++i) {
    std::string task_path = tasks_path + "[" + std::to_string(i) + "]";
    Task t;
    BERTH_RETURN_IF_ERROR(DecodeTask(tasks->children[i], task_path, &t));
    Fields tf{tasks->children[i], task_path};
    if (!names.insert(t.name).second) {
      return Error(*tf.Get("name"), tf.PathOf("name"), "duplicate task name \"" + t.name + "\"");
    }
    for (size_t p = 0; p < t.ports.size(); ++p) {
      if (t.ports[p].static_port != 0 && !static_ports.insert(t.ports[p].static_port).second) {
        const DocNode& port_node = tf.Get("ports")->children[p];
        std::string port_path = tf.PathOf("ports") + "[" + std::to_string(p) + "]";
        return Error(*Fields{port_node, port_path}.Get("static"), port_path + ".static",
                     "host port " + std::to_string(t.ports[p].static_port) +
                         " is already used by another port of this group");
      }
    }
    g->tasks.push_back(std::move(t));
  }
  return Status::Ok();
}

Status Decoder::DecodeRestart(const DocNode& n, const std::string& path, RestartPolicy* r) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"attempts", "interval", "delay", "max_delay", "mode"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(Int(f, "attempts", 0, 1000, &r->attempts));
  BERTH_RETURN_IF_ERROR(Duration(f, "interval", milliseconds(1), &r->interval));
  BERTH_RETURN_IF_ERROR(Duration(f, "delay", milliseconds(0), &r->delay));
  BERTH_RETURN_IF_ERROR(Duration(f, "max_delay", milliseconds(0), &r->max_delay));
  BERTH_RETURN_IF_ERROR(
      Enum<RestartMode>(f, "mode", &RestartModeFromName, {"delay", "fail"}, &r->mode));
  if (r->max_delay < r->delay) {
    // Only the delay was raised: the cap follows it rather than contradicting it.
    if (f.Get("max_delay") == nullptr) {
      r->max_delay = r->delay;
    } else {
      return Error(*f.Get("max_delay"), f.PathOf("max_delay"),
                   "must be at least delay (" + FormatDuration(r->delay) + ")");
    }
  }
  return Status::Ok();
}

Status Decoder::DecodeTask(const DocNode& n, const std::string& path, Task* t) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(
      n, path,
      {"name", "driver", "image", "command", "args", "env", "workdir", "ports", "resources",
       "constraints", "health", "route", "volumes", "kill_timeout", "labels", "secrets"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(Name(f, "name", &t->name));
  if (f.Get("driver") == nullptr) return Missing(f, "driver", "required (docker or process)");
  BERTH_RETURN_IF_ERROR(
      Enum<DriverKind>(f, "driver", &DriverKindFromName, {"docker", "process"}, &t->driver));
  bool docker = t->driver == DriverKind::kDocker;

  BERTH_RETURN_IF_ERROR(String(f, "image", &t->image));
  if (docker && t->image.empty()) {
    if (f.Get("image") == nullptr) return Missing(f, "image", "required for the docker driver");
    return Error(*f.Get("image"), f.PathOf("image"), "must not be empty");
  }
  if (docker && !IsToken(t->image, "-_./:@", 1024)) {
    return Error(
        *f.Get("image"), f.PathOf("image"),
        "expected an image reference such as busybox:latest, got " + Shown(*f.Get("image")));
  }
  if (!docker && f.Get("image") != nullptr) {
    return Error(*f.Get("image"), f.PathOf("image"), "not allowed with the process driver");
  }
  BERTH_RETURN_IF_ERROR(String(f, "command", &t->command));
  if (!docker && f.Get("command") == nullptr) {
    return Missing(f, "command", "required for the process driver");
  }
  if (f.Get("command") != nullptr && t->command.empty()) {
    return Error(*f.Get("command"), f.PathOf("command"), "must not be empty");
  }
  BERTH_RETURN_IF_ERROR(StringList(f, "args", &t->args));
  BERTH_RETURN_IF_ERROR(StringMap(
      f, "env", &IsValidEnvName,
      "expected an environment variable name (letters, digits, '_', not starting with a digit)",
      &t->env));
  if (const DocNode* env = f.Get("env")) {
    for (size_t i = 0; i < env->keys.size(); ++i) {
      if (env->keys[i].rfind("BERTH_", 0) == 0) {
        return DocumentError(source_, env->key_marks[i], f.PathOf("env") + "." + env->keys[i],
                             "BERTH_ variables are reserved: the agent sets them");
      }
    }
  }
  BERTH_RETURN_IF_ERROR(String(f, "workdir", &t->workdir));
  if (f.Get("workdir") != nullptr && !IsAbsolutePath(t->workdir)) {
    return Error(*f.Get("workdir"), f.PathOf("workdir"),
                 "expected an absolute path, got " + Shown(*f.Get("workdir")));
  }

  if (const DocNode* ports = f.Get("ports")) {
    std::string ports_path = f.PathOf("ports");
    BERTH_RETURN_IF_ERROR(ExpectList(*ports, ports_path));
    for (size_t i = 0; i < ports->children.size(); ++i) {
      std::string port_path = ports_path + "[" + std::to_string(i) + "]";
      Port p;
      BERTH_RETURN_IF_ERROR(DecodePort(ports->children[i], port_path, *t, &p));
      if (t->FindPort(p.name) != nullptr) {
        return Error(*Fields{ports->children[i], port_path}.Get("name"), port_path + ".name",
                     "duplicate port name \"" + p.name + "\"");
      }
      t->ports.push_back(std::move(p));
    }
  }
  if (const DocNode* r = f.Get("resources")) {
    BERTH_RETURN_IF_ERROR(DecodeResources(*r, f.PathOf("resources"), &t->resources));
  }
  BERTH_RETURN_IF_ERROR(DecodeConstraints(f, &t->constraints));
  if (const DocNode* h = f.Get("health")) {
    HealthCheck hc;
    BERTH_RETURN_IF_ERROR(DecodeHealth(*h, f.PathOf("health"), *t, &hc));
    t->health = std::move(hc);
  }
  if (const DocNode* r = f.Get("route")) {
    Route route;
    BERTH_RETURN_IF_ERROR(DecodeRoute(*r, f.PathOf("route"), *t, &route));
    t->route = std::move(route);
  }
  if (const DocNode* vols = f.Get("volumes")) {
    std::string vols_path = f.PathOf("volumes");
    BERTH_RETURN_IF_ERROR(ExpectList(*vols, vols_path));
    if (!docker && !vols->children.empty()) {
      return Error(*vols, vols_path, "volumes are only supported by the docker driver");
    }
    std::set<std::string> targets;
    for (size_t i = 0; i < vols->children.size(); ++i) {
      std::string vol_path = vols_path + "[" + std::to_string(i) + "]";
      Volume v;
      BERTH_RETURN_IF_ERROR(DecodeVolume(vols->children[i], vol_path, &v));
      if (!targets.insert(v.target).second) {
        return Error(*Fields{vols->children[i], vol_path}.Get("target"), vol_path + ".target",
                     "another volume is already mounted at " + v.target);
      }
      t->volumes.push_back(std::move(v));
    }
  }
  BERTH_RETURN_IF_ERROR(Duration(f, "kill_timeout", milliseconds(0), &t->kill_timeout));
  BERTH_RETURN_IF_ERROR(StringMap(
      f, "labels", [](std::string_view k) { return IsToken(k, "-_./", 253); },
      "expected a label key of letters, digits, '-', '_', '.' and '/'", &t->labels));
  if (const DocNode* secrets = f.Get("secrets")) {
    std::string secrets_path = f.PathOf("secrets");
    BERTH_RETURN_IF_ERROR(ExpectList(*secrets, secrets_path));
    std::set<std::string> files;
    std::set<std::string> envs;
    for (size_t i = 0; i < secrets->children.size(); ++i) {
      std::string secret_path = secrets_path + "[" + std::to_string(i) + "]";
      SecretRef ref;
      BERTH_RETURN_IF_ERROR(DecodeSecret(secrets->children[i], secret_path, *t, &ref));
      Fields sf{secrets->children[i], secret_path};
      if (!ref.file.empty() && !files.insert(ref.file).second) {
        return Error(*sf.Get("file"), sf.PathOf("file"),
                     "another secret of this task already goes to file \"" + ref.file + "\"");
      }
      if (!ref.env.empty() && !envs.insert(ref.env).second) {
        return Error(*sf.Get("env"), sf.PathOf("env"),
                     "another secret of this task already goes to env " + ref.env);
      }
      t->secrets.push_back(std::move(ref));
    }
    // The secret files are mounted read-only at /run/secrets: a volume there (or inside it)
    // would hide them or fail to mount. A volume at a parent (/run) is fine: the engine mounts
    // the deeper path on top.
    if (docker && !files.empty()) {
      const std::string dir(kContainerSecretsDir);
      for (size_t i = 0; i < t->volumes.size(); ++i) {
        const std::string& target = t->volumes[i].target;
        if (target == dir || target.rfind(dir + "/", 0) == 0) {
          std::string vol_path = f.PathOf("volumes") + "[" + std::to_string(i) + "]";
          return Error(*Fields{f.Get("volumes")->children[i], vol_path}.Get("target"),
                       vol_path + ".target",
                       "overlaps " + dir + ", where the task's secret files are mounted");
        }
      }
    }
  }
  return Status::Ok();
}

Status Decoder::DecodeSecret(const DocNode& n, const std::string& path, const Task& t,
                             SecretRef* s) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"path", "file", "env", "mode", "uid", "gid"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(RequiredString(f, "path", &s->path));
  if (!IsValidSecretPath(s->path)) {
    return Error(*f.Get("path"), f.PathOf("path"),
                 "expected a relative secret path such as db/password ('/'-separated segments of "
                 "letters, digits, '.', '_' and '-'; no empty, \".\" or \"..\" segment), got " +
                     Shown(*f.Get("path")));
  }
  const DocNode* file = f.Get("file");
  const DocNode* env = f.Get("env");
  if (file != nullptr && env != nullptr) {
    return Error(*env, f.PathOf("env"), "a secret goes to a file or to env, not both");
  }
  if (file == nullptr && env == nullptr) {
    return Missing(f, "file", "required: where the secret goes (file, or env)");
  }
  if (file != nullptr) {
    BERTH_RETURN_IF_ERROR(RequiredString(f, "file", &s->file));
    if (!IsValidSecretFileName(s->file)) {
      return Error(*file, f.PathOf("file"),
                   "expected a file name of letters, digits, '.', '_' and '-' (no '/', not "
                   "\".\" or \"..\"), got " +
                       Shown(*file));
    }
  } else {
    BERTH_RETURN_IF_ERROR(RequiredString(f, "env", &s->env));
    if (!IsValidEnvName(s->env)) {
      return Error(*env, f.PathOf("env"),
                   "expected an environment variable name (letters, digits, '_', not starting "
                   "with a digit), got " +
                       Shown(*env));
    }
    if (s->env.rfind("BERTH_", 0) == 0) {
      return Error(*env, f.PathOf("env"), "BERTH_ variables are reserved: the agent sets them");
    }
    if (t.env.count(s->env)) {
      return Error(*env, f.PathOf("env"), s->env + " is already set in the task's env");
    }
  }
  if (const DocNode* mode = f.Get("mode")) {
    if (file == nullptr) return Error(*mode, f.PathOf("mode"), "only allowed for a file secret");
    std::optional<int> bits;
    if (mode->kind == DocNode::Kind::kScalar) bits = ParseFileMode(mode->scalar);
    if (!bits || (*bits & 077) != 0 || (*bits & 0400) == 0) {
      return Error(*mode, f.PathOf("mode"),
                   "expected an owner-only octal mode that lets the owner read: 0400, 0500, 0600 "
                   "or 0700, got " +
                       Shown(*mode));
    }
    s->mode = *bits;
  }
  for (const char* owner : {"uid", "gid"}) {
    if (const DocNode* v = f.Get(owner); v != nullptr && file == nullptr) {
      return Error(*v, f.PathOf(owner), "only allowed for a file secret");
    }
  }
  BERTH_RETURN_IF_ERROR(Int(f, "uid", 0, kMaxOwnerId, &s->uid));
  BERTH_RETURN_IF_ERROR(Int(f, "gid", 0, kMaxOwnerId, &s->gid));
  return Status::Ok();
}

Status Decoder::DecodePort(const DocNode& n, const std::string& path, const Task& t,
                           Port* p) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"name", "to", "static"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(RequiredString(f, "name", &p->name));
  if (!IsValidPortName(p->name)) {
    return Error(*f.Get("name"), f.PathOf("name"),
                 "expected a port name of lower-case letters, digits and '_' starting with a "
                 "letter (at most 32), got " +
                     Shown(*f.Get("name")));
  }
  BERTH_RETURN_IF_ERROR(Int(f, "to", 1, 65535, &p->to));
  BERTH_RETURN_IF_ERROR(Int(f, "static", 1, 65535, &p->static_port));
  if (t.driver == DriverKind::kProcess && f.Get("to") != nullptr) {
    return Error(*f.Get("to"), f.PathOf("to"),
                 "not allowed with the process driver (a process listens on the host port)");
  }
  return Status::Ok();
}

Status Decoder::DecodeResources(const DocNode& n, const std::string& path, Resources* r) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"cpu", "memory"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(Int(f, "cpu", 1, kMaxCpu, &r->cpu));
  if (const DocNode* m = f.Get("memory")) {
    std::optional<int64_t> bytes;
    if (m->kind == DocNode::Kind::kScalar) bytes = ParseSize(m->scalar);
    if (!bytes) {
      return Error(*m, f.PathOf("memory"),
                   "expected a size like 256MiB (units B, KiB, MiB, GiB, TiB; a plain number is "
                   "MiB), got " +
                       Shown(*m));
    }
    if (*bytes < kMinMemory) return Error(*m, f.PathOf("memory"), "must be at least 1MiB");
    r->memory_bytes = *bytes;
  }
  return Status::Ok();
}

Status Decoder::PortRef(const Fields& f, const Task& t, std::string* out) const {
  if (f.Get("port") == nullptr) {
    if (t.ports.size() == 1) {
      *out = t.ports[0].name;
      return Status::Ok();
    }
    return Missing(f, "port",
                   t.ports.empty() ? "required, and the task declares no ports"
                                   : "required when the task declares several ports");
  }
  BERTH_RETURN_IF_ERROR(String(f, "port", out));
  if (t.FindPort(*out) == nullptr) {
    std::string declared;
    for (const Port& p : t.ports) declared += (declared.empty() ? "" : ", ") + p.name;
    return Error(*f.Get("port"), f.PathOf("port"),
                 "names no port of the task (declared: " +
                     (declared.empty() ? std::string("none") : declared) + "), got " +
                     Shown(*f.Get("port")));
  }
  return Status::Ok();
}

Status Decoder::DecodeHealth(const DocNode& n, const std::string& path, const Task& t,
                             HealthCheck* h) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path,
                                  {"type", "port", "path", "command", "interval", "timeout",
                                   "healthy_threshold", "unhealthy_threshold"}));
  Fields f{n, path};
  if (f.Get("type") == nullptr) return Missing(f, "type", "required (http, tcp or command)");
  BERTH_RETURN_IF_ERROR(Enum<HealthCheckType>(f, "type", &HealthCheckTypeFromName,
                                              {"http", "tcp", "command"}, &h->type));
  if (h->type == HealthCheckType::kCommand) {
    h->path.clear();
    for (std::string_view k : {"port", "path"}) {
      if (f.Get(k) != nullptr) {
        return Error(*f.Get(k), f.PathOf(k), "not allowed in a command check");
      }
    }
    BERTH_RETURN_IF_ERROR(StringList(f, "command", &h->command));
    if (h->command.empty()) {
      return f.Get("command") == nullptr
                 ? Missing(f, "command", "required in a command check")
                 : Error(*f.Get("command"), f.PathOf("command"), "must not be empty");
    }
  } else {
    if (f.Get("command") != nullptr) {
      return Error(*f.Get("command"), f.PathOf("command"), "only allowed in a command check");
    }
    BERTH_RETURN_IF_ERROR(PortRef(f, t, &h->port));
    if (h->type == HealthCheckType::kTcp) {
      h->path.clear();
      if (f.Get("path") != nullptr) {
        return Error(*f.Get("path"), f.PathOf("path"), "only allowed in an http check");
      }
    } else {
      BERTH_RETURN_IF_ERROR(String(f, "path", &h->path));
      if (h->path.empty() || h->path[0] != '/') {
        return Error(*f.Get("path"), f.PathOf("path"),
                     "expected a path starting with '/', got " + Shown(*f.Get("path")));
      }
    }
  }
  BERTH_RETURN_IF_ERROR(Duration(f, "interval", milliseconds(1), &h->interval));
  BERTH_RETURN_IF_ERROR(Duration(f, "timeout", milliseconds(1), &h->timeout));
  BERTH_RETURN_IF_ERROR(Int(f, "healthy_threshold", 1, 100, &h->healthy_threshold));
  BERTH_RETURN_IF_ERROR(Int(f, "unhealthy_threshold", 1, 100, &h->unhealthy_threshold));
  return Status::Ok();
}

Status Decoder::DecodeRoute(const DocNode& n, const std::string& path, const Task& t,
                            Route* r) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"hosts", "port", "path_prefix"}));
  Fields f{n, path};
  if (f.Get("hosts") == nullptr) return Missing(f, "hosts");
  BERTH_RETURN_IF_ERROR(StringList(f, "hosts", &r->hosts));
  if (r->hosts.empty()) return Error(*f.Get("hosts"), f.PathOf("hosts"), "must not be empty");
  std::set<std::string> seen;
  for (size_t i = 0; i < r->hosts.size(); ++i) {
    const DocNode& item = f.Get("hosts")->children[i];
    std::string item_path = f.PathOf("hosts") + "[" + std::to_string(i) + "]";
    if (!IsValidHost(r->hosts[i])) {
      return Error(item, item_path,
                   "expected a lower-case host name such as web.example.com, got " + Shown(item));
    }
    if (!seen.insert(r->hosts[i]).second) return Error(item, item_path, "duplicate host");
  }
  BERTH_RETURN_IF_ERROR(PortRef(f, t, &r->port));
  BERTH_RETURN_IF_ERROR(String(f, "path_prefix", &r->path_prefix));
  if (r->path_prefix.empty() || r->path_prefix[0] != '/') {
    return Error(*f.Get("path_prefix"), f.PathOf("path_prefix"),
                 "expected a path starting with '/', got " + Shown(*f.Get("path_prefix")));
  }
  return Status::Ok();
}

Status Decoder::DecodeVolume(const DocNode& n, const std::string& path, Volume* v) const {
  BERTH_RETURN_IF_ERROR(ExpectMap(n, path, {"source", "target", "read_only"}));
  Fields f{n, path};
  BERTH_RETURN_IF_ERROR(RequiredString(f, "source", &v->source));
  if (!IsAbsolutePath(v->source) && !IsToken(v->source, "-_.", 255)) {
    return Error(*f.Get("source"), f.PathOf("source"),
                 "expected a volume name (letters, digits, '-', '_', '.') or an absolute host "
                 "path, got " +
                     Shown(*f.Get("source")));
  }
  BERTH_RETURN_IF_ERROR(RequiredString(f, "target", &v->target));
  if (!IsAbsolutePath(v->target)) {
    return Error(*f.Get("target"), f.PathOf("target"),
                 "expected an absolute path, got " + Shown(*f.Get("target")));
  }
  BERTH_RETURN_IF_ERROR(Bool(f, "read_only", &v->read_only));
  return Status::Ok();
}

}  // namespace

Result<Job> DecodeJob(const DocNode& root, std::string_view source) {
  Job job;
  Decoder decoder(source);
  BERTH_RETURN_IF_ERROR(decoder.DecodeJob(root, &job));
  return job;
}

Result<Job> ParseJobYaml(std::string_view text, std::string_view filename) {
  BERTH_ASSIGN_OR_RETURN(DocNode root, DocumentFromYaml(text, filename));
  return DecodeJob(root, filename);
}

Result<Job> ParseJobJson(std::string_view json_text, std::string_view source_name) {
  BERTH_ASSIGN_OR_RETURN(DocNode root, DocumentFromJsonText(json_text, source_name));
  return DecodeJob(root, source_name);
}

}  // namespace berth::spec
