// jailme's Linux hardening: prctl(2) and capget(2) (no libcap in a setuid binary).
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jailme_platform.h"

namespace nsbroker {

Result<void> ForbidTracing() {
  // prctl(2) PR_SET_DUMPABLE: a non-dumpable process cannot be ptraced or have its /proc
  // files opened by anyone lacking CAP_SYS_PTRACE, in particular not by processes of the
  // target once we are inside its pid namespace, nor by the caller while we hold root.
  // execve of the user's command resets it.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "prctl(PR_SET_DUMPABLE)");
  }
  return {};
}

Result<void> ForbidNewPrivileges() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  return {};
}

Result<void> CheckNoPrivilegeLeft() {
  // capget(2) directly: nothing permitted, nothing effective.
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return SysError(ErrorCode::kInternal, "capget");
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0) {
      return MakeError(ErrorCode::kInternal, "capabilities left after the drop");
    }
  }
  return {};
}

}  // namespace nsbroker
