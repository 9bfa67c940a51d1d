// The platform seam of libnsjoin, "enter what I was given": check a granted descriptor and
// enter a planned list of entries, or a jail. Never selects entries; join.cc decides what to
// enter. Linux: enter_linux.cc (namespaces); FreeBSD: enter_freebsd.cc (jails, over
// jail_enter.h).
#pragma once

#include <sys/types.h>

#include <string_view>
#include <vector>

#include "nsbroker/client.h"
#include "nsbroker/error.h"
#include "nsbroker/join.h"

namespace nsbroker::platform {

// Checks a received descriptor before the client hands it out. Linux: NS_GET_NSTYPE equals
// the entry's kind and st_ino/st_dev equal the entry's; ROOT/CWD are directories.
[[nodiscard]] Result<void> CheckEntry(const GrantEntry& entry);

// What to enter, already selected and in nsenter's order (user, cgroup, ipc, uts, net, pid,
// mnt, time). The platform may only move the user namespace last (or skip entries the
// caller is already in), because that depends on who the caller is.
struct EnterPlan {
  std::string_view target;
  std::vector<const GrantEntry*> namespaces;
  const GrantEntry* root = nullptr;  // chroot through it
  const GrantEntry* cwd = nullptr;   // chdir through it ("/" after root when null)
};

[[nodiscard]] Result<Entered> EnterPlanned(const EnterPlan& plan);

// Attaches the calling process to a JAIL entry (FreeBSD); kInvalidRequest on Linux.
[[nodiscard]] Result<Entered> EnterJail(std::string_view target, const GrantEntry& jail);

// Enters `net` on the calling thread only (a network namespace is per thread).
[[nodiscard]] Result<void> EnterNetworkOnThisThread(const GrantEntry& net);

}  // namespace nsbroker::platform
