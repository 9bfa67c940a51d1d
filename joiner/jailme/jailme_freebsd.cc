// jailme's FreeBSD hardening: procctl(2). Written to the FreeBSD 14 manual pages; not compiled
// on Linux.

// procctl(2) lists <sys/procctl.h> after <sys/types.h>; P_PID comes from <sys/wait.h>.
// clang-format off
#include <sys/types.h>
#include <sys/procctl.h>
#include <sys/wait.h>
// clang-format on
#include <unistd.h>

#include "jailme_platform.h"

namespace nsbroker {

Result<void> ForbidTracing() {
  // procctl(2) PROC_TRACE_CTL: no debugger may attach (ptrace, procfs, ktrace) until execve,
  // which re-enables tracing for the user's command: the same span as Linux's dumpable flag.
  int mode = PROC_TRACE_CTL_DISABLE_EXEC;
  if (procctl(P_PID, getpid(), PROC_TRACE_CTL, &mode) != 0) {
    return SysError(ErrorCode::kInternal, "procctl(PROC_TRACE_CTL)");
  }
  return {};
}

Result<void> ForbidNewPrivileges() {
  // procctl(2) PROC_NO_NEW_PRIVS_CTL (FreeBSD 14): execve ignores setuid and setgid bits, so a
  // setuid binary inside the jail (the jail's root controls them) cannot make the user root.
  int mode = PROC_NO_NEW_PRIVS_ENABLE;
  if (procctl(P_PID, getpid(), PROC_NO_NEW_PRIVS_CTL, &mode) != 0) {
    return SysError(ErrorCode::kInternal, "procctl(PROC_NO_NEW_PRIVS_CTL)");
  }
  return {};
}

Result<void> CheckRealSetuidStart() {
  // issetugid(2): the kernel marked the process at exec because the setuid bit changed its
  // ids (FreeBSD has no user namespaces).
  if (issetugid() == 0) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "not a setuid start (issetugid is 0): jailme runs only as an ordinary user, "
                     "not as root; root uses nsjoin");
  }
  return {};
}

Result<void> LimitToEnterAndDrop() { return {}; }  // no capability sets: root is the uid
Result<void> LimitToDrop() { return {}; }

Result<void> CheckNoPrivilegeLeft() {
  // FreeBSD has no capability sets beside the uid: DropForGood's getresuid check and its
  // failing setuid(0) are the whole proof.
  return {};
}

}  // namespace nsbroker
