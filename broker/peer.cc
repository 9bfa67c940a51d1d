// peer.h's accounting rule over what peer_<os>.cc reports, the same on every kernel.
#include "peer.h"

namespace nsbroker {

bool MayBeUnread(const SendQueue& queue) {
  if (queue.peer_closed) return false;
  // A kernel that cannot count (FreeBSD) is taken at its worst: all of it unread.
  return !queue.unread_bytes.has_value() || *queue.unread_bytes > 0;
}

std::size_t QueuedBytes(BorrowedFd sock) {
  SendQueue queue = ProbeSendQueue(sock);
  if (!MayBeUnread(queue)) return 0;
  return queue.unread_bytes.value_or(1);
}

}  // namespace nsbroker
