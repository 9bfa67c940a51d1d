#include "privileges.h"

#include <grp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

namespace nsbroker {
namespace {

// setgroups(2) takes its count as size_t on Linux and as int on FreeBSD: convert to whichever
// this libc declares (the list is at most NGROUPS_MAX long, which fits both).
template <class Count>
int SetGroups(int (*set)(Count, const gid_t*), const std::vector<gid_t>& groups) {
  return set(static_cast<Count>(groups.size()), groups.data());
}

}  // namespace

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
  const std::string who = "run_as " + run_as.name + " (uid " + std::to_string(run_as.uid) +
                          ", gid " + std::to_string(run_as.gid) + ")";
  // Groups first: once the uid is gone, setgroups(2) needs a privilege we no longer have.
  if (SetGroups(setgroups, run_as.groups) != 0) {
    return SysError(ErrorCode::kInternal, who + ": setgroups");
  }
  // Real, effective and saved ids all change, so nothing can switch back (setresgid(2)).
  if (setresgid(run_as.gid, run_as.gid, run_as.gid) != 0) {
    return SysError(ErrorCode::kInternal, who + ": setresgid");
  }
  if (setresuid(run_as.uid, run_as.uid, run_as.uid) != 0) {
    return SysError(ErrorCode::kInternal, who + ": setresuid");
  }
  // Verify rather than trust the return values [openssh permanently_set_uid].
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) {
    return SysError(ErrorCode::kInternal, who + ": getresuid");
  }
  if (ru != run_as.uid || eu != run_as.uid || su != run_as.uid || rg != run_as.gid ||
      eg != run_as.gid || sg != run_as.gid) {
    return MakeError(ErrorCode::kInternal, who + ": drop did not take: uids " + std::to_string(ru) +
                                               "/" + std::to_string(eu) + "/" + std::to_string(su) +
                                               ", gids " + std::to_string(rg) + "/" +
                                               std::to_string(eg) + "/" + std::to_string(sg));
  }
  int n = getgroups(0, nullptr);
  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(n, 0)));
  if (n < 0 || getgroups(n, groups.data()) != n) {
    return SysError(ErrorCode::kInternal, who + ": getgroups");
  }
  std::vector<gid_t> want = run_as.groups;
  std::sort(groups.begin(), groups.end());
  std::sort(want.begin(), want.end());
  if (groups != want) {
    return MakeError(ErrorCode::kInternal, who + ": supplementary groups did not take");
  }
  if (run_as.uid != 0 && setuid(0) == 0) {
    return MakeError(ErrorCode::kInternal, who + ": setuid(0) still succeeds after the drop");
  }
  return {};
}

}  // namespace nsbroker
