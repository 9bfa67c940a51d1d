// Owns the process calls both executables of privilege separation need, per platform
// (process_linux.cc, process_freebsd.cc): the parent-death signal, this executable as a
// descriptor, exec by descriptor, and a child watched by a descriptor. Never decides what to
// run: nsbrokerd's privsep.h and the opener do.
//
//   auto child = nsbroker::ForkWatched();      // in the child: pid 0
//   if (child->pid == 0) { ExecFd(exe, argv, envp); _exit(127); }
//   pollfd p{child->watch.get(), POLLIN, 0};   // readable once the child exited
#pragma once

#include <sys/types.h>

#include <csignal>
#include <string>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// The signals the opener takes in its poll loop: blocked in nsbrokerd from before the fork,
// through the opener's exec (the mask and pending signals survive execve(2)), until each
// process waits for them its own way: the opener in ppoll, the server in libevent.
inline constexpr int kDaemonSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};

// The platform's "signal me when my parent dies" (Linux prctl, FreeBSD procctl).
[[nodiscard]] Result<void> SetParentDeathSignal(int sig);

// The file this process runs, as a descriptor exec can take (Linux: O_PATH of /proc/self/exe,
// the very inode even if the path was replaced since), close-on-exec.
[[nodiscard]] Result<UniqueFd> OpenSelfExecutable();
// `path` as a descriptor exec can take (Linux O_PATH, FreeBSD O_EXEC), close-on-exec; the
// last component is never followed if it is a link.
[[nodiscard]] Result<UniqueFd> OpenExecutable(const std::string& path);
// The path this process was started from, for finding its siblings.
[[nodiscard]] Result<std::string> SelfExecutablePath();

// execve(2) of the file `exe` refers to (Linux execveat AT_EMPTY_PATH, FreeBSD fexecve).
// Returns only on failure.
[[nodiscard]] Result<void> ExecFd(BorrowedFd exe, char* const argv[], char* const envp[]);

// fork(2) with a descriptor of the child that becomes readable when it exits (Linux: a
// pidfd; FreeBSD: pdfork's process descriptor). The parent still reaps it with waitpid.
struct Watched {
  pid_t pid = 0;  // 0 in the child
  UniqueFd watch;
};
[[nodiscard]] Result<Watched> ForkWatched();

}  // namespace nsbroker
