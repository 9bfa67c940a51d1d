#include "privileges.h"

#include <sys/resource.h>

#include <string>

#include "privilege_drop.h"

namespace nsbroker {

Result<void> RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return SysError(ErrorCode::kInternal, "getrlimit");
  if (limit.rlim_cur == limit.rlim_max) return {};
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return SysError(ErrorCode::kInternal, "setrlimit RLIMIT_NOFILE");
  }
  return {};
}

Result<void> DropPrivileges(const RunAs& run_as) {
  auto dropped = DropPrivilegesTo({.uid = run_as.uid, .gid = run_as.gid, .groups = run_as.groups});
  if (!dropped) {
    dropped.error().message = "run_as " + run_as.name + " (uid " + std::to_string(run_as.uid) +
                              ", gid " + std::to_string(run_as.gid) +
                              "): " + dropped.error().message;
  }
  return dropped;
}

}  // namespace nsbroker
