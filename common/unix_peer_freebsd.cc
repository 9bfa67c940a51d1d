// FreeBSD side of unix_peer.h: LOCAL_PEERCRED (unix(4)), which getpeereid(3) also reads.
// Written to the FreeBSD 14/15 manual pages; compiled by scripts/check-freebsd, never run.

// <sys/types.h> first: <sys/ucred.h> relies on it.
// clang-format off
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ucred.h>
#include <sys/un.h>
// clang-format on

#include "unix_peer.h"

namespace nsbroker {

Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock, bool /*groups: in the same call*/) {
  // The credentials the peer had at connect(2) (or listen(2)), as the kernel recorded them.
  // cr_groups[0] is the effective gid, the rest are supplementary groups, at most XU_NGROUPS
  // in all: a peer in more groups is seen with the first ones only, which can only make
  // policy (deny by default) refuse, never grant, more.
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

}  // namespace nsbroker
