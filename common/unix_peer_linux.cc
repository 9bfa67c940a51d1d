// Linux side of unix_peer.h: SO_PEERCRED and SO_PEERGROUPS (socket(7), unix(7)).
#include <sys/socket.h>

#include <cerrno>

#include "unix_peer.h"

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

}  // namespace nsbroker
