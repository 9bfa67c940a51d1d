// Linux side of process.h.
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "process.h"

namespace nsbroker {

Result<void> SetParentDeathSignal(int sig) {
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(sig)) != 0) {
    return SysError(ErrorCode::kInternal, "prctl PR_SET_PDEATHSIG");
  }
  return {};
}

Result<UniqueFd> OpenExecutable(const std::string& path) {
  // O_PATH: exec needs no read permission, and the descriptor is what fstat checks.
  UniqueFd fd(open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return SysError(CodeForErrno(errno), path);
  return fd;
}

Result<UniqueFd> OpenSelfExecutable() {
  // The magic link resolves to the inode the kernel runs, not to whatever the path names now
  // (proc(5)): an upgrade on disk does not change what a reload runs.
  UniqueFd fd(open("/proc/self/exe", O_PATH | O_CLOEXEC));
  if (!fd.valid()) return SysError(ErrorCode::kInternal, "open /proc/self/exe");
  return fd;
}

Result<std::string> SelfExecutablePath() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0) return SysError(ErrorCode::kInternal, "readlink /proc/self/exe");
  return std::string(path, static_cast<std::size_t>(n));
}

Result<void> ExecFd(BorrowedFd exe, char* const argv[], char* const envp[]) {
  syscall(SYS_execveat, exe.get(), "", argv, envp, AT_EMPTY_PATH);
  return SysError(ErrorCode::kInternal, "execveat");
}

Result<Watched> ForkWatched() {
  pid_t pid = fork();
  if (pid < 0) return SysError(ErrorCode::kResourceExhausted, "fork");
  if (pid == 0) return Watched{};
  // Our unreaped child: its pid cannot name another process before we wait for it.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    Error error = SysError(ErrorCode::kInternal, "pidfd_open").error();
    kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return std::unexpected(std::move(error));
  }
  return Watched{.pid = pid, .watch = std::move(pidfd)};
}

}  // namespace nsbroker
