// FreeBSD side of the broker's socket queries: LOCAL_PEERCRED (unix(4)) and whether the peer
// is still connected. Written to the FreeBSD 14/15 manual pages; compiled by
// scripts/check-freebsd, never run.

// <sys/types.h> first: <sys/ucred.h> relies on it.
// clang-format off
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ucred.h>
#include <sys/un.h>
// clang-format on

#include <cerrno>

#include "peer.h"

namespace nsbroker {

Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock, bool /*groups: in the same call*/) {
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

SendQueue ProbeSendQueue(BorrowedFd sock) {
  // unix(4) stream and seqpacket sockets send straight into the peer's receive buffer, whose
  // fill we cannot see: FIONWRITE (our send buffer) is always 0. What we can see is the peer's
  // close: it disconnects our socket too, and getpeername(2) then fails with ENOTCONN; the
  // close disposed of every descriptor the peer had not read.
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  bool closed =
      getpeername(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0 && errno == ENOTCONN;
  return {.unread_bytes = std::nullopt, .peer_closed = closed};
}

}  // namespace nsbroker
