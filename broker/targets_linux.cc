// Linux side of the targets seam: namespace descriptors from /proc, nsfs files and pidfds.
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "targets.h"
#include "trusted_file.h"

// Linux 6.11 pidfs ioctls (uapi linux/pidfd.h); Debian 12's headers predate them.
#ifndef PIDFS_IOCTL_MAGIC
#define PIDFS_IOCTL_MAGIC 0xFF
#endif
// NS_GET_ID (Linux 6.18, uapi linux/nsfs.h): the namespace's unique, never reused 64-bit id.
#ifndef NS_GET_ID
#define NS_GET_ID _IOR(NSIO, 13, __u64)
#endif
#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace nsbroker {
namespace {

constexpr KindSet kProcessKinds =
    KindBit(NsKind::kCgroup) | KindBit(NsKind::kIpc) | KindBit(NsKind::kMnt) |
    KindBit(NsKind::kNet) | KindBit(NsKind::kPid) | KindBit(NsKind::kTime) |
    KindBit(NsKind::kUser) | KindBit(NsKind::kUts) | KindBit(NsKind::kRoot) | KindBit(NsKind::kCwd);

// PIDFD_GET_<KIND>_NAMESPACE: the task's active namespaces, as /proc/PID/ns/<kind> shows.
unsigned long PidfdNsIoctl(NsKind kind) {
  switch (kind) {
    case NsKind::kCgroup:
      return _IO(PIDFS_IOCTL_MAGIC, 1);
    case NsKind::kIpc:
      return _IO(PIDFS_IOCTL_MAGIC, 2);
    case NsKind::kMnt:
      return _IO(PIDFS_IOCTL_MAGIC, 3);
    case NsKind::kNet:
      return _IO(PIDFS_IOCTL_MAGIC, 4);
    case NsKind::kPid:
      return _IO(PIDFS_IOCTL_MAGIC, 5);
    case NsKind::kTime:
      return _IO(PIDFS_IOCTL_MAGIC, 7);
    case NsKind::kUser:
      return _IO(PIDFS_IOCTL_MAGIC, 9);
    case NsKind::kUts:
      return _IO(PIDFS_IOCTL_MAGIC, 10);
    default:
      return 0;
  }
}

// The namespace's unique id; older kernels answer ENOTTY and the grant carries 0 (inode alone).
std::uint64_t NamespaceId(int fd) {
  std::uint64_t id = 0;
  return ioctl(fd, NS_GET_ID, &id) == 0 ? id : 0;
}

// Fills inode/device/ns_id and checks that the descriptor is what `kind` promises: an nsfs
// file of that namespace type, or a directory for ROOT/CWD. For descriptors opened by path
// (self, path, netns, /proc/PID/root|cwd), where the path may name anything.
Result<EntryFd> Describe(NsKind kind, UniqueFd fd, const std::string& what) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + what);
  EntryFd entry{.kind = kind, .inode = st.st_ino, .device = st.st_dev};
  if (IsNamespaceKind(kind)) {
    struct statfs fs;
    if (fstatfs(fd.get(), &fs) != 0) return SysError(ErrorCode::kInternal, "fstatfs " + what);
    if (fs.f_type != NSFS_MAGIC) {
      return MakeError(ErrorCode::kInvalidRequest, what + " is not a namespace file");
    }
    int type = ioctl(fd.get(), NS_GET_NSTYPE);
    if (type < 0) return SysError(ErrorCode::kInternal, "NS_GET_NSTYPE " + what);
    if (type != KindCloneFlag(kind)) {
      auto actual = KindFromNsType(type);
      return MakeError(ErrorCode::kInvalidRequest,
                       what + " is a " + std::string(actual ? KindName(*actual) : "unknown") +
                           " namespace, not " + std::string(KindName(kind)));
    }
    entry.ns_id = NamespaceId(fd.get());
  } else if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidRequest, what + " is not a directory");
  }
  entry.fd = std::move(fd);
  return entry;
}

// Fills inode/device/ns_id of a descriptor from PIDFD_GET_<KIND>_NAMESPACE. The kernel's
// contract makes it an nsfs file of exactly that kind (the ioctl opens the task's nsproxy
// member for that type), so Describe's fstatfs and NS_GET_NSTYPE could never fail here: they
// were 16 of a grant's 62 system calls (docs/BENCHMARKS.md). One fstat, one NS_GET_ID.
// `what` builds the descriptor's name for a message, only when one is needed.
template <typename What>
Result<EntryFd> DescribeFetched(NsKind kind, UniqueFd fd, const What& what) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + what());
  EntryFd entry{.kind = kind, .inode = st.st_ino, .device = st.st_dev};
  entry.ns_id = NamespaceId(fd.get());
  entry.fd = std::move(fd);
  return entry;
}

