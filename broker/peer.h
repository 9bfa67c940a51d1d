// Owns what the kernel says about a connected peer: who it is (ReadPeerIdentity, shared with
// the joiners: common/unix_peer.h), and whether what we sent it may still be unread. Never
// takes a peer's word for anything (platform code: peer_<os>.cc; the rule over what they
// report: peer.cc).
//
//   auto peer = nsbroker::ReadPeerIdentity(conn);  // SO_PEERCRED + SO_PEERGROUPS on Linux
//   if (!nsbroker::MayBeUnread(nsbroker::ProbeSendQueue(conn))) { /* nothing left in flight */ }
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "unix_peer.h"

namespace nsbroker {

// What the kernel can tell about what we sent on a connection and its peer has not read: the
// descriptors in it stay in flight (charged to us, on Linux) until it is read or the peer's
// socket is closed, which disposes of them.
struct SendQueue {
  // Our bytes still queued to the peer. nullopt where the kernel cannot tell: FreeBSD's unix
  // sockets append straight to the peer's receive buffer, so FIONWRITE is always 0 there.
  std::optional<std::size_t> unread_bytes;
  // The peer has closed its end: nothing we sent is queued anywhere any more.
  bool peer_closed = false;
};

// Linux: SIOCOUTQ (0 on error); its count falls to 0 once the peer closes. FreeBSD: no count,
// and getpeername(2) failing with ENOTCONN once the peer closed.
[[nodiscard]] SendQueue ProbeSendQueue(BorrowedFd sock);

// The accounting rule for both kernels: descriptors sent on a connection may still be unread
// unless its peer closed or the kernel counts nothing queued. Where it cannot count (FreeBSD)
// they stay charged until the peer closes.
bool MayBeUnread(const SendQueue& queue);

// The same for the server's budget: 0 when nothing sent on `sock` can be unread, else the
// queued bytes (1 where the kernel cannot count them).
std::size_t QueuedBytes(BorrowedFd sock);

}  // namespace nsbroker
