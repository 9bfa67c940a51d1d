// The one error type of nsbroker: a code with abseil's meanings, the errno, a message.
// Never thrown across a module boundary; returned as Result<T>.
//
//   nsbroker::Result<UniqueFd> OpenNs(int pid, NsKind kind);
//   auto fd = OpenNs(pid, NsKind::kNet);
//   if (!fd) return std::unexpected(std::move(fd.error()));
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace nsbroker {

enum class ErrorCode {
  kNotFound,            // unknown target or path
  kPermissionDenied,    // an identified peer that policy refuses
  kInvalidRequest,      // malformed input from a peer or a config
  kUnavailable,         // may succeed on retry: dead target, closed peer, reload
  kResourceExhausted,   // a limit: connections, descriptors, size
  kUnsupportedVersion,  // protocol_version we do not speak
  kInternal,            // our bug or an unexpected system failure
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  int sys_errno = 0;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return std::unexpected(Error{code, 0, std::move(message)});
}

// Reads errno first, so call it right after the failing call:
// "open /proc/4242/ns/net: No such process".
inline std::unexpected<Error> SysError(ErrorCode code, std::string_view context) {
  int saved = errno;
  std::string message(context);
  message += ": ";
  message += std::strerror(saved);
  return std::unexpected(Error{code, saved, std::move(message)});
}

// The code a failing errno most likely means for the object named.
inline ErrorCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
    case ESRCH:
    case ENOTDIR:
      return ErrorCode::kNotFound;
    case EACCES:
    case EPERM:
      return ErrorCode::kPermissionDenied;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
    case ETOOMANYREFS:
      return ErrorCode::kResourceExhausted;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case EAGAIN:
      return ErrorCode::kUnavailable;
    case EINVAL:
      return ErrorCode::kInvalidRequest;
    default:
      return ErrorCode::kInternal;
  }
}

// SysError with the code chosen from errno.
inline std::unexpected<Error> SysError(std::string_view context) {
  return SysError(CodeForErrno(errno), context);
}

// The wire name of a code, as in nsbroker.v1.Error.Code: "NOT_FOUND", ...
constexpr std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case ErrorCode::kInvalidRequest:
      return "INVALID_REQUEST";
    case ErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ErrorCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case ErrorCode::kUnsupportedVersion:
      return "UNSUPPORTED_VERSION";
    case ErrorCode::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
}

}  // namespace nsbroker
