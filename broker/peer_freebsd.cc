// FreeBSD side of the broker's socket queries: LOCAL_PEERCRED (unix(4)) and FIONWRITE.
// Written to the FreeBSD 14 manual pages; not compiled on Linux.

// <sys/types.h> first: <sys/ucred.h> and <sys/filio.h> rely on it.
// clang-format off
#include <sys/types.h>
#include <sys/filio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/ucred.h>
#include <sys/un.h>
// clang-format on

#include "peer.h"

namespace nsbroker {

Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock) {
  // unix(4) LOCAL_PEERCRED: the credentials the peer had at connect(2) (or listen(2)), as the
  // kernel recorded them. cr_groups[0] is the effective gid, the rest are supplementary
  // groups, at most XU_NGROUPS in all: a peer in more groups is seen with the first ones only,
  // which can only make policy (deny by default) refuse, never grant, more.
  xucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(sock.get(), SOL_LOCAL, LOCAL_PEERCRED, &cred, &len) != 0) {
    return SysError(ErrorCode::kInternal, "LOCAL_PEERCRED");
  }
  if (cred.cr_version != XUCRED_VERSION || cred.cr_ngroups < 1) {
    return MakeError(ErrorCode::kInternal, "LOCAL_PEERCRED: unexpected xucred");
  }
  PeerIdentity peer{.pid = cred.cr_pid, .uid = cred.cr_uid, .gid = cred.cr_groups[0], .groups = {}};
  peer.groups.assign(cred.cr_groups + 1, cred.cr_groups + cred.cr_ngroups);
  return peer;
}

std::size_t QueuedBytes(BorrowedFd sock) {
  // FIONWRITE: bytes in this socket's send queue (ioctl(2), sys/filio.h). A FreeBSD unix
  // socket may append straight to the peer's receive buffer, in which case this is 0 and the
  // per-uid budget of unread descriptors is not enforced (see docs/FREEBSD.md).
  int queued = 0;
  if (ioctl(sock.get(), FIONWRITE, &queued) != 0 || queued < 0) return 0;
  return static_cast<std::size_t>(queued);
}

}  // namespace nsbroker
