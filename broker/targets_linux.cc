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

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>

#include "cgroup_linux.h"
#include "oci_state.h"
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
    KindBit(NsKind::kUser) | KindBit(NsKind::kUts) | KindBit(NsKind::kRoot) |
    KindBit(NsKind::kCwd) | KindBit(NsKind::kCgroupDir);

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

// pid and pid_file targets: pinned by a pidfd, so a recycled pid is never served.
class ProcessTarget : public TargetHandle {
 public:
  // `origin`: what named the process ("container web1", "cgroup /x"); empty for pid, pid_file.
  ProcessTarget(pid_t pid, UniqueFd pidfd, std::string origin = {})
      : pid_(pid), pidfd_(std::move(pidfd)), origin_(std::move(origin)) {}

  Result<std::vector<EntryFd>> Open(KindSet kinds) const override { return Fetch(kinds); }
  int watch_fd() const override { return pidfd_.get(); }
  std::string GoneReason() const override { return "process " + std::to_string(pid_) + " exited"; }
  pid_t pid() const override { return pid_; }
  std::string Resolved() const override {
    return origin_.empty() ? "" : "pid " + std::to_string(pid_) + " of " + origin_;
  }

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
      } else if (kind == NsKind::kCgroupDir) {
        entry = OpenCgroupDirectory("/proc/" + std::to_string(pid_));
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
  std::string origin_;
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

Result<TargetHandlePtr> OpenProcess(pid_t pid) {
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
  return target;
}

// Reads a small /proc file whole (procfs: never blocks).
Result<std::string> ReadProc(const std::string& path, std::size_t limit) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return SysError(ErrorCode::kUnavailable, "open " + path);
  std::string text;
  char buf[4096];
  while (text.size() < limit) {
    ssize_t n = read(fd.get(), buf, std::min(sizeof buf, limit - text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError(ErrorCode::kUnavailable, "read " + path);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

// /proc/PID/stat's state (field 3) and start time (field 22, clock ticks since boot).
struct ProcStat {
  char state = '?';
  unsigned long long start = 0;
};
std::optional<ProcStat> ReadStat(pid_t pid) {
  auto text = ReadProc("/proc/" + std::to_string(pid) + "/stat", 1024);
  if (!text) return std::nullopt;
  std::size_t paren = text->rfind(')');  // the command name may hold spaces and ')'
  if (paren == std::string::npos || paren + 2 >= text->size()) return std::nullopt;
  std::string_view rest = std::string_view(*text).substr(paren + 2);
  ProcStat stat{.state = rest[0]};
  for (int field = 3; field < 22; ++field) {
    std::size_t space = rest.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(space + 1);
  }
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), stat.start);
  if (ec != std::errc()) return std::nullopt;
  return stat;
}

// Pins `pid` with a pidfd and checks it is the process that was named: its start time is
// the same before and after the pidfd was opened (so the pidfd is that process), and not
// later than `named_at` (boot ticks when the runtime was asked or the group was read): a
// process started later took a pid freed meanwhile. Start times are whole ticks (USER_HZ), so
// one started in the very tick of the naming is taken, as it cannot be told apart; for a
// cgroup the membership check below still holds it to the group. With `cgroup`, it must
// still be in that group.
Result<TargetHandlePtr> OpenNamed(pid_t pid, unsigned long long named_at, std::string origin,
                                  const std::string* cgroup) {
  const std::string process = "process " + std::to_string(pid);
  auto before = ReadStat(pid);
  if (!before) return MakeError(ErrorCode::kUnavailable, "no " + process + " (" + origin + ")");
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    if (errno == ESRCH) return MakeError(ErrorCode::kUnavailable, process + " exited");
    return SysError("pidfd_open " + std::to_string(pid));
  }
  auto after = ReadStat(pid);
  std::optional<std::string> groups;
  if (cgroup != nullptr) {
    auto text = ReadProc("/proc/" + std::to_string(pid) + "/cgroup", 65536);
    if (text) groups = std::move(*text);
  }
  auto target = std::make_unique<ProcessTarget>(pid, std::move(pidfd), origin);
  if (ProcessExited(target->watch_fd()))
    return MakeError(ErrorCode::kUnavailable, process + " exited");
  if (!after || after->start != before->start) {
    return MakeError(ErrorCode::kUnavailable, process + " changed while it was checked");
  }
  if (before->start > named_at) {
    return MakeError(ErrorCode::kUnavailable,
                     process + " started after " + origin + " named it (a pid reused)");
  }
  if (cgroup != nullptr) {
    // The unified hierarchy's line: "0::/PATH".
    std::string line = "0::" + *cgroup + "\n";
    if (!groups || !(groups->starts_with(line) || groups->find("\n" + line) != std::string::npos)) {
      return MakeError(ErrorCode::kUnavailable, process + " left " + origin);
    }
  }
  return target;
}

// Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on
// hybrid hosts; the first cgroup2 mount of its root in /proc/self/mountinfo.
Result<std::string> Cgroup2Mount() {
  static std::optional<std::string> found;
  if (found) return *found;
  auto text = ReadProc("/proc/self/mountinfo", 4 << 20);
  if (!text) return std::unexpected(std::move(text.error()));
  std::string_view rest = *text;
  while (!rest.empty()) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    std::size_t dash = line.find(" - ");
    if (dash == std::string_view::npos || !line.substr(dash + 3).starts_with("cgroup2 ")) continue;
    std::vector<std::string_view> fields;
    for (std::string_view f = line.substr(0, dash); !f.empty();) {
      std::size_t sp = f.find(' ');
      fields.push_back(f.substr(0, sp));
      f = sp == std::string_view::npos ? std::string_view() : f.substr(sp + 1);
    }
    if (fields.size() < 5 || fields[3] != "/") continue;
    // Mount points escape space, tab, newline and backslash as \ooo.
    std::string point;
    for (std::size_t i = 0; i < fields[4].size(); ++i) {
      std::string_view f = fields[4];
      if (f[i] == '\\' && i + 3 < f.size()) {
        point.push_back(
            static_cast<char>((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0')));
        i += 3;
      } else {
        point.push_back(f[i]);
      }
    }
    found = point;
    return point;
  }
  return MakeError(ErrorCode::kUnavailable, "no cgroup2 mount in /proc/self/mountinfo");
}

// Most pids of a group looked at: its oldest is found among the first this many.
constexpr std::size_t kMaxGroupPids = 4096;

// A cgroup target: the oldest live process of the group. cgroup.procs is read under the
// rules of pid files (trusted_file.h): a group a user owns (delegated) is refused, since its
// owner decides which of its processes is oldest there.
Result<TargetHandlePtr> OpenCgroup(const TargetSpec& spec) {
  auto mount = Cgroup2Mount();
  if (!mount) return std::unexpected(std::move(mount.error()));
  const std::string origin = "cgroup " + spec.file;
  unsigned long long named_at = BootTicksNow();
  std::string dir = *mount + (spec.file == "/" ? "" : spec.file);
  auto fd = OpenTrusted(dir + "/cgroup.procs", O_RDONLY);
  if (!fd) {
    if (fd.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnavailable, origin + " does not exist (under " + *mount + ")");
    }
    return std::unexpected(std::move(fd.error()));
  }
  std::string text;
  char buf[8192];
  while (text.size() < kMaxGroupPids * 8) {
    ssize_t n = read(fd->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError(ErrorCode::kUnavailable, "read " + dir + "/cgroup.procs");
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  pid_t oldest = 0;
  ProcStat oldest_stat;
  std::size_t seen = 0;
  for (std::string_view rest = text; !rest.empty() && seen < kMaxGroupPids; ++seen) {
    std::size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) break;  // cut short by our bound
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + nl, pid);
    rest.remove_prefix(nl + 1);
    if (ec != std::errc() || pid <= 0) continue;
    auto stat = ReadStat(pid);
    if (!stat || stat->state == 'Z' || stat->state == 'X') continue;
    if (oldest == 0 || stat->start < oldest_stat.start ||
        (stat->start == oldest_stat.start && pid < oldest)) {
      oldest = pid;
      oldest_stat = *stat;
    }
  }
  if (oldest == 0) return MakeError(ErrorCode::kUnavailable, origin + " has no process");
  return OpenNamed(oldest, named_at, origin, &spec.file);
}

}  // namespace

Result<TargetHandlePtr> OpenContainer(const TargetSpec& spec, const OciState& state) {
  return OpenNamed(state.pid, state.asked_at_ticks, "container " + spec.oci.id, nullptr);
}

Result<TargetHandlePtr> ResolveNow(const TargetSpec& spec) {
  auto state = QueryStateNow(spec.oci);
  if (!state) return std::unexpected(std::move(state.error()));
  return OpenContainer(spec, *state);
}

Result<EntryFd> VerifyEntry(NsKind kind, UniqueFd fd, const std::string& what) {
  return Describe(kind, std::move(fd), what);
}

Result<pid_t> VerifyPidfd(BorrowedFd fd) {
  // A pidfd's fdinfo names its process ("Pid:\t1234"); no other descriptor's has that line.
  auto text = ReadProc("/proc/self/fdinfo/" + std::to_string(fd.get()), 4096);
  if (!text) return std::unexpected(std::move(text.error()));
  std::size_t at = text->starts_with("Pid:") ? 0 : text->find("\nPid:");
  if (at == std::string::npos) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "descriptor " + std::to_string(fd.get()) + " is not a pidfd");
  }
  std::string_view rest = std::string_view(*text).substr(text->find(':', at) + 1);
  while (!rest.empty() && (rest.front() == '\t' || rest.front() == ' ')) rest.remove_prefix(1);
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
  if (ec != std::errc() || pid <= 0) {
    // -1: the process was reaped; 0: in no pid namespace of ours.
    return MakeError(ErrorCode::kUnavailable,
                     "the process of pidfd " + std::to_string(fd.get()) + " is gone");
  }
  return pid;
}

