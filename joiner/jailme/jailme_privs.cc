#include "jailme_privs.h"

#include <grp.h>
#include <unistd.h>

#include <algorithm>
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

std::string Ids(unsigned r, unsigned e, unsigned s) {
  return std::to_string(r) + "/" + std::to_string(e) + "/" + std::to_string(s);
}

// setgroups(2) takes its count as size_t on Linux and as int on FreeBSD: convert to whichever
// this libc declares (the list is at most NGROUPS_MAX long, which fits both).
template <class Count>
int SetGroups(int (*set)(Count, const gid_t*), const std::vector<gid_t>& groups) {
  return set(static_cast<Count>(groups.size()), groups.data());
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
  // Order matters [openssh uidswap.c permanently_set_uid]: setgroups(2) and setresgid(2)
  // need CAP_SETGID, which the uid change below takes away. All three ids of each kind are
  // set, so neither a saved id nor a real id keeps a way back to root.
  if (geteuid() != 0) Fatal("DropForGood called without euid 0");
  if (SetGroups(setgroups, caller.groups) != 0) {
    Fatal(std::string("setgroups: ") + std::strerror(errno));
  }
  if (setresgid(caller.gid, caller.gid, caller.gid) != 0) {
    Fatal("setresgid " + std::to_string(caller.gid) + ": " + std::strerror(errno));
  }
  // capabilities(7): when every uid becomes nonzero the kernel clears the permitted,
  // effective and ambient sets (unless SECBIT_KEEP_CAPS/NO_SETUID_FIXUP, checked below).
  if (setresuid(caller.uid, caller.uid, caller.uid) != 0) {
    Fatal("setresuid " + std::to_string(caller.uid) + ": " + std::strerror(errno));
  }

  // Verify rather than trust: a kernel or LSM surprise must stop us, not run the command.
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) {
    Fatal(std::string("getresuid/getresgid: ") + std::strerror(errno));
  }
  if (ru != caller.uid || eu != caller.uid || su != caller.uid) {
    Fatal("uids are " + Ids(ru, eu, su) + ", expected " + std::to_string(caller.uid));
  }
  if (rg != caller.gid || eg != caller.gid || sg != caller.gid) {
    Fatal("gids are " + Ids(rg, eg, sg) + ", expected " + std::to_string(caller.gid));
  }
  std::vector<gid_t> now(caller.groups.size() + 1);
  int n = getgroups(static_cast<int>(now.size()), now.data());
  now.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  std::vector<gid_t> want = caller.groups;
  std::sort(now.begin(), now.end());
  std::sort(want.begin(), want.end());
  if (n < 0 || now != want) Fatal("supplementary groups differ from the caller's");
  if (caller.uid == 0) return;  // root called us: root is what it gets back
  if (setuid(0) != -1 || seteuid(0) != -1) Fatal("setuid(0) succeeded after the drop");
  if (caller.gid != 0 && (setgid(0) != -1 || setegid(0) != -1)) {
    Fatal("setgid(0) succeeded after the drop");
  }
  // Anything the platform grants beside the uid (Linux: capabilities) must be gone too.
  if (auto left = CheckNoPrivilegeLeft(); !left) Fatal(left.error().message);
}

}  // namespace nsbroker
