// Owns confining the process that talks to users once it runs unprivileged (the privsep
// server, docs/PRIVSEP.md; service.cc calls these in the forked child): its own read-only
// mount tree, no capabilities, no_new_privs, non-dumpable, a seccomp allow-list. Never opens,
// binds or changes a uid itself: it only takes away, and names what it could not take.
//
//   if (auto r = nsbroker::PrepareSandbox(); !r) return r;    // as root, before the drop
//   if (auto r = nsbroker::DropPrivileges(run_as); !r) return r;
//   if (auto r = nsbroker::EnterSandbox(); !r) return r;      // right after the drop
#pragma once

#include "nsbroker/error.h"

namespace nsbroker {

// True in an AddressSanitizer build: LeakSanitizer inspects the process at exit with ptrace
// from a task it clones, so the filter lets those syscalls through too (prctl whole, ptrace,
// clone, ...: sandbox_linux.cc lists them) and EnterSandbox logs that it does. Else false.
extern const bool kSandboxSanitizerAllowance;

// Linux: a mount namespace of our own in which every mount is read-only, nosuid, nodev and
// private (mount_setattr(2) with AT_RECURSIVE), and an empty capability bounding set. Needs
// CAP_SYS_ADMIN and CAP_SETPCAP, hence before the privilege drop. Descriptors opened before
// (audit log, stderr, listening sockets, the opener's channel) keep working: they hold the
// original mounts. Paths stay readable (/proc, pid-file directories, NSS's files).
// FreeBSD: no mount namespaces; succeeds doing nothing (sandbox_freebsd.cc says why).
[[nodiscard]] Result<void> PrepareSandbox();

// After the drop: PR_SET_DUMPABLE 0, empty effective/permitted/inheritable/ambient
// capabilities, PR_SET_NO_NEW_PRIVS, then the seccomp allow-list; each step read back from
// the kernel, and the first that fails or does not take is the error; success logs one line. A
// syscall outside the list kills the whole process with SIGSYS (SECCOMP_RET_KILL_PROCESS): a server
// that tries one is not the program we wrote, and must not go on serving. FreeBSD: procctl(2)
// PROC_NO_NEW_PRIVS and PROC_TRACE_CTL, no capsicum (see the source).
[[nodiscard]] Result<void> EnterSandbox();

}  // namespace nsbroker
