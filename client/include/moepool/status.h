// Status and Result<T>: errors are values at every module boundary (see STYLE.md §2).
// Turn errno into a Status once, at the system call, with context: Status::FromErrno.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace moepool {

enum class Code {
  kOk = 0,
  kInvalidArgument,    // the caller's input is wrong (ids out of range, malformed file)
  kNotFound,           // no such session, model, file
  kPermissionDenied,   // path outside the model roots, not an admin, peer mismatch
  kResourceExhausted,  // does not fit in the pool (now or ever)
  kUnavailable,        // transient: an I/O error, the daemon is going away
  kFailedPrecondition, // the system is not in a state where this can work
  kAlreadyExists,
  kInternal,           // a bug or an impossible state
};

// Returns the lowercase name of a code, e.g. "invalid argument".
const char* code_name(Code code);

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  // Returns a status for errno value `err`, e.g. "open /x: No such file or directory".
  static Status FromErrno(const std::string& context, int err);

  // Returns true iff the status indicates success.
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // Returns "<code name>: <message>", or "ok".
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

// A value or an error status. Access the value only when ok().
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace moepool

// Returns early from the enclosing function if `expr` (a Status) is an error.
#define MOEPOOL_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::moepool::Status _st = (expr);            \
    if (!_st.ok()) return _st;                 \
  } while (0)
