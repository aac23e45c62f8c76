#include "moepool/status.h"

#include <cstring>

namespace moepool {

const char* code_name(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kResourceExhausted: return "resource exhausted";
    case Code::kUnavailable: return "unavailable";
    case Code::kFailedPrecondition: return "failed precondition";
    case Code::kAlreadyExists: return "already exists";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

Status Status::FromErrno(const std::string& context, int err) {
  Code code = Code::kUnavailable;
  switch (err) {
    case ENOENT: code = Code::kNotFound; break;
    case EACCES:
    case EPERM: code = Code::kPermissionDenied; break;
    case EINVAL: code = Code::kInvalidArgument; break;
    case ENOMEM:
    case ENOSPC: code = Code::kResourceExhausted; break;
    case EEXIST: code = Code::kAlreadyExists; break;
    default: break;
  }
  return {code, context + ": " + std::strerror(err)};
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(code_name(code_)) + ": " + message_;
}

}  // namespace moepool
