// Owns the one-way switch of a root process to an unprivileged identity, and its
// verification: the broker's run_as (broker/privileges.h) and jailme's drop back to its caller
// (joiner/jailme/jailme_privs.h) are this one drop. Never returns success from a partial drop;
// what else a platform grants beside the ids (Linux capabilities) is the caller's to check.
//
//   if (auto r = nsbroker::DropPrivilegesTo({.uid = 65534, .gid = 65534, .groups = {}}); !r) {
//     die(r.error().message);  // e.g. "setresuid 65534: Operation not permitted"
//   }
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "nsbroker/error.h"

namespace nsbroker {

// Whom a process becomes: all three uids, all three gids, and the supplementary groups.
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

// setgroups, setresgid, setresuid, in that order [openssh uidswap.c permanently_set_uid],
// then verifies rather than trusts: getresuid/getresgid report `to` three times each,
// getgroups reports `to.groups` (in any order), and unless `to` is root, setuid(0),
// seteuid(0), and (unless its gid is 0) setgid(0) and setegid(0) all fail. Any failure or
// mismatch is kInternal naming the call and the ids it saw. Needs euid 0 (CAP_SETUID and
// CAP_SETGID); without it, setgroups is the call that fails.
[[nodiscard]] Result<void> DropPrivilegesTo(const Credentials& to);

}  // namespace nsbroker
