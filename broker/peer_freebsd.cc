// FreeBSD side of the broker's socket queries: whether the peer is still connected (its
// credentials: common/unix_peer_freebsd.cc). Written to the FreeBSD 14/15 manual pages; compiled by
// scripts/check-freebsd, never run.

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>

#include "peer.h"

namespace nsbroker {

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
