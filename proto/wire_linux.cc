// The wire codec's kernel calls on Linux, where every SOCK_SEQPACKET sendmsg is a record.
#include <sys/socket.h>

#include "wire.h"

namespace nsbroker {
namespace {

class LinuxSockets : public SocketCalls {
 public:
  ssize_t SendMsg(int fd, const msghdr* msg, int flags) const override {
    return sendmsg(fd, msg, flags);
  }
  ssize_t RecvMsg(int fd, msghdr* msg, int flags) const override { return recvmsg(fd, msg, flags); }
  // unix(7): SOCK_SEQPACKET keeps message boundaries; an oversized one is cut (MSG_TRUNC). It
  // never reports MSG_EOR.
  RecordEnds record_ends() const override { return RecordEnds::kDatagram; }
};

}  // namespace

const SocketCalls& KernelSockets() {
  static const LinuxSockets sockets;
  return sockets;
}

}  // namespace nsbroker
