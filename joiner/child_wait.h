// Owns waiting for the one child that a joiner (nsjoin, jailme, Spawn's stand-in) leaves
// running the command: the signals it passes on are blocked from before the fork, so none is
// lost or kills the waiter early; they are forwarded to the child as they arrive; the end is
// the child's wait status, 128+N as an exit code for signal N. Never enters or changes ids.
//
//   nsbroker::ChildWait wait(nsbroker::ChildWait::Session::kShared);  // before fork(2)
//   pid_t child = fork();
//   if (child == 0) { wait.RestoreInChild(); exec...; }
//   wait.Watch(child);
//   _exit(nsbroker::ExitCodeOf(*wait.Wait()));
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <optional>

#include "nsbroker/error.h"

namespace nsbroker {

// A waitpid(2) status as an exit code: the code, or 128+N if signal N killed the process.
int ExitCodeOf(int wait_status);

// One per process at a time: the signal handlers it installs only note arrivals, in a table
// of the process; forwarding and reaping happen in Forward, outside any handler.
class ChildWait {
 public:
  enum class Session {
    // The child shares our session and process group: what the terminal sends (SIGINT,
    // SIGQUIT) reaches it directly, so the waiter ignores those rather than deliver them twice;
    // SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 (a supervisor's, sent to the pid it knows) are
    // forwarded.
    kShared,
    // The child is in a session of its own (setsid): nothing reaches it but through us, so
    // SIGINT and SIGQUIT are forwarded too, and a window size change (SIGWINCH) is noted for
    // the pty relay (TakeWindowChange), not forwarded.
    kOwn,
  };

  // Before fork(2): blocks the signals above and SIGCHLD. SIGCHLD gets a handler at once, so
  // that a caller that left it ignored (SIG_IGN survives exec, and makes the kernel reap
  // children itself) still sees its child end.
  explicit ChildWait(Session session);
  // The caller's signal mask and dispositions back (a test, or a waiter that returns).
  ~ChildWait();
  ChildWait(const ChildWait&) = delete;
  ChildWait& operator=(const ChildWait&) = delete;

  // In the forked child, before exec: the caller's signal mask and dispositions, so that the
  // command starts as it would have without us. Signals sent to it meanwhile arrive now.
  void RestoreInChild() const;

  // In the parent, after fork(2): `child` is the process to forward to and wait for. Handlers
  // now note the forwarded signals; they are taken only while waiting (wait_mask()).
  void Watch(pid_t child);

  // The mask to wait with (sigsuspend, ppoll): the caller's, with ours unblocked.
  const sigset_t& wait_mask() const { return wait_mask_; }

  // After a wake-up: forwards each signal noted since the last call to the child, and reaps
  // it if it ended; its wait status then, nullopt while it runs. kInternal if waitpid fails.
  [[nodiscard]] Result<std::optional<int>> Forward();

  // kOwn: whether SIGWINCH arrived since the last call.
  [[nodiscard]] bool TakeWindowChange();

  // The whole wait for a caller with nothing else to watch: Forward, sigsuspend, until the
  // child has ended; its wait status.
  [[nodiscard]] Result<int> Wait();

 private:
  static constexpr std::size_t kMaxHandled = 8;
  Session session_;
  pid_t child_ = -1;
  sigset_t caller_mask_;
  sigset_t wait_mask_;
  std::array<struct sigaction, kMaxHandled> caller_actions_{};
};

}  // namespace nsbroker
