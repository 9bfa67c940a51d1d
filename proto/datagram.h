// Owns one SOCK_SEQPACKET datagram with its descriptors as SCM_RIGHTS, both ways, under the
// running kernel's record rule. Never interprets the bytes (wire.h does: protobuf), and never
// lets a received descriptor escape without an owner. libc only: the root opener links it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

struct msghdr;

namespace nsbroker {

inline constexpr std::size_t kMaxMessageSize = 64 * 1024;
inline constexpr std::size_t kMaxFdsPerMessage = 253;  // SCM_MAX_FD in the kernel

// One received datagram; every descriptor is owned from the moment it arrives.
struct Datagram {
  std::string bytes;
  std::vector<UniqueFd> fds;
};

// How a kernel ends SOCK_SEQPACKET records. Linux: every sendmsg is one datagram, and one
// longer than the receive buffer is cut, flagged MSG_TRUNC, its tail dropped. FreeBSD 15
// (SEQPACKET on the stream code): a record ends only where its sender passed MSG_EOR, the
// receiver sees MSG_EOR in msg_flags, and what does not fit stays queued (never MSG_TRUNC).
enum class RecordEnds { kDatagram, kMsgEor };

// The rule of the running kernel (wire_<os>.cc).
RecordEnds KernelRecordEnds();

// The codec's two system calls and the record rule they follow [seam]: the kernel's
// (KernelSockets()), or in tests another kernel's rule simulated over a real socket. Plain
// callables, not virtual functions: UBSan's vptr check needs a descriptor of its own, which
// the broker may not have when it receives at its descriptor limit.
struct SocketCalls {
  std::function<ssize_t(int fd, const msghdr* msg, int flags)> send_msg;  // sendmsg(2)
  std::function<ssize_t(int fd, msghdr* msg, int flags)> recv_msg;        // recvmsg(2)
  RecordEnds record_ends = RecordEnds::kDatagram;
};
const SocketCalls& KernelSockets();

// A connected SOCK_SEQPACKET pair, close-on-exec (tests, spawn helpers).
[[nodiscard]] Result<std::pair<UniqueFd, UniqueFd>> SeqpacketPair();

// Sends one datagram (one record: MSG_EOR) with MSG_NOSIGNAL, retrying EINTR. A non-blocking
// socket that is full gives kUnavailable with sys_errno EAGAIN.
[[nodiscard]] Result<void> SendDatagram(BorrowedFd sock, std::string_view bytes,
                                        std::span<const int> fds = {});
[[nodiscard]] Result<void> SendDatagram(const SocketCalls& calls, BorrowedFd sock,
                                        std::string_view bytes, std::span<const int> fds = {});

// Receives one datagram with MSG_CMSG_CLOEXEC. Errors (every descriptor closed): more than
// max_bytes (MSG_TRUNC; under kMsgEor, no MSG_EOR within max_bytes), a record not ended with
// MSG_EOR (kMsgEor), more than max_fds descriptors or MSG_CTRUNC, a control message other than
// SCM_RIGHTS. The rest of a refused record is dropped, as Linux drops a truncated datagram's, so
// the next call reads the next message. An orderly close is kUnavailable "connection closed by
// peer".
[[nodiscard]] Result<Datagram> ReceiveDatagram(BorrowedFd sock, std::size_t max_fds,
                                               std::size_t max_bytes = kMaxMessageSize);
[[nodiscard]] Result<Datagram> ReceiveDatagram(const SocketCalls& calls, BorrowedFd sock,
                                               std::size_t max_fds,
                                               std::size_t max_bytes = kMaxMessageSize);

// Takes ownership of every descriptor in every SCM_RIGHTS message of a received `msg`
// before anything is checked, so that each caller's error path closes them all [libbase
// cmsg.cpp]. False if a control message other than SCM_RIGHTS came too.
[[nodiscard]] bool TakeRightsFds(msghdr& msg, std::vector<UniqueFd>& fds);

}  // namespace nsbroker
