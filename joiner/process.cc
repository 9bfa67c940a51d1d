// The joiner's process steps shared by nsjoin, jailme and Spawn: ids, the fork into a pid
// namespace, exec, the cgroup (waiting: child_wait.cc). No threads, no Spawn: jailme links
// this, not spawn.cc.
#include <fcntl.h>
#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "nsbroker/join.h"

namespace nsbroker {

Result<void> SetIds(std::optional<uid_t> uid, std::optional<gid_t> gid,
                    bool entered_user_namespace) {
  if (gid) {
    // A rootless target's user namespace usually has setgroups "deny"
    // (user_namespaces(7)); there EPERM only means there is nothing to drop.
    if (setgroups(0, nullptr) != 0 && !(entered_user_namespace && errno == EPERM)) {
      return SysError("setgroups");
    }
    if (setresgid(*gid, *gid, *gid) != 0) return SysError("setresgid " + std::to_string(*gid));
  }
  if (uid) {
    if (setresuid(*uid, *uid, *uid) != 0) return SysError("setresuid " + std::to_string(*uid));
  }
  return {};
}

Result<pid_t> ForkIntoPidNamespace(const Grant& grant) {
  pid_t pid = fork();
  if (pid >= 0) return pid;
  // alloc_pid() fails with ENOMEM once the namespace's init is gone (pid_namespaces(7)).
  if (errno == ENOMEM) {
    return std::unexpected(Error{
        ErrorCode::kUnavailable, ENOMEM,
        "pid namespace of target '" + grant.target + "' has no init (its init process exited)"});
  }
  return SysError(ErrorCode::kResourceExhausted, "fork");
}

Error Exec(const std::vector<std::string>& argv) {
  if (argv.empty()) return Error{ErrorCode::kInvalidRequest, 0, "no command to run"};
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  int err = errno;
  return Error{err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kPermissionDenied, err,
               "exec " + argv[0] + ": " + std::strerror(err)};
}

Result<UniqueFd> OpenCgroupProcs(const Grant& grant) {
  const GrantEntry* dir = grant.Find(NsKind::kCgroupDir);
  if (dir == nullptr || !dir->fd.valid()) {
    return MakeError(ErrorCode::kNotFound, "the grant of target '" + grant.target +
                                               "' has no cgroupdir entry (its cgroup)");
  }
  UniqueFd procs(openat(dir->fd.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC));
  if (!procs.valid()) return SysError("open the cgroup.procs of target '" + grant.target + "'");
  return procs;
}

Result<void> MoveIntoCgroup(const Grant& grant, BorrowedFd procs) {
  if (write(procs.get(), "0", 1) != 1) {
    return SysError("join the cgroup of target '" + grant.target + "' (cgroup.procs)");
  }
  return {};
}

}  // namespace nsbroker
