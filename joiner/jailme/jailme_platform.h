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

// Refuses (kPermissionDenied, saying why) unless the kernel says this is a real setuid start
// in the host's initial user namespace. Linux: AT_SECURE, and /proc/self/ns/user is the init
// user namespace (nsfs inode PROC_USER_INIT_INO); inside a user namespace the caller made
// (unshare -U -r) euid 0 is theirs, and so would be a socket peer's uid 0. FreeBSD:
// issetugid(2).
[[nodiscard]] Result<void> CheckRealSetuidStart();

// Root cut down to what jailme's steps need, as bubblewrap does. Linux: the bounding set
// cleared (nothing the command execs can ever regain more), permitted and effective
// CAP_SYS_ADMIN and CAP_SYS_CHROOT (setns, chroot) and CAP_SETUID/CAP_SETGID (the drop),
// inheritable and ambient empty; checked with capget. FreeBSD: nothing (root is the uid).
[[nodiscard]] Result<void> LimitToEnterAndDrop();

// After entering: only CAP_SETUID and CAP_SETGID are left for DropForGood; checked.
[[nodiscard]] Result<void> LimitToDrop();

// After the permanent uid drop: kInternal naming what privilege is left beyond the uid
// (Linux: any permitted or effective capability). FreeBSD's privilege is the uid itself,
// which DropForGood already verified.
[[nodiscard]] Result<void> CheckNoPrivilegeLeft();

}  // namespace nsbroker
