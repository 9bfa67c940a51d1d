// Owns what the kernel says about a connected peer: who it is, and how much of what we sent
// it is still unread. Never takes a peer's word for anything (platform code: peer_linux.cc).
//
//   auto peer = nsbroker::ReadPeerIdentity(conn);  // SO_PEERCRED + SO_PEERGROUPS on Linux
//   if (nsbroker::QueuedBytes(conn) == 0) { /* every response was read */ }
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// Who the kernel says is at the other end of a connection, read once at accept.
struct PeerIdentity {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
};

// The credentials of the process that connected to an AF_UNIX socket.
[[nodiscard]] Result<PeerIdentity> ReadPeerIdentity(BorrowedFd sock);

// Bytes we sent on `sock` that the peer has not read yet (Linux: SIOCOUTQ); 0 on error.
std::size_t QueuedBytes(BorrowedFd sock);

}  // namespace nsbroker
