// Owns the one question every side asks of a connected AF_UNIX socket: who is at the other
// end, as the kernel recorded it (the broker of its clients, the joiners of the broker). Never
// takes a peer's word for anything; deciding whom to trust is the caller's.
//
//   auto peer = nsbroker::ReadPeerIdentity(sock, /*groups=*/false);  // at connect or accept
//   if (peer && peer->uid != 0) { /* not served by root */ }
#pragma once

#include <sys/types.h>

#include <vector>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// The credentials the peer had when it connected (or, seen from a client, when the server
// called listen(2)).
struct PeerIdentity {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;   // supplementary groups
  bool groups_unread = false;  // read without `groups` (the caller did not need them)
};

// Linux: SO_PEERCRED, and SO_PEERGROUPS unless `groups` is false (a system call and an
// allocation the caller may not need). FreeBSD: LOCAL_PEERCRED (unix(4)), which reports the
// groups in the same call anyway. Failures are kInternal naming the query.
[[nodiscard]] Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock, bool groups = true);

}  // namespace nsbroker
