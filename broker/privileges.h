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

// setgroups, setresgid, setresuid (in that order, openssh uidswap.c), then verifies with
// getresuid/getresgid/getgroups, and that setuid(0) fails unless the target is root.
[[nodiscard]] Result<void> DropPrivileges(const RunAs& run_as);

}  // namespace nsbroker
