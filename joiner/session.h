// Owns a joined command's session: a new session always (setsid), and optionally a pty of its
// own whose master this process relays to the caller's terminal [su --pty, OpenSSH's ttys].
// Never enters namespaces or changes ids; never lets the command reach the caller's terminal.
//
//   auto pty = nsbroker::PtyOrPrivate(nsbroker::OpenPty(0), 0, geteuid(), getegid());
//   nsbroker::ChildWait wait(nsbroker::ChildWait::Session::kOwn);
//   pid_t child = fork();
//   if (child == 0) { StartSession(&*pty, wait); exec...; }
//   int status = *nsbroker::RelayUntilExit(wait, child, &*pty);
#pragma once

#include <sys/types.h>

#include "child_wait.h"
#include "nsbroker/client.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// A new pty pair: the master stays with the relay, the slave becomes the command's terminal.
struct Pty {
  UniqueFd master;
  UniqueFd slave;
};

// Opens a new pty through /dev/ptmx as this process sees it now (after entering a mount
// namespace: the target's devpts), the slave through the master (Linux TIOCGPTPEER, no path
// lookup), both close-on-exec. When `terminal` is a terminal, the slave gets its termios and
// window size. A /dev/ptmx that is no pty master is kNotFound.
[[nodiscard]] Result<Pty> OpenPty(int terminal);

// `tried` (OpenPty inside a target) when it gave a pty; else a pty of a devpts instance made
// for this session alone, for a target without one of its own: Linux fsopen/fsmount, mounted
// nowhere (the mount namespace's tree is unchanged), its slave owned by `uid`/`gid` with mode
// 0600, one pty at most, its ptmx root's (0600); terminal modes as OpenPty. That needs
// CAP_SYS_ADMIN in the user namespace owning this process's mount namespace (fsopen, fsmount)
// and in its own (the new superblock), and euid 0 (the ptmx's owner). The error names why
// neither gave one. FreeBSD: `tried` only (posix_openpt needs no path there).
[[nodiscard]] Result<Pty> PtyOrPrivate(Result<Pty> tried, int terminal, uid_t uid, gid_t gid);

// The command's process: ForkIntoPidNamespace after an entered pid namespace (so that the
// command is inside it), else a plain fork(2). 0 in the child.
[[nodiscard]] Result<pid_t> ForkCommand(const Grant& grant, bool into_pid_namespace);

// In the forked child, before exec: the caller's signals back (wait.RestoreInChild), setsid(2)
// (so the caller's terminal is never its controlling terminal: no TIOCSTI into it), and with
// a pty makes the slave its controlling terminal and fds 0-2, closing both pty descriptors.
[[nodiscard]] Result<void> StartSession(Pty* pty, const ChildWait& wait);

// In the parent, with `wait` made (Session::kOwn) before the fork: forwards the signals (the
// child is in a session of its own, the caller's terminal does not signal it), and with a pty
// puts the caller's terminal (fd 0, when one) in raw mode, relays fd 0 -> master and master
// -> fd 1, passes window size changes (SIGWINCH) on, and restores the terminal on every
// return. Returns the child's exit code, or 128+N if signal N killed it.
[[nodiscard]] Result<int> RelayUntilExit(ChildWait& wait, pid_t child, Pty* pty);

}  // namespace nsbroker
