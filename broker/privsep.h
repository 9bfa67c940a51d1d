// Owns nsbrokerd's side of the split into two processes (run_as; docs/PRIVSEP.md): forking the
// server over a socketpair, finding and checking the opener executable, and exec'ing it in
// the parent with its hand-over. Never serves a request and never opens a target.
//
//   auto opener = nsbroker::FindOpener();              // before anything is forked
//   auto server = nsbroker::ForkServer(SIGTERM);       // {channel, pid}; in the child: pid 0
//   if (server->pid > 0) return nsbroker::ExecOpener(std::move(*opener), handover, ...);
#pragma once

#include <sys/types.h>

#include <string>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "target_table.h"

namespace nsbroker {

// The signals of process.h kDaemonSignals, blocked from before the fork until each process
// waits for them its own way.
void BlockDaemonSignals();
void UnblockDaemonSignals();

// A fork of this process, joined to it by a SOCK_SEQPACKET socketpair: in the parent `pid` is
// the child's and `channel` the parent's end; in the child, pid 0 and the child's end, and the
// child gets `death_signal` when the parent dies (checked after it was set: a parent already
// gone is an error).
struct Forked {
  pid_t pid = 0;
  UniqueFd channel;
};
[[nodiscard]] Result<Forked> ForkServer(int death_signal);

// The opener executable and nsbrokerd's own, both opened for exec before the fork.
struct OpenerFiles {
  std::string path;  // of the opener, for messages
  UniqueFd opener;
  UniqueFd self;  // nsbrokerd: the opener runs it to compile a reload's config
};
// nsbroker-opener, found beside this executable (no PATH, no environment): the relative path
// from sbin to libexec/nsbroker the build was configured with, which the build tree lays out
// alike. It must be a regular file, root's, writable by neither group nor others, in
// directories from / down that are root's and writable by no one else (unless sticky); an
// error naming the path otherwise.
[[nodiscard]] Result<OpenerFiles> FindOpener();

// Replaces this process with the opener (execve keeps the pid: MainPID, the unreaped server,
// the socketpair), handing it `handover` in a sealed memfd with `channel` and the nsbrokerd
// executable kept open across the exec. Its environment is $NOTIFY_SOCKET and
// $JOURNAL_STREAM, when set, and nothing else. Returns only on failure.
[[nodiscard]] Result<void> ExecOpener(OpenerFiles files, Handover handover, UniqueFd channel);

}  // namespace nsbroker
