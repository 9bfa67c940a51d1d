// FreeBSD side of process.h.
#include <fcntl.h>
#include <sys/param.h>
#include <sys/procctl.h>
#include <sys/procdesc.h>
#include <sys/sysctl.h>
#include <unistd.h>

#include "process.h"

namespace nsbroker {

Result<void> SetParentDeathSignal(int sig) {
  if (procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &sig) != 0) {
    return SysError(ErrorCode::kInternal, "procctl PROC_PDEATHSIG_CTL");
  }
  return {};
}

Result<std::string> SelfExecutablePath() {
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PATHNAME, -1};
  char path[PATH_MAX];
  std::size_t len = sizeof path;
  if (sysctl(mib, 4, path, &len, nullptr, 0) != 0 || len == 0) {
    return SysError(ErrorCode::kInternal, "sysctl kern.proc.pathname");
  }
  return std::string(path, strnlen(path, len));
}

Result<UniqueFd> OpenExecutable(const std::string& path) {
  // O_EXEC: what fexecve(2) takes, and the descriptor is what fstat checks.
  UniqueFd fd(open(path.c_str(), O_EXEC | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return SysError(CodeForErrno(errno), path);
  return fd;
}

Result<UniqueFd> OpenSelfExecutable() {
  // FreeBSD has no /proc/self/exe by default: the path the kernel recorded, opened for exec.
  auto path = SelfExecutablePath();
  if (!path) return std::unexpected(std::move(path.error()));
  return OpenExecutable(*path);
}

Result<void> ExecFd(BorrowedFd exe, char* const argv[], char* const envp[]) {
  fexecve(exe.get(), argv, envp);
  return SysError(ErrorCode::kInternal, "fexecve");
}

Result<Watched> ForkWatched() {
  int fd = -1;
  pid_t pid = pdfork(&fd, PD_CLOEXEC);
  if (pid < 0) return SysError(ErrorCode::kResourceExhausted, "pdfork");
  if (pid == 0) return Watched{};
  return Watched{.pid = pid, .watch = UniqueFd(fd)};
}

}  // namespace nsbroker
