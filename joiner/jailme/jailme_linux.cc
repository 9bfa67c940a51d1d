// jailme's Linux hardening: prctl(2), capget(2)/capset(2) (no libcap in a setuid binary),
// getauxval(3) and nsfs.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "jailme_platform.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {
namespace {

// The init user namespace's nsfs inode, fixed by the kernel (include/linux/proc_ns.h).
constexpr ino_t kInitUserNamespaceInode = 0xEFFFFFFDU;

using CapData = __user_cap_data_struct[_LINUX_CAPABILITY_U32S_3];

std::uint64_t Mask(std::initializer_list<int> caps) {
  std::uint64_t mask = 0;
  for (int cap : caps) mask |= std::uint64_t{1} << cap;
  return mask;
}

Result<void> GetCaps(CapData& data) {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  if (syscall(SYS_capget, &header, data) != 0) return SysError(ErrorCode::kInternal, "capget");
  return {};
}

// Permitted = effective = `mask`, inheritable and ambient empty, then read back.
Result<void> SetCaps(std::uint64_t mask, const char* step) {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  CapData data = {};
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    data[i].permitted = data[i].effective = static_cast<std::uint32_t>(mask >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) != 0) {
    return SysError(ErrorCode::kInternal, std::string("capset for ") + step);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "clear the ambient capabilities");
  }
  CapData check = {};
  if (auto r = GetCaps(check); !r) return r;
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    auto want = static_cast<std::uint32_t>(mask >> (32 * i));
    if (check[i].permitted != want || check[i].effective != want || check[i].inheritable != 0) {
      return MakeError(ErrorCode::kInternal,
                       std::string("capabilities for ") + step + " are not what was set");
    }
  }
  return {};
}

}  // namespace

Result<void> CheckRealSetuidStart() {
  if (getauxval(AT_SECURE) == 0) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "not a setuid start (AT_SECURE is 0): jailme runs only as an ordinary user "
                     "on the host, not as root or inside a user namespace; root uses nsjoin");
  }
  UniqueFd ns(open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
  struct statfs fs{};
  struct stat st{};
  if (!ns.valid() || fstatfs(ns.get(), &fs) != 0 || fstat(ns.get(), &st) != 0) {
    return SysError(ErrorCode::kPermissionDenied,
                    "cannot tell its user namespace (/proc/self/ns/user)");
  }
  if (fs.f_type != NSFS_MAGIC || st.st_ino != kInitUserNamespaceInode) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "runs only in the host's initial user namespace, not in user:[" +
                         std::to_string(st.st_ino) + "]");
  }
  return {};
}

Result<void> LimitToEnterAndDrop() {
  // PR_CAPBSET_DROP needs CAP_SETPCAP: the bounding set goes first, while root is whole.
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return SysError(ErrorCode::kInternal, "clear the capability bounding set");
    }
  }
  return SetCaps(Mask({CAP_SYS_ADMIN, CAP_SYS_CHROOT, CAP_SETUID, CAP_SETGID}), "entering");
}

Result<void> LimitToDrop() { return SetCaps(Mask({CAP_SETUID, CAP_SETGID}), "the drop"); }

Result<void> ForbidTracing() {
  // prctl(2) PR_SET_DUMPABLE: a non-dumpable process cannot be ptraced or have its /proc
  // files opened by anyone lacking CAP_SYS_PTRACE, in particular not by processes of the
  // target once we are inside its pid namespace, nor by the caller while we hold root.
  // execve of the user's command resets it.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "prctl(PR_SET_DUMPABLE)");
  }
  return {};
}

Result<void> ForbidNewPrivileges() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  return {};
}

Result<void> CheckNoPrivilegeLeft() {
  // capget(2) directly: nothing permitted, nothing effective.
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return SysError(ErrorCode::kInternal, "capget");
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0) {
      return MakeError(ErrorCode::kInternal, "capabilities left after the drop");
    }
  }
  return {};
}

}  // namespace nsbroker
