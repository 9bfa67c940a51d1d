// Owns the native wire format: one protobuf message per SOCK_SEQPACKET datagram (datagram.h
// carries it, with its descriptors as SCM_RIGHTS). Never lets a received descriptor escape
// without an owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "datagram.h"
#include "nsbroker.pb.h"
#include "nsbroker/error.h"
#include "nsbroker/ns_kind.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

inline constexpr std::uint32_t kProtocolVersion = 1;

// Serializes `message` (refusing more than kMaxMessageSize) and sends it with `fds`.
[[nodiscard]] Result<void> SendMessage(BorrowedFd sock,
                                       const google::protobuf::MessageLite& message,
                                       std::span<const int> fds = {});

// Parses a request: garbage is kInvalidRequest, another protocol_version kUnsupportedVersion.
[[nodiscard]] Result<v1::Request> DecodeRequest(std::string_view bytes);

// Parses a response whose datagram carried fd_count descriptors: every Grant entry's
// fd_index must be in range and used once, and every descriptor referenced.
[[nodiscard]] Result<v1::Response> DecodeResponse(std::string_view bytes, std::size_t fd_count);

// Error <-> nsbroker.v1.Error.
v1::Error::Code ErrorCodeToWire(ErrorCode code);
ErrorCode ErrorCodeFromWire(v1::Error::Code code);
v1::Response ErrorResponse(const Error& error);

}  // namespace nsbroker
