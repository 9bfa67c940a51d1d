// Owns one benchmark client's round trips to a grant server, in nsbroker's native wire format
// and in uWSGI's setns-socket format. Never keeps a granted descriptor past the call.
//
//   auto sock = ConnectUnix(path, SOCK_SEQPACKET);
//   auto fds = NativeJoin(*sock, JoinRequest("web1"));  // descriptors received, then closed
#pragma once

#include <cstddef>
#include <string>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "wire.h"

namespace nsbroker::bench {

// Every blocking call a client makes gives up after this long, so that a stuck server can
// only slow a benchmark down, never hang it.
inline constexpr int kIoTimeoutSeconds = 5;

// Connects a close-on-exec AF_UNIX socket of `type` (SOCK_SEQPACKET or SOCK_STREAM) to
// `path`, with send and receive timeouts of kIoTimeoutSeconds.
[[nodiscard]] Result<UniqueFd> ConnectUnix(const std::string& path, int type);

// Request{protocol_version: 1, join{target}}: every kind the target exposes.
v1::Request JoinRequest(const std::string& target);

// One native round trip on a connected socket: sends `request`, receives and checks the
// Response (an Error response is an error), closes the descriptors; returns their count.
[[nodiscard]] Result<std::size_t> NativeJoin(BorrowedFd sock, const v1::Request& request);

// One uWSGI setns-socket exchange on a freshly connected SOCK_STREAM socket: reads the
// 15-byte greeting ("uwsgi-setns" + host-endian int count) and its SCM_RIGHTS, checks the
// count, closes the descriptors; returns their count.
[[nodiscard]] Result<std::size_t> UwsgiReceive(BorrowedFd sock);

}  // namespace nsbroker::bench
