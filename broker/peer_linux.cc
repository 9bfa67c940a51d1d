// Linux side of peer.h: SIOCOUTQ (the peer's credentials: common/unix_peer_linux.cc).
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "peer.h"

namespace nsbroker {

SendQueue ProbeSendQueue(BorrowedFd sock) {
  // For AF_UNIX this is the sender's sk_wmem_alloc: our datagrams still in the peer's queue,
  // which the kernel purges when the peer closes.
  int queued = 0;
  if (ioctl(sock.get(), SIOCOUTQ, &queued) != 0 || queued < 0) queued = 0;
  return {.unread_bytes = static_cast<std::size_t>(queued), .peer_closed = false};
}

}  // namespace nsbroker
