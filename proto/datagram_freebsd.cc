// The datagram record rule on FreeBSD, which changed with FreeBSD 15.0.
#include <unistd.h>

#include "datagram.h"

namespace nsbroker {

// FreeBSD 15.0 runs unix(4) SOCK_SEQPACKET on the stream code: a record ends only where its
// sender passed MSG_EOR, recvmsg sets MSG_EOR in msg_flags at its end, and nothing is
// truncated. Before 15.0 SEQPACKET was atomic like a datagram socket, cut with MSG_TRUNC.
// Which one runs is the kernel's release (getosreldate(3)), not the headers'.
RecordEnds KernelRecordEnds() {
  return getosreldate() >= 1500000 ? RecordEnds::kMsgEor : RecordEnds::kDatagram;
}

}  // namespace nsbroker
