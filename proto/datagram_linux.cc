// The datagram record rule on Linux.
#include "datagram.h"

namespace nsbroker {

// unix(7): SOCK_SEQPACKET keeps message boundaries, cuts an oversized one (MSG_TRUNC) and
// never reports MSG_EOR.
RecordEnds KernelRecordEnds() { return RecordEnds::kDatagram; }

}  // namespace nsbroker
