// Linux side of the broker's socket queries: SO_PEERCRED, SO_PEERGROUPS (Linux 4.13) and
// SIOCOUTQ. ReadPeerIdentity is declared in policy.h, QueuedBytes in peer.h.
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include "peer.h"

namespace nsbroker {

Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(sock.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return SysError(ErrorCode::kInternal, "SO_PEERCRED");
  }
  PeerIdentity peer{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
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

std::size_t QueuedBytes(BorrowedFd sock) {
  // SIOCOUTQ: bytes of our datagrams still queued on this AF_UNIX connection (unix(7)).
  int queued = 0;
  if (ioctl(sock.get(), SIOCOUTQ, &queued) != 0 || queued < 0) return 0;
  return static_cast<std::size_t>(queued);
}

}  // namespace nsbroker
