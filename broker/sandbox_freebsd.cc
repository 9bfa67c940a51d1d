#include <sys/procctl.h>
#include <unistd.h>

#include "sandbox.h"

namespace nsbroker {

// FreeBSD has no sanitizer allowance to make: there is no filter (see EnterSandbox).
const bool kSandboxSanitizerAllowance = false;

Result<void> PrepareSandbox() {
  // No mount namespaces on FreeBSD, and no capability sets to bound: the drop to run_as is
  // all the privilege there is to lose. Nothing to do, on purpose.
  return {};
}

namespace {

Result<void> SetAndCheck(int set, int value, int status, int want, const char* what) {
  if (procctl(P_PID, getpid(), set, &value) != 0) {
    return SysError(ErrorCode::kInternal, std::string("sandbox: procctl ") + what);
  }
  int now = 0;
  if (procctl(P_PID, getpid(), status, &now) != 0 || now != want) {
    return MakeError(ErrorCode::kInternal,
                     std::string("sandbox: procctl ") + what + " did not take");
  }
  return {};
}

}  // namespace

Result<void> EnterSandbox() {
  // Set-id programs no longer raise privilege for us or our children (procctl(2)).
  if (auto r = SetAndCheck(PROC_NO_NEW_PRIVS_CTL, PROC_NO_NEW_PRIVS_ENABLE,
                           PROC_NO_NEW_PRIVS_STATUS, PROC_NO_NEW_PRIVS_ENABLE, "PROC_NO_NEW_PRIVS");
      !r) {
    return r;
  }
  // No ptrace, ktrace or core dump of this process, as PR_SET_DUMPABLE 0 on Linux;
  // PROC_TRACE_STATUS then reports -1.
  if (auto r = SetAndCheck(PROC_TRACE_CTL, PROC_TRACE_CTL_DISABLE, PROC_TRACE_STATUS, -1,
                           "PROC_TRACE_CTL disable");
      !r) {
    return r;
  }
  // No capsicum: cap_enter(2) forbids every lookup by name or path, and the server still
  // looks jails up by name (jail_getid) and reads its config on reload; that waits for the
  // root opener to do both.
  return {};
}

}  // namespace nsbroker
