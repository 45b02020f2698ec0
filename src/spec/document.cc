#include "spec/document.h"

#include <algorithm>
#include <exception>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

namespace berth::spec {
namespace {

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += len;
  }
  return true;
}

std::string IndexPath(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string KeyPath(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

Mark FromYamlMark(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

// Builds a DocNode straight from yaml-cpp's parse events. yaml-cpp's own node graph is not used:
// YAML::LoadAll can loop forever on some malformed input (found by fuzzing), and the graph
// shares aliased nodes, so each alias would have to be bounded anyway. Here an alias is a copy
// charged to the node and byte budgets, an alias to an anchor still open (a cycle, "&a [*a]")
// is an error, and nesting stops at kMaxDocumentDepth long before yaml-cpp's own limit.
class YamlTreeBuilder : public YAML::EventHandler {
 public:
  // Thrown through yaml-cpp's parser and caught in DocumentFromYaml.
  struct BuildError {
    Status status;
  };

  explicit YamlTreeBuilder(std::string_view source) : source_(source) {}

  bool has_root() const { return has_root_; }
  Mark document_mark() const { return document_mark_; }
  DocNode TakeRoot() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark& mark) override { document_mark_ = FromYamlMark(mark); }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    DocNode n;
    n.mark = FromYamlMark(mark);
    Add(std::move(n), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      Fail(FromYamlMark(mark), "an alias may not refer to an enclosing anchor");
    }
    Charge(FromYamlMark(mark), it->second.nodes, it->second.bytes);
    DocNode copy = it->second.node;
    Add(std::move(copy), YAML::NullAnchor, /*charged=*/true);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    DocNode n;
    n.kind = DocNode::Kind::kScalar;
    n.mark = FromYamlMark(mark);
    n.scalar = value;
    // yaml-cpp tags a quoted or block scalar "!" and a plain one "?".
    n.quoted = tag == "!" || tag == "tag:yaml.org,2002:str";
    if (!ValidUtf8(n.scalar)) Fail(n.mark, "invalid UTF-8");
    Add(std::move(n), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    Open(DocNode::Kind::kSequence, FromYamlMark(mark), anchor);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    Open(DocNode::Kind::kMap, FromYamlMark(mark), anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct OpenNode {
    DocNode node;  // a map collects key, value, key, value... in children until it closes
    YAML::anchor_t anchor;
  };
  struct Anchored {
    DocNode node;
    size_t nodes;
    size_t bytes;
  };

  [[noreturn]] void Fail(Mark mark, std::string_view message) {
    throw BuildError{DocumentError(source_, mark, "", message)};
  }

  void Charge(Mark mark, size_t nodes, size_t bytes) {
    nodes_ += nodes;
    bytes_ += bytes;
    if (nodes_ > kMaxDocumentNodes || bytes_ > kMaxDocumentTextBytes) {
      Fail(mark, "document too large (too many nodes, or aliases expanding to them)");
    }
  }

  static void Measure(const DocNode& n, size_t* nodes, size_t* bytes) {
    *nodes += 1;
    *bytes += n.scalar.size();
    for (const std::string& k : n.keys) *bytes += k.size();
    for (const DocNode& c : n.children) Measure(c, nodes, bytes);
  }

  void Open(DocNode::Kind kind, Mark mark, YAML::anchor_t anchor) {
    if (static_cast<int>(open_.size()) >= kMaxDocumentDepth) Fail(mark, "nesting too deep");
    Charge(mark, 1, 0);
    open_.push_back({DocNode{}, anchor});
    open_.back().node.kind = kind;
    open_.back().node.mark = mark;
  }

  void Close() {
    OpenNode done = std::move(open_.back());
    open_.pop_back();
    DocNode& n = done.node;
    if (n.kind == DocNode::Kind::kMap) {
      std::vector<DocNode> flat = std::move(n.children);
      n.children.clear();
      std::set<std::string, std::less<>> seen;
      for (size_t i = 0; i + 1 < flat.size(); i += 2) {
        DocNode& key = flat[i];
        if (key.kind != DocNode::Kind::kScalar) Fail(key.mark, "map keys must be plain strings");
        if (!seen.insert(key.scalar).second) {
          throw BuildError{DocumentError(source_, key.mark, key.scalar, "duplicate key")};
        }
        n.keys.push_back(std::move(key.scalar));
        n.key_marks.push_back(key.mark);
        n.children.push_back(std::move(flat[i + 1]));
      }
    }
    Add(std::move(n), done.anchor, /*charged=*/true);
  }

  void Add(DocNode&& n, YAML::anchor_t anchor, bool charged = false) {
    if (!charged) Charge(n.mark, 1, n.scalar.size());
    if (anchor != YAML::NullAnchor) {
      Anchored a{n, 0, 0};
      Measure(a.node, &a.nodes, &a.bytes);
      anchors_[anchor] = std::move(a);
    }
    if (open_.empty()) {
      root_ = std::move(n);
      has_root_ = true;
    } else {
      open_.back().node.children.push_back(std::move(n));
    }
  }

  std::string_view source_;
  std::vector<OpenNode> open_;
  std::map<YAML::anchor_t, Anchored> anchors_;
  DocNode root_;
  bool has_root_ = false;
  Mark document_mark_;
  size_t nodes_ = 0;
  size_t bytes_ = 0;
};

// Builds a DocNode straight from nlohmann's SAX events: no intermediate DOM, nesting and size
// bounded as the text is read, duplicate keys caught (the DOM would silently keep the last).
class JsonSaxBuilder {
 public:
  using json = nlohmann::json;

  explicit JsonSaxBuilder(std::string_view source) : source_(source) {}

  bool null() { return Value(DocNode::Kind::kNull, "", false); }
  bool boolean(bool b) { return Value(DocNode::Kind::kScalar, b ? "true" : "false", false); }
  bool number_integer(json::number_integer_t v) {
    return Value(DocNode::Kind::kScalar, std::to_string(v), false);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return Value(DocNode::Kind::kScalar, std::to_string(v), false);
  }
  bool number_float(json::number_float_t /*v*/, const json::string_t& text) {
    return Value(DocNode::Kind::kScalar, text, false);
  }
  bool string(json::string_t& s) { return Value(DocNode::Kind::kScalar, s, true); }
  bool binary(json::binary_t& /*b*/) { return Fail("binary values are not JSON"); }
  bool start_object(std::size_t /*n*/) { return Open(DocNode::Kind::kMap); }
  bool end_object() { return Close(); }
  bool start_array(std::size_t /*n*/) { return Open(DocNode::Kind::kSequence); }
  bool end_array() { return Close(); }
  bool key(json::string_t& k) {
    DocNode* map = stack_.back();
    if (!key_sets_.back().insert(k).second) return Fail("duplicate key \"" + k + "\"");
    map->keys.push_back(k);
    map->key_marks.emplace_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    position_ = position;
    std::string what = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2: ".
    size_t at = what.find("syntax error");
    error_ = "invalid JSON: " + (at == std::string::npos ? what : what.substr(at));
    return false;
  }

  const std::string& error() const { return error_; }
  size_t position() const { return position_; }
  DocNode TakeRoot() { return std::move(root_); }

 private:
  DocNode* NewNode() {
    if (++nodes_ > kMaxDocumentNodes) return nullptr;
    if (stack_.empty()) {
      if (have_root_) return nullptr;
      have_root_ = true;
      return &root_;
    }
    DocNode* parent = stack_.back();
    parent->children.emplace_back();
    return &parent->children.back();
  }

  bool Value(DocNode::Kind kind, std::string_view text, bool quoted) {
    DocNode* n = NewNode();
    if (n == nullptr) return Fail("document too large");
    n->kind = kind;
    n->scalar = std::string(text);
    n->quoted = quoted;
    return true;
  }

  bool Open(DocNode::Kind kind) {
    if (static_cast<int>(stack_.size()) >= kMaxDocumentDepth) return Fail("nesting too deep");
    DocNode* n = NewNode();
    if (n == nullptr) return Fail("document too large");
    n->kind = kind;
    // Pointers into a parent's children stay valid: a parent gets no new child while a child
    // is open, because JSON closes a container before its next sibling starts.
    stack_.push_back(n);
    key_sets_.emplace_back();
    return true;
  }

  bool Close() {
    stack_.pop_back();
    key_sets_.pop_back();
    return true;
  }

  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  std::string_view source_;
  DocNode root_;
  bool have_root_ = false;
  std::vector<DocNode*> stack_;
  std::vector<std::set<std::string, std::less<>>> key_sets_;  // keys of each open map
  size_t nodes_ = 0;
  std::string error_;
  size_t position_ = 0;
};

Mark MarkAtOffset(std::string_view text, size_t offset) {
  Mark m{1, 1};
  offset = std::min(offset, text.size());
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++m.line;
      m.column = 1;
    } else {
      ++m.column;
    }
  }
  return m;
}

Status ConvertJson(const nlohmann::json& v, std::string_view source, const std::string& path,
                   int depth, size_t* nodes, DocNode* out) {
  if (depth > kMaxDocumentDepth) return DocumentError(source, {}, path, "nesting too deep");
  if (++*nodes > kMaxDocumentNodes) return DocumentError(source, {}, path, "document too large");
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::null:
    case T::discarded:
      out->kind = DocNode::Kind::kNull;
      return Status::Ok();
    case T::boolean:
      out->kind = DocNode::Kind::kScalar;
      out->scalar = v.get<bool>() ? "true" : "false";
      return Status::Ok();
    case T::number_integer:
      out->kind = DocNode::Kind::kScalar;
      out->scalar = std::to_string(v.get<int64_t>());
      return Status::Ok();
    case T::number_unsigned:
      out->kind = DocNode::Kind::kScalar;
      out->scalar = std::to_string(v.get<uint64_t>());
      return Status::Ok();
    case T::number_float:
      out->kind = DocNode::Kind::kScalar;
      out->scalar = std::to_string(v.get<double>());
      return Status::Ok();
    case T::string:
      out->kind = DocNode::Kind::kScalar;
      out->quoted = true;
      out->scalar = v.get_ref<const std::string&>();
      if (!ValidUtf8(out->scalar)) return DocumentError(source, {}, path, "invalid UTF-8");
      return Status::Ok();
    case T::binary:
      return DocumentError(source, {}, path, "binary values are not supported");
    case T::array: {
      out->kind = DocNode::Kind::kSequence;
      size_t i = 0;
      for (const auto& item : v) {
        out->children.emplace_back();
        BERTH_RETURN_IF_ERROR(
            ConvertJson(item, source, IndexPath(path, i), depth + 1, nodes, &out->children.back()));
        ++i;
      }
      return Status::Ok();
    }
    case T::object: {
      out->kind = DocNode::Kind::kMap;
      for (const auto& [key, item] : v.items()) {
        if (!ValidUtf8(key)) return DocumentError(source, {}, path, "invalid UTF-8 key");
        out->keys.push_back(key);
        out->key_marks.emplace_back();
        out->children.emplace_back();
        BERTH_RETURN_IF_ERROR(
            ConvertJson(item, source, KeyPath(path, key), depth + 1, nodes, &out->children.back()));
      }
      return Status::Ok();
    }
  }
  return DocumentError(source, {}, path, "unsupported JSON value");
}

}  // namespace