Result<EntryFd> OpenFile(NsKind kind, const std::string& path) {
  int flags = IsNamespaceKind(kind) ? O_RDONLY : O_PATH | O_DIRECTORY;
  UniqueFd fd(open(path.c_str(), flags | O_CLOEXEC));
  if (!fd.valid()) return SysError("open " + path);
  return Describe(kind, std::move(fd), path);
}

Result<std::vector<EntryFd>> DupHeld(const std::vector<EntryFd>& held, KindSet kinds) {
  std::vector<EntryFd> out;
  for (const EntryFd& h : held) {
    if (!KindSetHas(kinds, h.kind)) continue;
    UniqueFd fd(fcntl(h.fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) return SysError("dup " + std::string(KindName(h.kind)) + " descriptor");
    out.push_back({h.kind, std::move(fd), h.inode, h.device, h.ns_id});
  }
  return out;
}

GrantSetPtr MakeSet(std::vector<EntryFd> entries) {
  auto set = std::make_shared<GrantSet>();
  for (const EntryFd& e : entries) set->kinds |= KindBit(e.kind);
  set->entries = std::move(entries);
  set->fetched = std::chrono::steady_clock::now();
  return set;
}

// A pidfd polls readable once its process has exited (even before it is reaped). poll() with
// a zero timeout still fails with EINTR when a signal arrives (a SIGHUP reload, under load):
// that says nothing about the process, so ask again rather than report a live target dead.
bool ProcessExited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n != 0;
}

// self, netns and path targets: every descriptor is opened once and held.
class HeldTarget : public TargetHandle {
 public:
  explicit HeldTarget(std::vector<EntryFd> held) : held_(MakeSet(std::move(held))) {}
  Result<std::vector<EntryFd>> Open(KindSet kinds) const override {
    return DupHeld(held_->entries, kinds);
  }
  GrantSetPtr held() const override { return held_; }
  int watch_fd() const override { return -1; }
  std::string GoneReason() const override { return {}; }

 private:
  GrantSetPtr held_;
};

// pid and pid_file targets: pinned by a pidfd, so a recycled pid is never served.
class ProcessTarget : public TargetHandle {
 public:
  ProcessTarget(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}

  // Opens and keeps every kind in `kinds` (hold mode: before a privilege drop).
  Result<void> Hold(KindSet kinds) {
    auto fds = Fetch(kinds);
    if (!fds) return std::unexpected(std::move(fds.error()));
    held_ = MakeSet(std::move(*fds));
    holding_ = true;
    return {};
  }

  Result<std::vector<EntryFd>> Open(KindSet kinds) const override {
    if (holding_) {
      if (!Alive()) return Gone();
      return DupHeld(held_->entries, kinds);
    }
    return Fetch(kinds);
  }
  // In hold mode the held set is sent as it is; the target's exit is the pidfd event's to
  // report (the catalog marks it unavailable), not a poll per grant.
  GrantSetPtr held() const override { return holding_ ? held_ : nullptr; }
  int watch_fd() const override { return pidfd_.get(); }
  std::string GoneReason() const override { return "process " + std::to_string(pid_) + " exited"; }

 private:
  std::unexpected<Error> Gone() const { return MakeError(ErrorCode::kUnavailable, GoneReason()); }

  bool Alive() const { return !ProcessExited(pidfd_.get()); }

  // One liveness check per grant, after every descriptor is open: the namespaces come through
  // the pidfd (this very process, whatever its pid now names), but ROOT and CWD only exist
  // under /proc/PID, and a process still alive after they were opened proves /proc/PID was not
  // a recycled pid. Checking before or between the opens would prove nothing more.
  Result<std::vector<EntryFd>> Fetch(KindSet kinds) const {
    std::vector<EntryFd> out;
    out.reserve(static_cast<std::size_t>(KindSetSize(kinds)));
    for (NsKind kind : KindSetList(kinds)) {
      Result<EntryFd> entry;
      if (IsNamespaceKind(kind)) {
        UniqueFd fd(ioctl(pidfd_.get(), PidfdNsIoctl(kind), 0));
        if (!fd.valid()) {
          if (errno == ESRCH || !Alive()) return Gone();
          return SysError("pidfd namespace ioctl for " + What(kind));
        }
        entry = DescribeFetched(kind, std::move(fd), [&] { return What(kind); });
      } else {
        entry = OpenFile(kind, What(kind));
      }
      if (!entry) {
        if (!Alive() || entry.error().sys_errno == ENOENT) return Gone();
        return std::unexpected(std::move(entry.error()));
      }
      out.push_back(std::move(*entry));
    }
    if (!Alive()) return Gone();
    return out;
  }

