#include "router/http_parser.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace berth::router::http {

namespace {

constexpr std::array<bool, 256> MakeTokenTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kToken = MakeTokenTable();

// Characters allowed in a Host value: reg-name, IP literals and a port (RFC 3986).
constexpr std::array<bool, 256> MakeHostTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("-._~!$&'()*+,;=:[]%")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kHostChar = MakeHostTable();

inline unsigned char Lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c;
}

// A field value character: HTAB, SP, VCHAR, obs-text. CR, LF, NUL and other controls are not.
inline bool IsValueChar(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

inline bool IsOws(char c) {
  return c == ' ' || c == '\t';
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// Calls `f(element)` for each element of a comma-separated list (RFC 9110 §5.6.1), trimmed.
// Returns false if `f` does.
template <typename F>
bool ForEachListElement(std::string_view value, F&& f) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view elem = TrimOws(value.substr(0, comma));
    if (!f(elem)) return false;
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

// 1*DIGIT, at most 18 digits (so it fits in int64 with room), no sign, no spaces.
bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

struct Framing {
  int host_count = 0;
  std::string_view host;
  bool has_length = false;
  uint64_t length = 0;
  bool length_conflict = false;
  bool has_te = false;
  int te_chunked = 0;         // number of "chunked" codings
  bool te_other = false;      // a coding other than chunked
  bool te_malformed = false;  // an empty or non-token coding
  bool te_chunked_last = false;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool has_upgrade = false;
  bool expect_continue = false;
  bool expect_other = false;
  std::array<std::string_view, 16> conn_names;  // other tokens of Connection: hop-by-hop fields
  size_t conn_name_count = 0;
  bool conn_too_many = false;
};

// Field names the proxy treats specially, compared case-insensitively.
FieldRole ClassifyAndNote(Field& f, bool is_request, Framing* fr) {
  std::string_view n = f.name;
  switch (n.size()) {
    case 2:
      if (EqualsIgnoreCase(n, "te")) return FieldRole::kDrop;
      break;
    case 4:
      if (EqualsIgnoreCase(n, "host")) {
        ++fr->host_count;
        fr->host = f.value;
        return FieldRole::kHost;
      }
      break;
    case 6:
      if (is_request && EqualsIgnoreCase(n, "expect")) {
        if (EqualsIgnoreCase(f.value, "100-continue")) {
          fr->expect_continue = true;
        } else {
          fr->expect_other = true;
        }
        return FieldRole::kDrop;
      }
      break;
    case 7:
      if (EqualsIgnoreCase(n, "upgrade")) {
        fr->has_upgrade = true;
        return FieldRole::kUpgrade;
      }
      break;
    case 10:
      if (EqualsIgnoreCase(n, "connection")) {
        ForEachListElement(f.value, [&](std::string_view t) {
          if (t.empty()) return true;
          if (EqualsIgnoreCase(t, "close")) {
            fr->conn_close = true;
          } else if (EqualsIgnoreCase(t, "keep-alive")) {
            fr->conn_keep_alive = true;
          } else if (EqualsIgnoreCase(t, "upgrade")) {
            fr->conn_upgrade = true;
          } else if (fr->conn_name_count < fr->conn_names.size()) {
            fr->conn_names[fr->conn_name_count++] = t;
          } else {
            fr->conn_too_many = true;
          }
          return true;
        });
        return FieldRole::kDrop;
      }
      if (EqualsIgnoreCase(n, "keep-alive")) return FieldRole::kDrop;
      break;
    case 14:
      if (EqualsIgnoreCase(n, "content-length")) {
        ForEachListElement(f.value, [&](std::string_view t) {
          uint64_t v = 0;
          if (!ParseDecimal(t, &v) || (fr->has_length && v != fr->length)) {
            fr->length_conflict = true;
            return false;
          }
          fr->has_length = true;
          fr->length = v;
          return true;
        });
        return FieldRole::kForward;
      }
      break;
    case 15:
      if (is_request && EqualsIgnoreCase(n, "x-forwarded-for")) return FieldRole::kForwardedFor;
      break;
    case 16:
      if (is_request && EqualsIgnoreCase(n, "x-forwarded-host")) return FieldRole::kDrop;
      if (EqualsIgnoreCase(n, "proxy-connection")) return FieldRole::kDrop;
      break;
    case 17:
      if (EqualsIgnoreCase(n, "transfer-encoding")) {
        fr->has_te = true;
        ForEachListElement(f.value, [&](std::string_view t) {
          if (t.empty()) {
            fr->te_malformed = true;
            return false;
          }
          bool chunked = EqualsIgnoreCase(t, "chunked");
          if (chunked) {
            ++fr->te_chunked;
          } else {
            for (char c : t) {
              if (!kToken[static_cast<unsigned char>(c)]) fr->te_malformed = true;
            }
            fr->te_other = true;
          }
          fr->te_chunked_last = chunked;
          return true;
        });
        return FieldRole::kTransferCoding;
      }
      if (is_request && EqualsIgnoreCase(n, "x-forwarded-proto")) return FieldRole::kDrop;
      break;
    default:
      break;
  }
  return FieldRole::kForward;
}

// Parses the field lines of a head, from `p` (just after the start line's CRLF) to the empty
// line. Returns 0 or the status to reject with.
int ParseFields(std::string_view head, size_t p, const Limits& limits, bool is_request,
                std::vector<Field>* fields, Framing* fr, const char** error) {
  while (true) {
    size_t e = head.find("\r\n", p);
    if (e == std::string_view::npos) {
      *error = "unterminated head";
      return 400;
    }
    if (e == p) return 0;  // the empty line
    std::string_view line = head.substr(p, e - p);
    p = e + 2;
    if (IsOws(line[0])) {
      *error = "obsolete line folding";
      return 400;
    }
    size_t colon = 0;
    while (colon < line.size() && kToken[static_cast<unsigned char>(line[colon])]) ++colon;
    if (colon == 0 || colon == line.size() || line[colon] != ':') {
      *error = "malformed field name";
      return 400;
    }
    std::string_view value = TrimOws(line.substr(colon + 1));
    for (char c : value) {
      if (!IsValueChar(static_cast<unsigned char>(c))) {
        *error = "control character in a field value";
        return 400;
      }
    }
    if (fields->size() >= limits.max_headers) {
      *error = "too many header fields";
      return 431;
    }
    Field& f = fields->emplace_back();
    f.name = line.substr(0, colon);
    f.value = value;
    f.role = ClassifyAndNote(f, is_request, fr);
  }
}

// Marks the fields named by Connection as hop-by-hop; never the ones that frame the message.
void DropConnectionNamed(std::vector<Field>* fields, const Framing& fr) {
  if (fr.conn_name_count == 0) return;
  for (Field& f : *fields) {
    if (f.role != FieldRole::kForward && f.role != FieldRole::kForwardedFor) continue;
    if (EqualsIgnoreCase(f.name, "content-length")) continue;
    for (size_t i = 0; i < fr.conn_name_count; ++i) {
      if (EqualsIgnoreCase(f.name, fr.conn_names[i])) {
        f.role = FieldRole::kDrop;
        break;
      }
    }
  }
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

}  // namespace

bool IsTokenChar(unsigned char c) {
  return kToken[c];
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(static_cast<unsigned char>(a[i])) != Lower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

ParseResult HeadScanner::Scan(std::string_view buf, const Limits& limits, bool is_request) {
  if (head_end_ != 0) return ParseResult::kDone;
  if (error_status_ != 0) return ParseResult::kError;
  while (true) {
    const char* start = buf.data() + line_start_;
    const void* nl = std::memchr(start, '\n', buf.size() - line_start_);
    if (nl == nullptr) {
      size_t partial = buf.size() - line_start_;
      if (!first_line_done_ && is_request && partial > limits.max_request_line) {
        return Fail(414, "request line too long");
      }
      if (buf.size() > limits.max_head_bytes) return Fail(431, "head too large");
      return ParseResult::kIncomplete;
    }
    size_t i = static_cast<size_t>(static_cast<const char*>(nl) - buf.data());
    // The limits are checked before the line's own shape, and on the same byte counts as the
    // no-LF-yet path above (the bytes before the LF, CR included), so the verdict on a head is
    // the same whether it arrives whole or a byte at a time.
    if (!first_line_done_ && is_request && i - line_start_ > limits.max_request_line) {
      return Fail(414, "request line too long");
    }
    if (i > limits.max_head_bytes) return Fail(431, "head too large");
    if (i == line_start_ || buf[i - 1] != '\r') return Fail(400, "bare LF in the head");
    size_t line_len = i - 1 - line_start_;
    if (!first_line_done_) {
      if (line_len == 0) {
        // RFC 9112 §2.2: empty lines before a request line are ignored (a few are).
        if (!is_request || i + 1 > 8) return Fail(400, "empty start line");
        line_start_ = i + 1;
        continue;
      }
      first_line_done_ = true;
    } else if (line_len == 0) {
      if (i + 1 > limits.max_head_bytes) return Fail(431, "head too large");
      head_end_ = i + 1;
      return ParseResult::kDone;
    }
    line_start_ = i + 1;
    if (line_start_ > limits.max_head_bytes) return Fail(431, "head too large");
  }
}

void RequestHead::Clear() {
  method = target = path = authority = {};
  minor_version = 1;
  fields.clear();
  body = BodyKind::kNone;
  content_length = 0;
  keep_alive = true;
  upgrade = expect_continue = absolute_form = false;
  head_size = 0;
  error_status = 0;
  error = "";
}

void ResponseHead::Clear() {
  minor_version = 1;
  status = 0;
  reason = {};
  fields.clear();
  body = BodyKind::kNone;
  content_length = 0;
  keep_alive = true;
  upgrade = false;
  head_size = 0;
  error_status = 0;
  error = "";
}

ParseResult ParseRequestHead(std::string_view head, const Limits& limits, RequestHead* out) {
  out->Clear();
  out->head_size = head.size();
  auto fail = [out](int status, const char* why) {
    out->error_status = status;
    out->error = why;
    return ParseResult::kError;
  };
  size_t p = 0;
  while (head.substr(p, 2) == "\r\n") p += 2;
  size_t e = head.find("\r\n", p);
  if (e == std::string_view::npos) return fail(400, "unterminated request line");
  std::string_view line = head.substr(p, e - p);
  if (line.size() > limits.max_request_line) return fail(414, "request line too long");

  size_t i = 0;
  while (i < line.size() && kToken[static_cast<unsigned char>(line[i])]) ++i;
  if (i == 0 || i == line.size() || line[i] != ' ') return fail(400, "malformed method");
  out->method = line.substr(0, i);
  size_t t = ++i;
  while (i < line.size() && line[i] != ' ') {
    auto c = static_cast<unsigned char>(line[i]);
    if (c <= 0x20 || c >= 0x7f) return fail(400, "invalid character in the request target");
    ++i;
  }
  if (i == t || i == line.size()) return fail(400, "malformed request target");
  out->target = line.substr(t, i - t);
  std::string_view version = line.substr(i + 1);
  if (version == "HTTP/1.1") {
    out->minor_version = 1;
  } else if (version == "HTTP/1.0") {
    out->minor_version = 0;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[5] >= '0' &&
             version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9') {
    return fail(505, "HTTP version not supported");
  } else {
    return fail(400, "malformed HTTP version");
  }

  Framing fr;
  const char* why = "";
  if (int st = ParseFields(head, e + 2, limits, true, &out->fields, &fr, &why); st != 0) {
    return fail(st, why);
  }
  if (fr.conn_too_many) return fail(400, "too many Connection options");
  DropConnectionNamed(&out->fields, fr);

  // Target forms (RFC 9112 §3.2).
  std::string_view target = out->target;
  if (target[0] == '/') {
    out->path = target;
  } else if (StartsWithIgnoreCase(target, "http://") || StartsWithIgnoreCase(target, "https://")) {
    std::string_view rest = target.substr(target.find("//") + 2);
    size_t end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, end);
    if (authority.empty() || authority.find('@') != std::string_view::npos) {
      return fail(400, "malformed absolute-form target");
    }
    std::string_view path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    if (path.empty()) {
      path = "/";
    } else if (path[0] != '/') {
      return fail(400, "absolute-form target without a path");
    }
    out->path = path;
    out->authority = authority;
    out->absolute_form = true;
  } else if (target == "*" && out->method == "OPTIONS") {
    out->path = target;
  } else if (out->method == "CONNECT") {
    return fail(501, "CONNECT is not supported");
  } else {
    return fail(400, "malformed request target");
  }

  if (fr.host_count > 1) return fail(400, "more than one Host field");
  if (fr.host_count == 0 && out->minor_version == 1) return fail(400, "missing Host field");
  for (char c : fr.host) {
    if (!kHostChar[static_cast<unsigned char>(c)]) return fail(400, "invalid Host field");
  }
  for (char c : out->authority) {
    if (!kHostChar[static_cast<unsigned char>(c)]) return fail(400, "invalid target authority");
  }
  if (out->absolute_form) {
    for (Field& f : out->fields) {
      if (f.role == FieldRole::kHost) f.role = FieldRole::kDrop;
    }
  } else {
    out->authority = fr.host;
  }

  // Framing (RFC 9112 §6): refuse every shape two parsers could read differently.
  if (fr.length_conflict) return fail(400, "invalid or conflicting Content-Length");
  if (fr.has_te) {
    if (out->minor_version == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (fr.has_length) return fail(400, "both Content-Length and Transfer-Encoding");
    if (fr.te_malformed || fr.te_chunked > 1) return fail(400, "malformed Transfer-Encoding");
    if (fr.te_other) return fail(501, "unsupported transfer coding");
    if (fr.te_chunked != 1) return fail(400, "malformed Transfer-Encoding");
    out->body = BodyKind::kChunked;
  } else if (fr.has_length && fr.length > 0) {
    out->body = BodyKind::kContentLength;
    out->content_length = fr.length;
  }
  if (fr.expect_other) return fail(417, "unsupported expectation");
  out->expect_continue = fr.expect_continue && out->body != BodyKind::kNone;
  out->keep_alive =
      out->minor_version == 1 ? !fr.conn_close : (fr.conn_keep_alive && !fr.conn_close);
  out->upgrade = fr.conn_upgrade && fr.has_upgrade && out->body == BodyKind::kNone;
  return ParseResult::kDone;
}

ParseResult ParseResponseHead(std::string_view head, const Limits& limits, bool request_method_head,
                              ResponseHead* out) {
  out->Clear();
  out->head_size = head.size();
  auto fail = [out](const char* why) {
    out->error_status = 502;
    out->error = why;
    return ParseResult::kError;
  };
  size_t e = head.find("\r\n");
  if (e == std::string_view::npos) return fail("unterminated status line");
  std::string_view line = head.substr(0, e);
  // HTTP/1.x SP 3DIGIT [SP reason]
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' ||
      line[8] != ' ') {
    return fail("malformed status line");
  }
  out->minor_version = line[7] - '0';
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return fail("malformed status code");
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100) return fail("malformed status code");
  out->status = status;
  if (line.size() > 12) {
    if (line[12] != ' ') return fail("malformed status line");
    out->reason = line.substr(13);
    for (char c : out->reason) {
      if (!IsValueChar(static_cast<unsigned char>(c))) return fail("malformed reason phrase");
    }
  }
  Framing fr;
  const char* why = "";
  if (ParseFields(head, e + 2, limits, false, &out->fields, &fr, &why) != 0) return fail(why);
  if (fr.conn_too_many) return fail("too many Connection options");
  DropConnectionNamed(&out->fields, fr);
  if (fr.length_conflict) return fail("invalid or conflicting Content-Length");
  if (fr.te_malformed) return fail("malformed Transfer-Encoding");

  out->keep_alive =
      out->minor_version >= 1 ? !fr.conn_close : (fr.conn_keep_alive && !fr.conn_close);
  out->upgrade = status == 101 && fr.conn_upgrade && fr.has_upgrade;
  if (request_method_head || status < 200 || status == 204 || status == 304) {
    out->body = BodyKind::kNone;
  } else if (fr.has_te) {
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); the stale length is not
    // passed on.
    for (Field& f : out->fields) {
      if (EqualsIgnoreCase(f.name, "content-length")) f.role = FieldRole::kDrop;
    }
    if (fr.te_chunked_last && fr.te_chunked == 1) {
      out->body = BodyKind::kChunked;
    } else {
      out->body = BodyKind::kUntilClose;
      out->keep_alive = false;
    }
  } else if (fr.has_length) {
    out->body = fr.length > 0 ? BodyKind::kContentLength : BodyKind::kNone;
    out->content_length = fr.length;
  } else {
    out->body = BodyKind::kUntilClose;
    out->keep_alive = false;
  }
  return ParseResult::kDone;
}

