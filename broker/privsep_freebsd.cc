// FreeBSD side of the opener's platform needs (opener.h): the parent-death signal.
#include <sys/procctl.h>

#include <csignal>

#include "opener.h"

namespace nsbroker {

Result<void> SetParentDeathSignal(int sig) {
  if (procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &sig) != 0) {
    return SysError(ErrorCode::kInternal, "procctl PROC_PDEATHSIG_CTL");
  }
  return {};
}

}  // namespace nsbroker
