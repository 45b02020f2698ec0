// Fuzz target for the router's HTTP/1.1 parser (src/router/http_parser.h), which reads bytes
// from anyone on the network. Arbitrary input must never crash, hang or read out of bounds,
// and the incremental paths must agree with the one-shot ones: scanning a head byte by byte
// finds the same end (or the same error) as scanning it whole, and decoding a chunked body in
// two pieces yields the same data and end as decoding it at once.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "router/http_parser.h"

using berth::router::http::ChunkedDecoder;
using berth::router::http::HeadScanner;
using berth::router::http::Limits;
using berth::router::http::ParseResult;

namespace {

void Head(std::string_view in, bool request) {
  Limits limits;
  limits.max_head_bytes = 4096;
  limits.max_request_line = 1024;
  limits.max_headers = 32;
  HeadScanner whole;
  ParseResult r = whole.Scan(in, limits, request);
  HeadScanner steps;
  ParseResult s = ParseResult::kIncomplete;
  size_t n = 0;
  while (s == ParseResult::kIncomplete && n < in.size()) {
    n += 1 + n % 7;
    if (n > in.size()) n = in.size();
    s = steps.Scan(in.substr(0, n), limits, request);
  }
  if (r != s) std::abort();
  if (r == ParseResult::kError && whole.error_status() != steps.error_status()) std::abort();
  if (r != ParseResult::kDone) return;
  if (whole.head_end() != steps.head_end() || whole.head_end() > in.size()) std::abort();
  std::string_view head = in.substr(0, whole.head_end());
  if (request) {
    berth::router::http::RequestHead h;
    if (ParseRequestHead(head, limits, &h) == ParseResult::kDone) {
      if (h.fields.size() > limits.max_headers) std::abort();
      if (h.path.empty() || h.method.empty()) std::abort();
      if (h.body == berth::router::http::BodyKind::kUntilClose) std::abort();
    } else if (h.error_status < 400 || h.error_status > 505) {
      std::abort();
    }
  } else {
    berth::router::http::ResponseHead h;
    if (ParseResponseHead(head, limits, false, &h) == ParseResult::kDone) {
      if (h.status < 100 || h.status > 999) std::abort();
    }
  }
}

// Decodes `in` fed in pieces cut at `cut`; returns the data, with "|done@N" or "|error".
std::string Dechunk(std::string_view in, size_t cut) {
  Limits limits;
  ChunkedDecoder d;
  std::string out;
  size_t pos = 0;
  for (std::string_view piece : {in.substr(0, cut), in.substr(cut)}) {
    while (!piece.empty() && !d.done() && !d.failed()) {
      std::string_view data;
      size_t used = d.Feed(piece, limits, &data);
      if (used > piece.size() || data.size() > used) std::abort();
      if (used == 0 && !d.done() && !d.failed()) std::abort();  // no progress
      out.append(data);
      piece.remove_prefix(used);
      pos += used;
    }
  }
  if (d.failed()) return out + "|error";
  if (d.done()) return out + "|done@" + std::to_string(pos);
  return out + "|more";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      Head(in, true);
      break;
    case 1:
      Head(in, false);
      break;
    default: {
      std::string once = Dechunk(in, in.size());
      std::string twice = Dechunk(in, in.size() / 2);
      // An error can be found at a different point, but success must agree exactly.
      bool once_err = once.ends_with("|error"), twice_err = twice.ends_with("|error");
      if (once_err != twice_err) std::abort();
      if (!once_err && once != twice && !(once.ends_with("|more") && twice.ends_with("|more"))) {
        std::abort();
      }
      break;
    }
  }
  return 0;
}
