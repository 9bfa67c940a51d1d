// Owns the broker's process privileges: the descriptor limit and the one-way, verified switch
// to run_as. Never returns from a partial drop: a drop that cannot be verified is an error.
//
//   if (auto r = nsbroker::DropPrivileges(*config.run_as); !r) { log; exit(1); }
#pragma once

#include "config.h"
#include "nsbroker/error.h"

namespace nsbroker {

// Raises the soft RLIMIT_NOFILE to the hard limit: every pid target holds a pidfd, and every
// connection and in-flight descriptor counts against it.
[[nodiscard]] Result<void> RaiseFdLimit();

// The verified drop shared with jailme (common/privilege_drop.h: setgroups, setresgid,
// setresuid, then getresuid/getresgid/getgroups and a failing setuid(0), seteuid(0), setgid(0)
// and setegid(0) unless the target is root) to run_as; errors begin "run_as NAME (uid U, gid
// G): ".
[[nodiscard]] Result<void> DropPrivileges(const RunAs& run_as);

}  // namespace nsbroker
