#include "privilege_drop.h"

#include <grp.h>
#include <unistd.h>

#include <algorithm>
#include <string>

namespace nsbroker {
namespace {

// setgroups(2) takes its count as size_t on Linux and as int on FreeBSD: convert to whichever
// this libc declares (the list is at most NGROUPS_MAX long, which fits both).
template <class Count>
int SetGroupsAs(int (*set)(Count, const gid_t*), std::size_t count, const gid_t* groups) {
  return set(static_cast<Count>(count), groups);
}
int SetGroups(std::size_t count, const gid_t* groups) {
  return SetGroupsAs(::setgroups, count, groups);
}

std::string Ids(unsigned r, unsigned e, unsigned s) {
  return std::to_string(r) + "/" + std::to_string(e) + "/" + std::to_string(s);
}

}  // namespace

Result<void> DropPrivilegesTo(const Credentials& to) {
  const std::string uid = std::to_string(to.uid), gid = std::to_string(to.gid);
  // Groups and gids first: setgroups(2) and setresgid(2) need CAP_SETGID, which the uid
  // change takes away. All three ids of each kind change, so neither a saved nor a real id
  // keeps a way back (setresuid(2)); capabilities(7): once every uid is nonzero the kernel
  // clears the permitted, effective and ambient sets.
  if (SetGroups(to.groups.size(), to.groups.data()) != 0) {
    return SysError(ErrorCode::kInternal, "setgroups");
  }
  if (::setresgid(to.gid, to.gid, to.gid) != 0) {
    return SysError(ErrorCode::kInternal, "setresgid " + gid);
  }
  if (::setresuid(to.uid, to.uid, to.uid) != 0) {
    return SysError(ErrorCode::kInternal, "setresuid " + uid);
  }

  // Verify rather than trust the return values: a kernel or LSM surprise must stop us.
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (::getresuid(&ru, &eu, &su) != 0) return SysError(ErrorCode::kInternal, "getresuid");
  if (::getresgid(&rg, &eg, &sg) != 0) return SysError(ErrorCode::kInternal, "getresgid");
  if (ru != to.uid || eu != to.uid || su != to.uid) {
    return MakeError(ErrorCode::kInternal,
                     "the drop did not take: uids are " + Ids(ru, eu, su) + ", expected " + uid);
  }
  if (rg != to.gid || eg != to.gid || sg != to.gid) {
    return MakeError(ErrorCode::kInternal,
                     "the drop did not take: gids are " + Ids(rg, eg, sg) + ", expected " + gid);
  }
  // One more slot than expected, so that an extra group shows as a different count.
  std::vector<gid_t> now(to.groups.size() + 1);
  int n = ::getgroups(static_cast<int>(now.size()), now.data());
  if (n < 0) return SysError(ErrorCode::kInternal, "getgroups");
  now.resize(static_cast<std::size_t>(n));
  std::vector<gid_t> want = to.groups;
  std::sort(now.begin(), now.end());
  std::sort(want.begin(), want.end());
  if (now != want) {
    return MakeError(ErrorCode::kInternal, "the drop did not take: " + std::to_string(n) +
                                               " supplementary groups are not the " +
                                               std::to_string(want.size()) + " expected");
  }
  if (to.uid == 0) return {};  // root asked to stay root (jailme run by root): nothing to regain
  if (::setuid(0) == 0 || ::seteuid(0) == 0) {
    return MakeError(ErrorCode::kInternal, "setuid(0) still succeeds after the drop to uid " + uid);
  }
  if (to.gid != 0 && (::setgid(0) == 0 || ::setegid(0) == 0)) {
    return MakeError(ErrorCode::kInternal, "setgid(0) still succeeds after the drop to gid " + gid);
  }
  return {};
}

}  // namespace nsbroker
