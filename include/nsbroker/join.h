// libnsjoin's entering: setns into a Grant in the right order, in this process, in a
// spawned command, or on a helper thread for the network namespace only.
//
//   auto grant = client->Join("web1");
//   if (auto r = nsbroker::Enter(*grant); !r) return Fail(r.error());
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

// Enters the grant in the calling process. The order follows the kernel's rules (user
// namespace first when the caller needs the capabilities it grants, else last; decided
// from NS_GET_USERNS/NS_GET_OWNER_UID), each setns gets the expected CLONE_NEW* type, a
// namespace the caller is already in is skipped. mnt/user/time from a multi-threaded
// process is a kInvalidRequest error, not a crash. A pid namespace affects only children.
[[nodiscard]] Result<void> Enter(const Grant& grant, const EnterOptions& options = {});

struct SpawnOptions {
  EnterOptions enter;
  bool fork_after_pid = true;     // false = nsenter -F
  std::optional<uid_t> uid;       // nsenter -S (after entering; needs root)
  std::optional<gid_t> gid;       // nsenter -G
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // -1 = inherit
};

// Forks; the child enters, forks again after entering a pid namespace (so the command is
// really inside it), and execs argv[0] through PATH. Returns the pid to wait for. Failures
// before exec come back as an Error (exec's ENOENT as kNotFound, EACCES as
// kPermissionDenied, with sys_errno set); a pid namespace whose init has died is reported
// as such, not as ENOMEM.
[[nodiscard]] Result<pid_t> Spawn(const Grant& grant, const std::vector<std::string>& argv,
                                  const SpawnOptions& options = {});

// Runs fn on a new thread that has entered only the grant's network namespace and returns
// its result; the calling threads never change namespace.
[[nodiscard]] Result<void> RunInNetworkImpl(const Grant& grant, const std::function<void()>& fn);

template <class F>
[[nodiscard]] auto RunInNetwork(const Grant& grant, F&& fn)
    -> Result<std::invoke_result_t<F>> {
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