  // The /proc path an entry stands for, for messages.
  std::string What(NsKind kind) const {
    return "/proc/" + std::to_string(pid_) + "/" + (IsNamespaceKind(kind) ? "ns/" : "") +
           std::string(KindProcFile(kind));
  }

  pid_t pid_;
  UniqueFd pidfd_;
  bool holding_ = false;
  GrantSetPtr held_;
};

// The pid file must be root's all the way down (trusted_file.h): a user who can write it could
// point the target at any process, a container it is denied included. Opened O_NONBLOCK, so
// a FIFO there cannot stall the loop, and read with a bound.
Result<pid_t> ReadPidFile(const std::string& path) {
  auto fd = OpenTrusted(path, O_RDONLY);
  if (!fd) return std::unexpected(std::move(fd.error()));
  char buf[32];
  ssize_t n = read(fd->get(), buf, sizeof buf - 1);
  if (n < 0) return SysError("read " + path);
  std::string_view text(buf, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (ec != std::errc() || end != text.data() + text.size() || pid <= 0) {
    return MakeError(ErrorCode::kInvalidRequest, path + " does not hold a pid");
  }
  return pid;
}

Result<TargetHandlePtr> OpenProcess(pid_t pid, KindSet kinds, bool hold) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    if (errno == ESRCH)
      return MakeError(ErrorCode::kUnavailable, "no process " + std::to_string(pid));
    return SysError("pidfd_open " + std::to_string(pid));
  }
  auto target = std::make_unique<ProcessTarget>(pid, std::move(pidfd));
  if (ProcessExited(target->watch_fd())) {
    return MakeError(ErrorCode::kUnavailable, target->GoneReason());
  }
  if (hold) {
    auto held = target->Hold(kinds);
    if (!held) return std::unexpected(std::move(held.error()));
  }
  return target;
}

}  // namespace

bool SourceSupported(SourceType source) { return source != SourceType::kJail; }

KindSet SourceKinds(const TargetSpec& spec) {
  switch (spec.source) {
    case SourceType::kSelf:
    case SourceType::kPid:
    case SourceType::kPidFile:
      return kProcessKinds;
    case SourceType::kNetns:
      return KindBit(NsKind::kNet);
    case SourceType::kPaths: {
      KindSet set = 0;
      for (const auto& [kind, file] : spec.paths) set |= KindBit(kind);
      return set;
    }
    case SourceType::kJail:
      return 0;
  }
  return 0;
}

Result<TargetHandlePtr> OpenTarget(const TargetSpec& spec, bool hold) {
  switch (spec.source) {
    case SourceType::kPid:
      return OpenProcess(spec.pid, spec.expose, hold);
    case SourceType::kPidFile: {
      auto pid = ReadPidFile(spec.file);
      if (!pid) return std::unexpected(std::move(pid.error()));
      return OpenProcess(*pid, spec.expose, hold);
    }
    case SourceType::kSelf:
    case SourceType::kNetns:
    case SourceType::kPaths: {
      std::vector<EntryFd> held;
      for (NsKind kind : KindSetList(spec.expose)) {
        std::string path;
        if (spec.source == SourceType::kSelf) {
          path = std::string(IsNamespaceKind(kind) ? "/proc/self/ns/" : "/proc/self/") +
                 std::string(KindProcFile(kind));
        } else if (spec.source == SourceType::kNetns) {
          path = spec.file;
        } else {
          for (const auto& [k, file] : spec.paths) {
            if (k == kind) path = file;
          }
        }
        auto entry = OpenFile(kind, path);
        if (!entry) return std::unexpected(std::move(entry.error()));
        held.push_back(std::move(*entry));
      }
      return std::make_unique<HeldTarget>(std::move(held));
    }
    case SourceType::kJail:
      break;
  }
  return MakeError(ErrorCode::kInvalidRequest, "jail targets need FreeBSD");
}

}  // namespace nsbroker
