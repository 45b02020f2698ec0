// The router's HTTP/1.1 message-head parser and chunked-body decoder (RFC 9112), written for a
// proxy: strict where a lenient reading would let two parties frame a message differently
// (request smuggling), cheap on the hot path (no allocation: every string is a view into the
// caller's buffer; the header vector keeps its capacity across requests).
//
// A head is found incrementally: HeadScanner walks the bytes received so far, line by line,
// enforcing the limits (request line, head size) as it goes, and says when the empty line that
// ends the head has arrived; only then is the head parsed, once. Rejected shapes include: bare
// LF line endings, obs-fold (a line starting with SP/HTAB), whitespace between a field name and
// its colon, control characters in values, Content-Length with Transfer-Encoding, differing
// Content-Length values, a Transfer-Encoding other than "chunked" alone, Transfer-Encoding in an
// HTTP/1.0 request, missing or repeated Host in HTTP/1.1, malformed chunk sizes and chunk
// lines. Each rejection carries the status to answer (400, 414, 431, 501, 505, 417); the
// connection must then be closed.
//
// Thread-safety: plain values and functions; one parser object per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace berth::router::http {

struct Limits {
  size_t max_request_line = 8 * 1024;  // 414 beyond (counting the CR before the LF)
  size_t max_head_bytes = 16 * 1024;   // start line + fields + final CRLF; 431 beyond
  size_t max_headers = 100;            // 431 beyond
  size_t max_trailer_bytes = 8 * 1024;
  size_t max_chunk_line = 4 * 1024;  // chunk size + extensions
};

enum class BodyKind : uint8_t { kNone, kContentLength, kChunked, kUntilClose };

// What a proxy does with a field when it forwards the message.
enum class FieldRole : uint8_t {
  kForward,        // copied as is
  kDrop,           // hop-by-hop (Connection, Keep-Alive, ...) or replaced by the proxy
  kForwardedFor,   // X-Forwarded-For: the proxy appends the client address
  kHost,           // Host
  kUpgrade,        // Upgrade: forwarded only when the connection is upgraded
  kTransferCoding  // Transfer-Encoding: forwarded unless the proxy decodes the body
};

struct Field {
  std::string_view name;
  std::string_view value;  // without leading and trailing whitespace
  FieldRole role = FieldRole::kForward;
};

enum class ParseResult : uint8_t { kIncomplete, kDone, kError };

// Finds the end of a message head in a buffer that grows between calls (keep the scanner and
// the buffer together; Reset() when a new message starts at offset 0).
class HeadScanner {
 public:
  void Reset() { *this = HeadScanner(); }
  // Scans `buf` (everything received so far for this head). kDone: the head is
  // buf[0, head_end()); kError: error_status() and error() say why.
  ParseResult Scan(std::string_view buf, const Limits& limits, bool is_request);
  size_t head_end() const { return head_end_; }
  int error_status() const { return error_status_; }
  const char* error() const { return error_; }

 private:
  ParseResult Fail(int status, const char* why) {
    error_status_ = status;
    error_ = why;
    return ParseResult::kError;
  }
  size_t line_start_ = 0;  // every byte before this is a complete, checked line
  bool first_line_done_ = false;
  size_t head_end_ = 0;
  int error_status_ = 0;
  const char* error_ = "";
};

struct RequestHead {
  std::string_view method;
  std::string_view target;     // as sent
  std::string_view path;       // what to send upstream: origin-form path and query
  std::string_view authority;  // host[:port] from the Host field or an absolute-form target
  int minor_version = 1;       // HTTP/1.<minor>
  std::vector<Field> fields;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool upgrade = false;          // Connection: upgrade and an Upgrade field
  bool expect_continue = false;  // Expect: 100-continue
  bool absolute_form = false;    // the Host field is not forwarded; `authority` is
  size_t head_size = 0;          // bytes of the head, final CRLF included
  int error_status = 0;
  const char* error = "";

  void Clear();
};

struct ResponseHead {
  int minor_version = 1;
  int status = 0;
  std::string_view reason;
  std::vector<Field> fields;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool upgrade = false;  // 101 with Connection: upgrade
  size_t head_size = 0;
  int error_status = 0;
  const char* error = "";

  void Clear();
};

// Parses a complete request head (buf[0, head_end) as found by HeadScanner).
ParseResult ParseRequestHead(std::string_view head, const Limits& limits, RequestHead* out);
// Parses a complete response head. `request_method_head`: the request was HEAD (no body
// follows whatever the fields say); `request_upgrade`: the request asked to upgrade.
ParseResult ParseResponseHead(std::string_view head, const Limits& limits, bool request_method_head,
                              ResponseHead* out);

// Walks a chunked body as it streams past, so a proxy can forward it unchanged (or decoded)
// and know exactly where it ends. Chunk sizes are 1 to 15 hex digits; extensions and trailer
// fields are checked for control characters and bounded by Limits.
class ChunkedDecoder {
 public:
  void Reset() { *this = ChunkedDecoder(); }
  // Consumes a prefix of `in` and returns its length. If the prefix ends in chunk data,
  // `*data` is that data (a suffix of the consumed bytes); otherwise it is empty. Stops after
  // one data span, at the end of the body (done()), or on an error (failed()). Call again
  // with the rest of the input until it is all consumed or done.
  size_t Feed(std::string_view in, const Limits& limits, std::string_view* data);
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kError; }
  const char* error() const { return error_; }

 private:
  enum class State : uint8_t {
    kSize,
    kSizeWs,
    kExt,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailerName,
    kTrailerValue,
    kTrailerLf,
    kFinalLf,
    kDone,
    kError,
  };
  size_t Fail(const char* why, size_t consumed) {
    state_ = State::kError;
    error_ = why;
    return consumed;
  }
  State state_ = State::kSize;
  int size_digits_ = 0;
  uint64_t remaining_ = 0;
  size_t line_bytes_ = 0;
  size_t trailer_bytes_ = 0;
  const char* error_ = "";
};

// True if `c` may appear in a token (field names, methods, codings).
bool IsTokenChar(unsigned char c);
// Case-insensitive ASCII comparison.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
// The reason phrase berth sends with a status it makes itself.
std::string_view ReasonPhrase(int status);

}  // namespace berth::router::http