Result<TargetHandlePtr> AdoptJail(std::int32_t, std::string, UniqueFd) {
  return MakeError(ErrorCode::kInvalidRequest, "jail targets need FreeBSD");
}

bool SourceSupported(SourceType source) { return source != SourceType::kJail; }

KindSet SourceKinds(const TargetSpec& spec) {
  switch (spec.source) {
    case SourceType::kSelf:
    case SourceType::kPid:
    case SourceType::kPidFile:
    case SourceType::kOci:
    case SourceType::kCgroup:
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

Result<TargetHandlePtr> OpenTarget(const TargetSpec& spec) {
  switch (spec.source) {
    case SourceType::kPid:
      return OpenProcess(spec.pid);
    case SourceType::kPidFile: {
      auto pid = ReadPidFile(spec.file);
      if (!pid) return std::unexpected(std::move(pid.error()));
      return OpenProcess(*pid);
    }
    case SourceType::kCgroup:
      return OpenCgroup(spec);
    case SourceType::kOci:
      return ResolveNow(spec);  // blocks: the loop uses StartResolve instead
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
        auto entry =
            kind == NsKind::kCgroupDir ? OpenCgroupDirectory("/proc/self") : OpenFile(kind, path);
        if (!entry) return std::unexpected(std::move(entry.error()));
        held.push_back(std::move(*entry));
      }
      return HoldEntries(std::move(held));
    }
    case SourceType::kJail:
      break;
  }
  return MakeError(ErrorCode::kInvalidRequest, "jail targets need FreeBSD");
}

}  // namespace nsbroker
