#include "jailme_privs.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "jailme_platform.h"

namespace nsbroker {
namespace {

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "jailme: fatal: %s\n", what.c_str());
  _exit(125);
}

}  // namespace

Caller RecordCaller() {
  Caller caller{.uid = getuid(), .gid = getgid(), .groups = {}};
  caller.groups.resize(static_cast<std::size_t>(sysconf(_SC_NGROUPS_MAX)));
  int n = getgroups(static_cast<int>(caller.groups.size()), caller.groups.data());
  if (n < 0) Fatal(std::string("getgroups: ") + std::strerror(errno));
  caller.groups.resize(static_cast<std::size_t>(n));
  return caller;
}

Result<void> ActAsCaller(const Caller& caller) {
  // Group first: changing the gid needs CAP_SETGID, which goes away with euid 0.
  // setresgid(2)/setresuid(2): -1 leaves an id unchanged, so the saved set-user-ID stays 0.
  // capabilities(7), "Effect of user ID changes on capabilities": euid 0 -> nonzero clears
  // the effective set but keeps the permitted one while some id is still 0, which is what
  // lets RegainRoot restore it.
  if (setresgid(static_cast<gid_t>(-1), caller.gid, static_cast<gid_t>(-1)) != 0) {
    return SysError(ErrorCode::kInternal, "setresgid to the caller's gid");
  }
  if (setresuid(static_cast<uid_t>(-1), caller.uid, static_cast<uid_t>(-1)) != 0) {
    return SysError(ErrorCode::kInternal, "setresuid to the caller's uid");
  }
  return {};
}

Result<void> RegainRoot() {
  // Allowed because the saved set-user-ID is 0 (setresuid(2)); capabilities(7): euid
  // nonzero -> 0 copies the permitted set into the effective set.
  if (setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) != 0) {
    return SysError(ErrorCode::kInternal, "setresuid to regain root");
  }
  return {};
}

void DropForGood(const Caller& caller) {
  if (geteuid() != 0) Fatal("DropForGood called without euid 0");
  if (auto dropped = DropPrivilegesTo(caller); !dropped) Fatal(dropped.error().message);
  if (caller.uid == 0) return;  // root called us: root is what it gets back
  // Anything the platform grants beside the uid (Linux: capabilities) must be gone too:
  // SECBIT_KEEP_CAPS or SECBIT_NO_SETUID_FIXUP would have kept them through the uid change.
  if (auto left = CheckNoPrivilegeLeft(); !left) Fatal(left.error().message);
}

}  // namespace nsbroker