bool DocNode::SameAs(const DocNode& other) const {
  if (kind != other.kind || scalar != other.scalar || quoted != other.quoted ||
      keys != other.keys || children.size() != other.children.size()) {
    return false;
  }
  for (size_t i = 0; i < children.size(); ++i) {
    if (!children[i].SameAs(other.children[i])) return false;
  }
  return true;
}

Status DocumentError(std::string_view source, Mark mark, std::string_view path,
                     std::string_view message) {
  std::string m(source);
  if (mark.line > 0) {
    m += ":" + std::to_string(mark.line) + ":" + std::to_string(mark.column);
  }
  m += ": ";
  if (!path.empty()) {
    // Paths hold user-written keys: keep messages one line and of sane length.
    constexpr size_t kMaxPath = 200;
    for (size_t i = 0; i < path.size() && i < kMaxPath; ++i) {
      auto c = static_cast<unsigned char>(path[i]);
      m += (c < 0x20 || c == 0x7f) ? '?' : path[i];
    }
    if (path.size() > kMaxPath) m += "...";
    m += ": ";
  }
  m += message;
  return InvalidArgument(std::move(m));
}

Result<DocNode> DocumentFromYaml(std::string_view text, std::string_view source) {
  if (text.size() > kMaxDocumentBytes) {
    return TooLarge(std::string(source) + ": larger than " + std::to_string(kMaxDocumentBytes) +
                    " bytes");
  }
  // yaml-cpp throws on syntax errors (and, defensively, anything else): nothing escapes.
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    YamlTreeBuilder builder(source);
    if (!parser.HandleNextDocument(builder) || !builder.has_root()) return DocNode{};
    DocNode root = builder.TakeRoot();
    // One more call, never a loop: a second document is an error, and LoadAll's loop is what
    // never ends on some malformed input.
    YamlTreeBuilder rest(source);
    if (parser.HandleNextDocument(rest)) {
      return DocumentError(source, rest.document_mark(), "",
                           "expected one YAML document, found more");
    }
    return root;
  } catch (const YamlTreeBuilder::BuildError& e) {
    return e.status;
  } catch (const YAML::Exception& e) {
    return DocumentError(source, FromYamlMark(e.mark), "", "YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    return DocumentError(source, {}, "", std::string("cannot parse YAML: ") + e.what());
  }
}

