// Linux side of the seam: descriptors are nsfs files entered with setns(2), ROOT/CWD are
// O_PATH directories entered with fchdir(2)/chroot(2).
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "enter.h"

namespace nsbroker::platform {
namespace {

// A user namespace chain is at most 32 deep (kernel MAX_USER_NS_LEVEL); a longer walk
// means something is wrong.
constexpr int kMaxUserNsDepth = 33;

std::string Name(NsKind kind) { return std::string(KindName(kind)); }

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

// The calling thread's namespace of `kind`: setns(2) acts on the thread, so compare with
// /proc/thread-self rather than the thread group leader's /proc/self.
Result<struct stat> StatOwnNamespace(NsKind kind) {
  std::string path = "/proc/thread-self/ns/" + Name(kind);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return SysError("stat " + path);
  return st;
}

Result<struct stat> StatFd(BorrowedFd fd, NsKind kind) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + Name(kind));
  return st;
}

// Threads of this process: the kernel refuses user, mnt and time namespaces to a process
// that shares its credentials or fs state with other threads (setns(2) EINVAL).
std::optional<std::size_t> CountThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return std::nullopt;
  std::size_t n = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// CAP_SYS_ADMIN in the caller's own user namespace (effective set). setns(2) asks for it in
// the caller's user namespace as well as in the one owning the target namespace.
bool HasSysAdmin() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

// Whether the user namespace `userns` is the caller's or a descendant of it: then a caller
// with CAP_SYS_ADMIN in its own user namespace holds it there too (user_namespaces(7)).
// NS_GET_PARENT fails with EPERM once the walk leaves the caller's user namespace.
bool IsOwnOrDescendant(UniqueFd userns, const struct stat& own) {
  for (int depth = 0; depth < kMaxUserNsDepth && userns.valid(); ++depth) {
    struct stat st;
    if (fstat(userns.get(), &st) != 0) return false;
    if (SameFile(st, own)) return true;
    userns = UniqueFd(ioctl(userns.get(), NS_GET_PARENT));
  }
  return false;
}

// Root (CAP_SYS_ADMIN here) can enter every namespace owned by its own user namespace or a
// descendant, and would lose that power over the host-owned ones once inside the target's
// user namespace: it enters the user namespace last. A caller without CAP_SYS_ADMIN gets
// it only by entering the user namespace first (a rootless target it owns).
Result<bool> UserNamespaceFirst(const std::vector<const GrantEntry*>& others) {
  if (!HasSysAdmin()) return true;
  // Root that cannot see its own user namespace (no /proc for us) is most likely in the
  // initial one, which owns everything: the user namespace goes last.
  auto own = StatOwnNamespace(NsKind::kUser);
  if (!own) return false;
  for (const GrantEntry* entry : others) {
    UniqueFd owner(ioctl(entry->fd.get(), NS_GET_USERNS));
    // EPERM: the owner lies outside our user namespace, so we hold no capability there.
    if (!owner.valid()) {
      if (errno == EPERM) return true;
      return SysError(ErrorCode::kInternal, "NS_GET_USERNS of " + Name(entry->kind));
    }
    if (!IsOwnOrDescendant(std::move(owner), *own)) return true;
  }
  return false;
}

// Without CAP_SYS_ADMIN, setns into a user namespace works only for its owner (who holds
// every capability in a child user namespace): say so instead of a bare EPERM.
Result<void> CheckUserNamespaceOwner(const GrantEntry& user) {
  if (HasSysAdmin()) return {};
  uid_t owner = 0;
  if (ioctl(user.fd.get(), NS_GET_OWNER_UID, &owner) != 0) {
    return SysError(ErrorCode::kInternal, "NS_GET_OWNER_UID");
  }
  if (owner != geteuid()) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "its user namespace belongs to uid " + std::to_string(owner) + ", so uid " +
                         std::to_string(geteuid()) + " (without CAP_SYS_ADMIN) cannot enter it");
  }
  return {};
}

bool NeedsSingleThread(NsKind kind) {
  return kind == NsKind::kMnt || kind == NsKind::kUser || kind == NsKind::kTime;
}

// The uid owning the user namespace that owns `entry`'s namespace, if the kernel says.
std::optional<uid_t> OwnerUid(const GrantEntry& entry) {
  UniqueFd owner(ioctl(entry.fd.get(), NS_GET_USERNS));
  uid_t uid = 0;
  if (!owner.valid() || ioctl(owner.get(), NS_GET_OWNER_UID, &uid) != 0) return std::nullopt;
  return uid;
}

Result<void> SetNs(const GrantEntry& entry, bool user_ns_planned) {
  if (setns(entry.fd.get(), KindCloneFlag(entry.kind)) == 0) return {};
  int err = errno;
  std::string message = "setns " + Name(entry.kind) + ": " + std::strerror(err);
  if (err == EPERM && !HasSysAdmin()) {
    // A descriptor is not a capability: say whose capability the kernel wanted.
    std::optional<uid_t> owner = OwnerUid(entry);
    if (owner && *owner == geteuid() && !user_ns_planned) {
      message += " (enter the target's user namespace too: -U)";
    } else if (owner) {
      message +=
          " (needs CAP_SYS_ADMIN over a user namespace of uid " + std::to_string(*owner) + ")";
    }
  }
  if (err == EINVAL && NeedsSingleThread(entry.kind)) {
    message += " (a multi-threaded process cannot enter a " + Name(entry.kind) + " namespace)";
  }
  ErrorCode code = err == EPERM ? ErrorCode::kPermissionDenied : CodeForErrno(err);
  return std::unexpected(Error{code, err, std::move(message)});
}

}  // namespace

