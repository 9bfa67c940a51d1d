// jailme's identity switches: who called it, acting as that user while keeping root saved,
// regaining root to enter, and the verified permanent drop [openssh uidswap.c].
// Never decides what to enter and never keeps a way back to root after DropForGood.
//
//   nsbroker::Caller caller = nsbroker::RecordCaller();
//   if (auto r = nsbroker::ActAsCaller(caller); !r) return Fail(r.error());
//   ... connect, ask ...; RegainRoot(); ... enter ...; DropForGood(caller);
#pragma once

#include "nsbroker/error.h"
#include "privilege_drop.h"

namespace nsbroker {

// The real identity of the process that ran jailme: what it gets back before exec
// (supplementary groups as getgroups(2) reported them).
using Caller = Credentials;

// getuid/getgid/getgroups of the caller; exits 125 if getgroups fails (cannot happen with a
// buffer of NGROUPS_MAX, so it would be a kernel or libc surprise).
Caller RecordCaller();

// Effective uid and gid become the caller's; the saved uid stays 0 so that RegainRoot works.
// While in this state the kernel checks file and socket access (fsuid follows euid) and
// SO_PEERCRED against the caller, not against root.
[[nodiscard]] Result<void> ActAsCaller(const Caller& caller);

// Effective uid back to 0 (from the saved uid) for the setns calls.
[[nodiscard]] Result<void> RegainRoot();

// The verified drop shared with the broker (common/privilege_drop.h: setgroups, setresgid,
// setresuid to the caller, then getresuid/getresgid/getgroups and a failing setuid(0),
// seteuid(0), setgid(0), setegid(0)), then that no capability is left. Any failure or mismatch
// prints what it saw and exits 125: there is no way to continue.
void DropForGood(const Caller& caller);

}  // namespace nsbroker