Result<DocNode> DocumentFromJsonText(std::string_view text, std::string_view source) {
  if (text.size() > kMaxDocumentBytes) {
    return TooLarge(std::string(source) + ": larger than " + std::to_string(kMaxDocumentBytes) +
                    " bytes");
  }
  DocNode json_tree;
  try {
    JsonSaxBuilder sax(source);
    bool ok = nlohmann::json::sax_parse(text, &sax);
    if (!ok) {
      Mark mark = sax.position() > 0 ? MarkAtOffset(text, sax.position() - 1) : Mark{};
      std::string error = sax.error().empty() ? "invalid JSON" : sax.error();
      return DocumentError(source, mark, "", error);
    }
    json_tree = sax.TakeRoot();
  } catch (const std::exception& e) {
    return DocumentError(source, {}, "", std::string("invalid JSON: ") + e.what());
  }
  // JSON is (nearly) flow YAML, and yaml-cpp knows where each node is. Use its tree for the
  // positions only when it agrees with the JSON parser's, so JSON semantics always win.
  Result<DocNode> yaml_tree = DocumentFromYaml(text, source);
  if (yaml_tree.ok() && yaml_tree->SameAs(json_tree)) return std::move(yaml_tree).value();
  return json_tree;
}

Result<DocNode> DocumentFromJson(const nlohmann::json& value, std::string_view source) {
  DocNode root;
  size_t nodes = 0;
  try {
    BERTH_RETURN_IF_ERROR(ConvertJson(value, source, "", 0, &nodes, &root));
  } catch (const std::exception& e) {
    return DocumentError(source, {}, "", std::string("invalid JSON value: ") + e.what());
  }
  return root;
}

}  // namespace berth::spec
