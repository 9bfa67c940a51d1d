// Linux side of the opener's platform needs (opener.h): the parent-death signal.
#include <sys/prctl.h>

#include <csignal>

#include "opener.h"

namespace nsbroker {

Result<void> SetParentDeathSignal(int sig) {
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(sig)) != 0) {
    return SysError(ErrorCode::kInternal, "prctl PR_SET_PDEATHSIG");
  }
  return {};
}

}  // namespace nsbroker
