// Owns the native wire format: one protobuf message per SOCK_SEQPACKET datagram, with its
// descriptors as SCM_RIGHTS. Never lets a received descriptor escape without an owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nsbroker.pb.h"
#include "nsbroker/error.h"
#include "nsbroker/ns_kind.h"
#include "nsbroker/unique_fd.h"

struct msghdr;

namespace nsbroker {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::size_t kMaxMessageSize = 64 * 1024;
inline constexpr std::size_t kMaxFdsPerMessage = 253;  // SCM_MAX_FD in the kernel

// One received datagram; every descriptor is owned from the moment it arrives.
struct Datagram {
  std::string bytes;
  std::vector<UniqueFd> fds;
};

// A connected SOCK_SEQPACKET pair, close-on-exec (tests, spawn helpers).
[[nodiscard]] Result<std::pair<UniqueFd, UniqueFd>> SeqpacketPair();

// Sends one datagram with MSG_NOSIGNAL, retrying EINTR. A non-blocking socket that is full
// gives kUnavailable with sys_errno EAGAIN.
[[nodiscard]] Result<void> SendDatagram(BorrowedFd sock, std::string_view bytes,
                                        std::span<const int> fds = {});

// Receives one datagram with MSG_CMSG_CLOEXEC. Errors (every descriptor closed): more than
// max_bytes (MSG_TRUNC), more than max_fds descriptors or MSG_CTRUNC, a control message other
// than SCM_RIGHTS. An orderly close is kUnavailable "connection closed by peer".
[[nodiscard]] Result<Datagram> ReceiveDatagram(BorrowedFd sock, std::size_t max_fds,
                                               std::size_t max_bytes = kMaxMessageSize);

// Takes ownership of every descriptor in every SCM_RIGHTS message of a received `msg`
// before anything is checked, so that each caller's error path closes them all [libbase
// cmsg.cpp]. False if a control message other than SCM_RIGHTS came too.
[[nodiscard]] bool TakeRightsFds(msghdr& msg, std::vector<UniqueFd>& fds);

// Serializes `message` (refusing more than kMaxMessageSize) and sends it with `fds`.
[[nodiscard]] Result<void> SendMessage(BorrowedFd sock, const google::protobuf::MessageLite& message,
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
