// Owns the platform's word on a connected AF_UNIX socket: who the peer is (ReadPeerIdentity,
// declared in policy.h) and how much of ours it has not read. Per platform: peer_linux.cc,
// peer_freebsd.cc. Never decides anything.
//
//   if (nsbroker::QueuedBytes(conn) == 0) { /* the peer has read every response */ }
#pragma once

#include <cstddef>

#include "nsbroker/unique_fd.h"
#include "policy.h"

namespace nsbroker {

// Bytes of our datagrams still queued on `sock`, not yet read by the peer; 0 when none, or
// when the platform cannot tell.
std::size_t QueuedBytes(BorrowedFd sock);

}  // namespace nsbroker
