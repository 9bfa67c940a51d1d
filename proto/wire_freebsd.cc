// The wire codec's kernel calls on FreeBSD, where a SOCK_SEQPACKET record ends at MSG_EOR
// from FreeBSD 15.0 on.
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "wire.h"

namespace nsbroker {
namespace {

class FreeBsdSockets : public SocketCalls {
 public:
  ssize_t SendMsg(int fd, const msghdr* msg, int flags) const override {
    return sendmsg(fd, msg, flags);
  }
  ssize_t RecvMsg(int fd, msghdr* msg, int flags) const override { return recvmsg(fd, msg, flags); }
  RecordEnds record_ends() const override { return record_ends_; }

 private:
  // FreeBSD 15.0 runs unix(4) SOCK_SEQPACKET on the stream code: a record ends only where its
  // sender passed MSG_EOR, recvmsg sets MSG_EOR in msg_flags at its end, and nothing is
  // truncated. Before 15.0 SEQPACKET was atomic like a datagram socket, cut with MSG_TRUNC.
  // Which one runs is the kernel's release (getosreldate(3)), not the headers'.
  RecordEnds record_ends_ = getosreldate() >= 1500000 ? RecordEnds::kMsgEor : RecordEnds::kDatagram;
};

}  // namespace

const SocketCalls& KernelSockets() {
  static const FreeBsdSockets sockets;
  return sockets;
}

}  // namespace nsbroker
