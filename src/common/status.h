// Status and Result<T>: berth's one error type.
//
// Every fallible operation returns a Status (no value) or a Result<T> (a value or a Status).
// Both are [[nodiscard]], so an ignored error is a compile error under -Werror. Exceptions are
// used only at the edges (third-party libraries that throw are caught and converted here).
// Thread-safety: plain values; safe to copy between threads.
#pragma once

#include <cassert>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace berth {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // the caller sent something malformed (HTTP 400)
  kNotFound,            // (HTTP 404)
  kAlreadyExists,       // (HTTP 409)
  kFailedPrecondition,  // a compare-and-swap or state check did not hold (HTTP 409)
  kPermissionDenied,    // (HTTP 403)
  kUnauthenticated,     // (HTTP 401)
  kTooLarge,            // (HTTP 413)
  kUnavailable,         // a dependency (the store, dockerd) cannot be reached (HTTP 503)
  kDeadlineExceeded,    // (HTTP 504)
  kCompacted,           // a watch asked for a revision the store has compacted: re-list
  kCancelled,
  kInternal,  // a bug or an impossible state (HTTP 500)
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "unavailable: store etcd://127.0.0.1:2379: connection refused"
  std::string ToString() const;
  // Returns a copy whose message is "<context>: <message>".
  Status Annotate(std::string_view context) const;
  // Marks the status as inspected on purpose (e.g. best-effort cleanup).
  void IgnoreError() const {}

  bool operator==(const Status& o) const { return code_ == o.code_ && message_ == o.message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {Code::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) {
  return {Code::kNotFound, std::move(m)};
}
inline Status AlreadyExists(std::string m) {
  return {Code::kAlreadyExists, std::move(m)};
}
inline Status FailedPrecondition(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}
inline Status Unavailable(std::string m) {
  return {Code::kUnavailable, std::move(m)};
}
inline Status DeadlineExceeded(std::string m) {
  return {Code::kDeadlineExceeded, std::move(m)};
}
inline Status Internal(std::string m) {
  return {Code::kInternal, std::move(m)};
}
inline Status TooLarge(std::string m) {
  return {Code::kTooLarge, std::move(m)};
}
inline Status Cancelled(std::string m) {
  return {Code::kCancelled, std::move(m)};
}
inline Status Compacted(std::string m) {
  return {Code::kCompacted, std::move(m)};
}
inline Status PermissionDenied(std::string m) {
  return {Code::kPermissionDenied, std::move(m)};
}
inline Status Unauthenticated(std::string m) {
  return {Code::kUnauthenticated, std::move(m)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) std::abort();   // a Result without value must carry an error
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return Checked(); }
  const T& value() const& { return const_cast<Result*>(this)->Checked(); }
  T&& value() && { return std::move(Checked()); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->Checked(); }
  T& operator*() & { return Checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->Checked(); }
  T&& operator*() && { return std::move(Checked()); }
  T value_or(T other) const { return ok() ? std::get<T>(v_) : std::move(other); }

 private:
  T& Checked() {
    if (!ok()) std::abort();  // reading the value of an error is a bug
    return std::get<T>(v_);
  }
  std::variant<T, Status> v_;
};

}  // namespace berth

#define BERTH_CONCAT_INNER(a, b) a##b
#define BERTH_CONCAT(a, b) BERTH_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` (a Status) is not ok.
#define BERTH_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::berth::Status berth_st_ = (expr);    \
    if (!berth_st_.ok()) return berth_st_; \
  } while (0)

// `BERTH_ASSIGN_OR_RETURN(auto x, Foo());` declares x from a Result or returns its error.
#define BERTH_ASSIGN_OR_RETURN(lhs, expr) \
  BERTH_ASSIGN_OR_RETURN_IMPL(BERTH_CONCAT(berth_res_, __LINE__), lhs, expr)
#define BERTH_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