Result<void> CheckEntry(const GrantEntry& entry) {
  std::string name = Name(entry.kind);
  if (entry.kind == NsKind::kJail) {
    return MakeError(ErrorCode::kInvalidRequest, "a jail entry cannot be entered on Linux");
  }
  if (!entry.fd.valid()) {
    return MakeError(ErrorCode::kInvalidRequest, "the '" + name + "' entry carries no descriptor");
  }
  auto st = StatFd(entry.fd, entry.kind);
  if (!st) return std::unexpected(std::move(st.error()));
  if (IsDirectoryKind(entry.kind)) {
    if (!S_ISDIR(st->st_mode)) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "the '" + name + "' descriptor is not a directory");
    }
    return {};
  }
  int nstype = ioctl(entry.fd.get(), NS_GET_NSTYPE);
  if (nstype < 0) {
    return SysError(ErrorCode::kInvalidRequest,
                    "the '" + name + "' descriptor is not a namespace (NS_GET_NSTYPE)");
  }
  if (nstype != KindCloneFlag(entry.kind)) {
    auto actual = KindFromNsType(nstype);
    return MakeError(ErrorCode::kInvalidRequest,
                     "the '" + name + "' descriptor is a '" +
                         (actual ? Name(*actual) : std::to_string(nstype)) + "' namespace");
  }
  if ((entry.inode != 0 && entry.inode != st->st_ino) ||
      (entry.device != 0 && entry.device != st->st_dev)) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "the '" + name + "' descriptor is not the namespace the grant names " +
                         "(inode " + std::to_string(entry.inode) + ")");
  }
  return {};
}

Result<Entered> EnterPlanned(const EnterPlan& plan) {
  // Everything is looked up before the first setns: once inside a mount namespace, /proc
  // may be the target's, where this process does not exist.
  std::vector<const GrantEntry*> todo;
  const GrantEntry* user = nullptr;
  for (const GrantEntry* entry : plan.namespaces) {
    auto theirs = StatFd(entry->fd, entry->kind);
    if (!theirs) return std::unexpected(std::move(theirs.error()));
    // Already there: nothing to do, and for a user namespace setns would fail (EINVAL).
    // No /proc entry for us (an earlier Enter took us into a target's mount namespace,
    // whose /proc does not show us): then the kernel has the last word.
    auto own = StatOwnNamespace(entry->kind);
    if (own && SameFile(*own, *theirs)) continue;
    if (entry->kind == NsKind::kUser) {
      user = entry;
    } else {
      todo.push_back(entry);
    }
  }
  const GrantEntry* single = user;
  for (const GrantEntry* entry : todo) {
    if (single == nullptr && NeedsSingleThread(entry->kind)) single = entry;
  }
  if (single != nullptr) {
    // Without /proc (see above) setns itself refuses a multi-threaded caller (EINVAL).
    auto threads = CountThreads();
    if (threads && *threads > 1) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "entering a " + Name(single->kind) +
                           " namespace needs a single-threaded process, this one has " +
                           std::to_string(*threads) + " threads (use Spawn)");
    }
  }
  if (user != nullptr) {
    auto first = UserNamespaceFirst(todo);
    if (!first) return std::unexpected(std::move(first.error()));
    if (*first) {
      if (auto owner = CheckUserNamespaceOwner(*user); !owner) {
        return std::unexpected(std::move(owner.error()));
      }
      todo.insert(todo.begin(), user);
    } else {
      todo.push_back(user);
    }
  }

  Entered entered;
  for (const GrantEntry* entry : todo) {
    if (auto r = SetNs(*entry, user != nullptr); !r) return std::unexpected(std::move(r.error()));
    entered.kinds.push_back(entry->kind);
    if (entry->kind == NsKind::kPid) entered.pid = true;
    if (entry->kind == NsKind::kUser) entered.user = true;
  }
  // nsenter -r/-w: the descriptors were opened on the target's own root and cwd, so this
  // works whether or not its mount namespace was entered.
  if (plan.root != nullptr) {
    if (fchdir(plan.root->fd.get()) != 0) return SysError("fchdir to the target's root");
    if (chroot(".") != 0) return SysError("chroot to the target's root");
  }
  if (plan.cwd != nullptr) {
    if (fchdir(plan.cwd->fd.get()) != 0) return SysError("fchdir to the target's cwd");
  } else if (plan.root != nullptr) {
    if (chdir("/") != 0) return SysError("chdir / in the target's root");
  }
  return entered;
}

Result<Entered> EnterJail(std::string_view, const GrantEntry&) {
  return MakeError(ErrorCode::kInvalidRequest, "jail targets need FreeBSD");
}

Result<void> EnterNetworkOnThisThread(const GrantEntry& net) {
  auto own = StatOwnNamespace(NsKind::kNet);
  if (!own) return std::unexpected(std::move(own.error()));
  auto theirs = StatFd(net.fd, NsKind::kNet);
  if (!theirs) return std::unexpected(std::move(theirs.error()));
  if (SameFile(*own, *theirs)) return {};
  return SetNs(net, false);
}

}  // namespace nsbroker::platform
