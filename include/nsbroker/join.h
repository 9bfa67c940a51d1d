// libnsjoin's entering: setns into a Grant in the right order, in this process, in a
// spawned command, or on a helper thread for the network namespace only.
//
//   auto grant = client->Join("web1");
//   auto entered = nsbroker::Enter(*grant);
//   if (!entered) return Fail(entered.error());  // then fork if entered->pid, and Exec
//   // or: auto pid = nsbroker::Spawn(*grant, {"hostname"});
//   // or: auto fd = nsbroker::RunInNetwork(*grant, [] { return socket(AF_INET, ...); });
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nsbroker/client.h"
#include "nsbroker/error.h"
#include "nsbroker/ns_kind.h"

namespace nsbroker {

struct EnterOptions {
  // Kinds to enter; empty = every namespace entry of the grant.
  std::vector<NsKind> kinds;
  bool chroot_to_root = false;  // nsenter -r: chroot through the ROOT entry
  bool chdir_to_cwd = false;    // nsenter -w: chdir through the CWD entry (else "/" after -r)
};

// What Enter did, so that the caller knows whether its command must be forked.
struct Entered {
  std::vector<NsKind> kinds;  // namespaces entered, in the order of the setns calls
  bool pid = false;           // a pid namespace was entered: only children will be inside it
  bool user = false;          // a user namespace was entered
};

// Enters the grant in the calling process. The order follows the kernel's rules (user
// namespace first when the caller needs the capabilities it grants, else last; decided
// from NS_GET_USERNS/NS_GET_OWNER_UID), each setns gets the expected CLONE_NEW* type, a
// namespace the caller is already in is skipped. mnt/user/time from a multi-threaded
// process is a kInvalidRequest error, not a crash. A pid namespace affects only children.
// Asking for a kind the grant lacks is kNotFound, and nothing is entered.
[[nodiscard]] Result<Entered> Enter(const Grant& grant, const EnterOptions& options = {});

struct SpawnOptions {
  EnterOptions enter;
  bool fork_after_pid = true;                         // false = nsenter -F
  std::optional<uid_t> uid;                           // nsenter -S (after entering; needs root)
  std::optional<gid_t> gid;                           // nsenter -G
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // -1 = inherit
};

// Forks; the child enters, forks again after entering a pid namespace (so the command is
// really inside it), and execs argv[0] through PATH. Returns the pid to wait for; after a
// pid namespace that is a stand-in which forwards SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 to the
// command and ends as it ends. Failures
// before exec come back as an Error (exec's ENOENT as kNotFound, EACCES as
// kPermissionDenied, with sys_errno set); a pid namespace whose init has died is reported
// as such, not as ENOMEM.
[[nodiscard]] Result<pid_t> Spawn(const Grant& grant, const std::vector<std::string>& argv,
                                  const SpawnOptions& options = {});

// Sets gid then uid (real, effective and saved) after entering, and drops supplementary
// groups when a gid is given (tolerated inside an entered user namespace whose setgroups
// is "deny"). Needs CAP_SETUID/CAP_SETGID where the ids are set.
[[nodiscard]] Result<void> SetIds(std::optional<uid_t> uid, std::optional<gid_t> gid,
                                  bool entered_user_namespace = false);

// fork(2) after Enter joined a pid namespace: 0 in the child, the child's pid in the parent.
// A pid namespace whose init has exited refuses new processes (the kernel says ENOMEM):
// that comes back as kUnavailable "pid namespace of target 'T' has no init (its init
// process exited)".
[[nodiscard]] Result<pid_t> ForkIntoPidNamespace(const Grant& grant);

// execvp(argv); returns only on failure: ENOENT is kNotFound, any other failure (EACCES,
// ENOEXEC...) kPermissionDenied, sys_errno set. An empty argv is kInvalidRequest.
[[nodiscard]] Error Exec(const std::vector<std::string>& argv);

// nsenter --join-cgroup through the grant's CGROUPDIR entry, in two steps: open the
// directory's cgroup.procs (before entering the target's cgroup namespace: the kernel checks
// the move against the opener's credentials and cgroup namespace), then, in the process to
// move, write 0 to it (cgroup v2: "the writing process"). No CGROUPDIR entry is kNotFound.
[[nodiscard]] Result<UniqueFd> OpenCgroupProcs(const Grant& grant);
[[nodiscard]] Result<void> MoveIntoCgroup(const Grant& grant, BorrowedFd procs);

// Waits for pid (retrying EINTR) and returns its exit code, or 128+N if signal N killed it.
[[nodiscard]] Result<int> WaitForExit(pid_t pid);

// Runs fn on a new thread that has entered only the grant's network namespace and returns
// its result; the calling threads never change namespace. An exception fn throws is
// rethrown in the caller.
[[nodiscard]] Result<void> RunInNetworkImpl(const Grant& grant, const std::function<void()>& fn);

template <class F>
[[nodiscard]] auto RunInNetwork(const Grant& grant, F&& fn) -> Result<std::invoke_result_t<F>> {
  using R = std::invoke_result_t<F>;
  if constexpr (std::is_void_v<R>) {
    return RunInNetworkImpl(grant, std::forward<F>(fn));
  } else {
    std::optional<R> out;
    auto r = RunInNetworkImpl(grant, [&] { out.emplace(fn()); });
    if (!r) return std::unexpected(std::move(r.error()));
    return std::move(*out);
  }
}

}  // namespace nsbroker
