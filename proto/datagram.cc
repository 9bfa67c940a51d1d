#include "datagram.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace nsbroker {

bool TakeRightsFds(msghdr& msg, std::vector<UniqueFd>& fds) {
  bool foreign = false;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
      std::size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(cmsg);
      for (std::size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
        fds.emplace_back(fd);
      }
    } else {
      foreign = true;
    }
  }
  return !foreign;
}

const SocketCalls& KernelSockets() {
  static const SocketCalls kernel{
      .send_msg = ::sendmsg, .recv_msg = ::recvmsg, .record_ends = KernelRecordEnds()};
  return kernel;
}

Result<std::pair<UniqueFd, UniqueFd>> SeqpacketPair() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return SysError(ErrorCode::kResourceExhausted, "socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  return std::pair<UniqueFd, UniqueFd>(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

Result<void> SendDatagram(BorrowedFd sock, std::string_view bytes, std::span<const int> fds) {
  return SendDatagram(KernelSockets(), sock, bytes, fds);
}

Result<void> SendDatagram(const SocketCalls& calls, BorrowedFd sock, std::string_view bytes,
                          std::span<const int> fds) {
  if (bytes.size() > kMaxMessageSize) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "message of " + std::to_string(bytes.size()) + " bytes exceeds 64 KiB");
  }
  if (fds.size() > kMaxFdsPerMessage) {
    return MakeError(ErrorCode::kResourceExhausted,
                     std::to_string(fds.size()) + " descriptors exceed SCM_MAX_FD (253)");
  }
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.assign(CMSG_SPACE(fds.size() * sizeof(int)), 0);
    msg.msg_control = control.data();
    // Both lengths are size_t on Linux and socklen_t on FreeBSD; SCM_MAX_FD bounds them.
    msg.msg_controllen = static_cast<decltype(msg.msg_controllen)>(control.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = static_cast<decltype(cmsg->cmsg_len)>(CMSG_LEN(fds.size() * sizeof(int)));
    std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t n;
  // MSG_EOR ends the record: without it FreeBSD 15 joins consecutive messages into one record
  // (Linux ignores it, every datagram being a record there).
  do {
    n = calls.send_msg(sock.get(), &msg, MSG_NOSIGNAL | MSG_EOR);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SysError("sendmsg");
  if (static_cast<std::size_t>(n) != bytes.size()) {
    return MakeError(ErrorCode::kInternal, "sendmsg: short datagram");
  }
  return {};
}

namespace {

// Under kMsgEor, after a read that did not reach the end of its record: reads and drops the
// rest of that record (closing any descriptors in it) up to its MSG_EOR, as Linux drops a
// truncated datagram's tail, so that the tail is never taken for the next message. A record
// is queued whole, so its rest is there now; a sender that never passes MSG_EOR is read at
// most kMaxDiscards times, then its bytes are left for the next calls to refuse.
void DiscardRestOfRecord(const SocketCalls& calls, BorrowedFd sock, std::vector<char>& control) {
  constexpr int kMaxDiscards = 16;
  std::vector<char> scratch(kMaxMessageSize);
  for (int i = 0; i < kMaxDiscards; ++i) {
    iovec iov{scratch.data(), scratch.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = static_cast<decltype(msg.msg_controllen)>(control.size());
    ssize_t n;
    do {
      n = calls.recv_msg(sock.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return;
    std::vector<UniqueFd> dropped;
    (void)TakeRightsFds(msg, dropped);
    if (n == 0 || (msg.msg_flags & MSG_EOR)) return;
  }
}

}  // namespace

Result<Datagram> ReceiveDatagram(BorrowedFd sock, std::size_t max_fds, std::size_t max_bytes) {
  return ReceiveDatagram(KernelSockets(), sock, max_fds, max_bytes);
}

Result<Datagram> ReceiveDatagram(const SocketCalls& calls, BorrowedFd sock, std::size_t max_fds,
                                 std::size_t max_bytes) {
  Datagram out;
  // Room for at least one descriptor so that an unexpected one shows as "too many" rather
  // than only as MSG_CTRUNC; the kernel closes what does not fit. The buffers are this
  // thread's, reused: no 64 KiB allocation per datagram, only a copy of what arrived. The
  // scratch buffer is never zero-filled: only the pages the kernel writes get faulted in
  // (zeroing 64 KiB was 16 page faults and a fifth of nsjoin's instructions per join).
  thread_local std::vector<char> control;
  thread_local std::unique_ptr<char[]> scratch;
  thread_local std::size_t scratch_size = 0;
  control.assign(CMSG_SPACE(std::max<std::size_t>(max_fds, 1) * sizeof(int)), 0);
  if (scratch_size < max_bytes) {
    scratch = std::make_unique_for_overwrite<char[]>(max_bytes);
    scratch_size = max_bytes;
  }
  msghdr msg{};
  iovec iov{scratch.get(), max_bytes};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = static_cast<decltype(msg.msg_controllen)>(control.size());
  ssize_t n;
  do {
    n = calls.recv_msg(sock.get(), &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n > 0) out.bytes.assign(scratch.get(), std::min(static_cast<std::size_t>(n), max_bytes));
  if (n < 0) return SysError("recvmsg");
  bool only_rights = TakeRightsFds(msg, out.fds);
  if (n == 0 && out.fds.empty() && msg.msg_controllen == 0) {
    return MakeError(ErrorCode::kUnavailable, "connection closed by peer");
  }
  if (msg.msg_flags & MSG_TRUNC) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "message exceeds " + std::to_string(max_bytes) + " bytes");
  }
  if (calls.record_ends == RecordEnds::kMsgEor && !(msg.msg_flags & MSG_EOR)) {
    DiscardRestOfRecord(calls, sock, control);
    if (static_cast<std::size_t>(n) == max_bytes) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "message exceeds " + std::to_string(max_bytes) + " bytes");
    }
    return MakeError(ErrorCode::kInvalidRequest,
                     "message of " + std::to_string(n) +
                         " bytes does not end its record (the sender must pass MSG_EOR)");
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return MakeError(ErrorCode::kInvalidRequest, "message carries more than " +
                                                     std::to_string(max_fds) +
                                                     " descriptors (control data truncated)");
  }
  if (!only_rights) {
    return MakeError(ErrorCode::kInvalidRequest, "unexpected control message");
  }
  if (out.fds.size() > max_fds) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "message carries " + std::to_string(out.fds.size()) +
                         " descriptors, at most " + std::to_string(max_fds) + " expected");
  }
  return out;
}

}  // namespace nsbroker
