#include "wire.h"

#include <vector>

namespace nsbroker {

Result<void> SendMessage(BorrowedFd sock, const google::protobuf::MessageLite& message,
                         std::span<const int> fds) {
  std::size_t size = message.ByteSizeLong();
  if (size > kMaxMessageSize) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "message of " + std::to_string(size) + " bytes exceeds 64 KiB");
  }
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return MakeError(ErrorCode::kInternal, "cannot serialize " + message.GetTypeName());
  }
  return SendDatagram(sock, bytes, fds);
}

Result<v1::Request> DecodeRequest(std::string_view bytes) {
  v1::Request request;
  if (bytes.size() > kMaxMessageSize) {
    return MakeError(ErrorCode::kInvalidRequest, "request exceeds 64 KiB");
  }
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return MakeError(ErrorCode::kInvalidRequest, "malformed request");
  }
  if (request.protocol_version() != kProtocolVersion) {
    return MakeError(ErrorCode::kUnsupportedVersion,
                     "protocol version " + std::to_string(request.protocol_version()) +
                         " is not supported (this broker speaks 1)");
  }
  if (request.body_case() == v1::Request::BODY_NOT_SET) {
    return MakeError(ErrorCode::kInvalidRequest, "request has no body");
  }
  return request;
}

Result<v1::Response> DecodeResponse(std::string_view bytes, std::size_t fd_count) {
  v1::Response response;
  if (bytes.size() > kMaxMessageSize) {
    return MakeError(ErrorCode::kInvalidRequest, "response exceeds 64 KiB");
  }
  if (!response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return MakeError(ErrorCode::kInvalidRequest, "malformed response");
  }
  if (response.protocol_version() != kProtocolVersion) {
    return MakeError(ErrorCode::kUnsupportedVersion,
                     "broker speaks protocol version " +
                         std::to_string(response.protocol_version()) + ", not 1");
  }
  std::vector<bool> used(fd_count, false);
  std::size_t referenced = 0;
  if (response.has_grant()) {
    for (const auto& entry : response.grant().entries()) {
      if (!KindFromWire(entry.kind())) {
        return MakeError(ErrorCode::kInvalidRequest,
                         "grant entry of unknown kind " + std::to_string(entry.kind()));
      }
      if (!entry.has_fd_index()) continue;
      std::uint32_t index = entry.fd_index();
      if (index >= fd_count) {
        return MakeError(ErrorCode::kInvalidRequest, "grant entry refers to descriptor " +
                                                         std::to_string(index) + " of " +
                                                         std::to_string(fd_count));
      }
      if (used[index]) {
        return MakeError(ErrorCode::kInvalidRequest,
                         "grant entries share descriptor " + std::to_string(index));
      }
      used[index] = true;
      ++referenced;
    }
  }
  if (referenced != fd_count) {
    return MakeError(ErrorCode::kInvalidRequest, "response carries " +
                                                     std::to_string(fd_count - referenced) +
                                                     " descriptors no entry refers to");
  }
  return response;
}

v1::Error::Code ErrorCodeToWire(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return v1::Error::NOT_FOUND;
    case ErrorCode::kPermissionDenied:
      return v1::Error::PERMISSION_DENIED;
    case ErrorCode::kInvalidRequest:
      return v1::Error::INVALID_REQUEST;
    case ErrorCode::kUnavailable:
      return v1::Error::UNAVAILABLE;
    case ErrorCode::kResourceExhausted:
      return v1::Error::RESOURCE_EXHAUSTED;
    case ErrorCode::kUnsupportedVersion:
      return v1::Error::UNSUPPORTED_VERSION;
    case ErrorCode::kInternal:
      return v1::Error::INTERNAL;
  }
  return v1::Error::INTERNAL;
}

ErrorCode ErrorCodeFromWire(v1::Error::Code code) {
  switch (code) {
    case v1::Error::NOT_FOUND:
      return ErrorCode::kNotFound;
    case v1::Error::PERMISSION_DENIED:
      return ErrorCode::kPermissionDenied;
    case v1::Error::INVALID_REQUEST:
      return ErrorCode::kInvalidRequest;
    case v1::Error::UNAVAILABLE:
      return ErrorCode::kUnavailable;
    case v1::Error::RESOURCE_EXHAUSTED:
      return ErrorCode::kResourceExhausted;
    case v1::Error::UNSUPPORTED_VERSION:
      return ErrorCode::kUnsupportedVersion;
    default:
      return ErrorCode::kInternal;
  }
}

v1::Response ErrorResponse(const Error& error) {
  v1::Response response;
  response.set_protocol_version(kProtocolVersion);
  response.mutable_error()->set_code(ErrorCodeToWire(error.code));
  response.mutable_error()->set_message(error.message);
  return response;
}

}  // namespace nsbroker
