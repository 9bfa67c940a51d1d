// Owns jailme's few process-hardening calls that differ per platform (jailme_linux.cc:
// prctl and capget; jailme_freebsd.cc: procctl). Never decides what to enter or whom to trust.
//
//   if (auto r = nsbroker::ForbidTracing(); !r) Die(r.error().message);
#pragma once

#include "nsbroker/error.h"

namespace nsbroker {

// Until exec, no other process (the target's, the caller's) may trace or inspect this one.
// Linux: PR_SET_DUMPABLE 0. FreeBSD: PROC_TRACE_CTL_DISABLE_EXEC. Both end at execve.
[[nodiscard]] Result<void> ForbidTracing();

// execve(2) never grants privileges again (setuid/setgid bits, file capabilities).
// Linux: PR_SET_NO_NEW_PRIVS. FreeBSD: PROC_NO_NEW_PRIVS_CTL.
[[nodiscard]] Result<void> ForbidNewPrivileges();

// After the permanent uid drop: kInternal naming what privilege is left beyond the uid
// (Linux: any permitted or effective capability). FreeBSD's privilege is the uid itself,
// which DropForGood already verified.
[[nodiscard]] Result<void> CheckNoPrivilegeLeft();

}  // namespace nsbroker
