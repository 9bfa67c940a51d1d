// Owns finding a process's cgroup v2 directory and opening it as a grant entry (CGROUPDIR):
// the cgroup2 mount from mountinfo (unified and hybrid hosts alike), the path from /proc/PID.
// Never writes to cgroupfs and never follows a symlink or leaves the cgroup2 mount.
#pragma once

#include <string>

#include "nsbroker/error.h"
#include "targets.h"

namespace nsbroker {

// Opens the cgroup v2 directory of the process whose /proc directory is `proc_dir`
// ("/proc/42", "/proc/self"), O_RDONLY|O_DIRECTORY, beneath this process's cgroup2 mount
// (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV), checked to be cgroup2.
// No cgroup2 mount, or no v2 line in PROC_DIR/cgroup, is kUnavailable naming it.
[[nodiscard]] Result<EntryFd> OpenCgroupDirectory(const std::string& proc_dir);

}  // namespace nsbroker
