// Linux side of peer.h: SO_PEERCRED, SO_PEERGROUPS and SIOCOUTQ.
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "peer.h"

namespace nsbroker {

Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock, bool with_groups) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return SysError(ErrorCode::kInternal, "SO_PEERCRED");
  }
  PeerIdentity peer{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
  if (!with_groups) {
    peer.groups_unread = true;
    return peer;
  }
  // SO_PEERGROUPS reports ERANGE with the needed size when the buffer is short.
  std::vector<gid_t> groups(16);
  for (;;) {
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(sock.get(), SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) break;
    if (errno != ERANGE || len / sizeof(gid_t) <= groups.size()) {
      return SysError(ErrorCode::kInternal, "SO_PEERGROUPS");
    }
    groups.resize(len / sizeof(gid_t));
  }
  groups.resize(len / sizeof(gid_t));
  peer.groups = std::move(groups);
  return peer;
}

SendQueue ProbeSendQueue(BorrowedFd sock) {
  // For AF_UNIX this is the sender's sk_wmem_alloc: our datagrams still in the peer's queue,
  // which the kernel purges when the peer closes.
  int queued = 0;
  if (ioctl(sock.get(), SIOCOUTQ, &queued) != 0 || queued < 0) queued = 0;
  return {.unread_bytes = static_cast<std::size_t>(queued), .peer_closed = false};
}

}  // namespace nsbroker