size_t ChunkedDecoder::Feed(std::string_view in, const Limits& limits, std::string_view* data) {
  *data = {};
  size_t i = 0;
  while (i < in.size()) {
    auto c = static_cast<unsigned char>(in[i]);
    switch (state_) {
      case State::kSize: {
        int v = -1;
        if (c >= '0' && c <= '9') {
          v = c - '0';
        } else if (Lower(c) >= 'a' && Lower(c) <= 'f') {
          v = Lower(c) - 'a' + 10;
        }
        if (v >= 0) {
          if (size_digits_ == 15) return Fail("chunk size too large", i);
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          ++size_digits_;
          ++line_bytes_;
          ++i;
          break;
        }
        if (size_digits_ == 0) return Fail("missing chunk size", i);
        if (c == ' ' || c == '\t') {
          state_ = State::kSizeWs;
        } else if (c == ';') {
          state_ = State::kExt;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return Fail("malformed chunk size", i);
        }
        ++line_bytes_;
        ++i;
        break;
      }
      case State::kSizeWs:
        if (c == ';') {
          state_ = State::kExt;
        } else if (c != ' ' && c != '\t') {
          return Fail("malformed chunk size", i);
        }
        if (++line_bytes_ > limits.max_chunk_line) return Fail("chunk line too long", i);
        ++i;
        break;
      case State::kExt:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (!IsValueChar(c)) {
          return Fail("control character in a chunk extension", i);
        }
        if (++line_bytes_ > limits.max_chunk_line) return Fail("chunk line too long", i);
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return Fail("chunk line not ended by CRLF", i);
        ++i;
        line_bytes_ = 0;
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - i));
        *data = in.substr(i, n);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDataCr;
        return i;
      }
      case State::kDataCr:
        if (c != '\r') return Fail("chunk data not followed by CRLF", i);
        state_ = State::kDataLf;
        ++i;
        break;
      case State::kDataLf:
        if (c != '\n') return Fail("chunk data not followed by CRLF", i);
        state_ = State::kSize;
        ++i;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kFinalLf;
        } else if (kToken[c]) {
          state_ = State::kTrailerName;
        } else {
          return Fail("malformed trailer field", i);
        }
        if (++trailer_bytes_ > limits.max_trailer_bytes) return Fail("trailers too large", i);
        ++i;
        break;
      case State::kTrailerName:
        if (c == ':') {
          state_ = State::kTrailerValue;
        } else if (!kToken[c]) {
          return Fail("malformed trailer field", i);
        }
        if (++trailer_bytes_ > limits.max_trailer_bytes) return Fail("trailers too large", i);
        ++i;
        break;
      case State::kTrailerValue:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (!IsValueChar(c)) {
          return Fail("control character in a trailer field", i);
        }
        if (++trailer_bytes_ > limits.max_trailer_bytes) return Fail("trailers too large", i);
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return Fail("trailer line not ended by CRLF", i);
        state_ = State::kTrailerStart;
        ++i;
        break;
      case State::kFinalLf:
        if (c != '\n') return Fail("chunked body not ended by CRLF", i);
        state_ = State::kDone;
        return i + 1;
      case State::kDone:
      case State::kError:
        return i;
    }
  }
  return i;
}

}  // namespace berth::router::http
