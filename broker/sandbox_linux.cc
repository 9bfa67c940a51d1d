#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "audit.h"
#include "sandbox.h"

namespace nsbroker {

#if defined(__SANITIZE_ADDRESS__)
const bool kSandboxSanitizerAllowance = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
const bool kSandboxSanitizerAllowance = true;
#else
const bool kSandboxSanitizerAllowance = false;
#endif
#else
const bool kSandboxSanitizerAllowance = false;
#endif

namespace {

// The list below was traced on x86_64, where some of its calls (poll, open) exist only
// there: another architecture needs its own trace (scripts/trace-syscalls), not a guess.
#if defined(__x86_64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#else
#error "sandbox_linux.cc: trace this architecture's syscalls and name its AUDIT_ARCH_*"
#endif
// The filter compares the low 32 bits of an argument (socket's domain, prctl's option: both
// int, so the kernel ignores the upper half too); they come first on a little-endian machine.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "seccomp argument offsets");

struct Syscall {
  long nr;
  const char* name;
};
#define NSB_SYSCALL(name) \
  Syscall { SYS_##name, #name }

// What the privsep server calls once the filter is on, found by tracing the real broker
// through the integration suites run with run_as (the RunAs.* entries; scripts/trace-syscalls,
// docs/SANDBOX.md), grouped by who needs it.
constexpr Syscall kAllowed[] = {
    // The libevent loop and the connections: epoll, accept4, SCM_RIGHTS in and out, peer
    // credentials, send buffers, queued bytes (TIOCOUTQ), NS_GET_NSTYPE and the pidfd
    // namespace ioctls, the uWSGI listener's reads, our ids (read back by the drop's checks).
    // The server's own loop is made after the drop, since privsep forks it first (service.cc).
    NSB_SYSCALL(epoll_create1),
    NSB_SYSCALL(epoll_wait),
    NSB_SYSCALL(epoll_ctl),
    NSB_SYSCALL(poll),
    NSB_SYSCALL(accept4),
    NSB_SYSCALL(recvmsg),
    NSB_SYSCALL(sendmsg),
    NSB_SYSCALL(recvfrom),
    NSB_SYSCALL(sendto),
    NSB_SYSCALL(connect),
    NSB_SYSCALL(getsockopt),
    NSB_SYSCALL(setsockopt),
    NSB_SYSCALL(shutdown),
    NSB_SYSCALL(ioctl),
    NSB_SYSCALL(fcntl),
    NSB_SYSCALL(close),
    NSB_SYSCALL(getuid),
    NSB_SYSCALL(geteuid),
    NSB_SYSCALL(getgid),
    NSB_SYSCALL(getegid),
    // Targets: pidfds and their exits, inotify on pid-file directories, reading pid files,
    // /proc and (on SIGHUP) the config file on the read-only tree, each checked by
    // openat2/fstatfs (trusted_file.h); libevent's signal pipe.
    NSB_SYSCALL(pidfd_open),
    NSB_SYSCALL(inotify_init1),
    NSB_SYSCALL(inotify_add_watch),
    NSB_SYSCALL(inotify_rm_watch),
    NSB_SYSCALL(openat),
    NSB_SYSCALL(openat2),
    NSB_SYSCALL(read),
    // A reload's config arrives from the opener as a sealed memfd, read by offset
    // (opener_client.cc ReadSealed).
    NSB_SYSCALL(pread64),
    // Users and groups named in a reloaded config: getpwnam's nss-systemd walks the userdb
    // directories through symlinks (/lib -> usr/lib).
    NSB_SYSCALL(readlinkat),
    NSB_SYSCALL(lseek),
    NSB_SYSCALL(newfstatat),
    NSB_SYSCALL(fstatfs),
    NSB_SYSCALL(getdents64),
    NSB_SYSCALL(prlimit64),
    NSB_SYSCALL(pipe2),
    // Logs and the audit log on descriptors opened before the drop. The socket files are the
    // opener's to remove: no unlink.
    NSB_SYSCALL(write),
    NSB_SYSCALL(writev),
    // Time, the allocator, signals (libevent's signal pipe), abort() on a broken invariant.
    NSB_SYSCALL(clock_gettime),
    NSB_SYSCALL(gettimeofday),
    NSB_SYSCALL(futex),
    NSB_SYSCALL(mmap),
    NSB_SYSCALL(munmap),
    NSB_SYSCALL(mremap),
    NSB_SYSCALL(madvise),
    NSB_SYSCALL(mprotect),
    NSB_SYSCALL(brk),
    NSB_SYSCALL(rt_sigaction),
    NSB_SYSCALL(rt_sigprocmask),
    NSB_SYSCALL(rt_sigreturn),
    NSB_SYSCALL(restart_syscall),
    NSB_SYSCALL(getpid),
    NSB_SYSCALL(gettid),
    NSB_SYSCALL(tgkill),
    NSB_SYSCALL(getrandom),
    NSB_SYSCALL(exit),
    NSB_SYSCALL(exit_group),
};

// socket(2): AF_UNIX only (NSS's lookups on reload, with connect/sendto); an AF_INET
// or AF_NETLINK socket is never ours.
constexpr unsigned kSocketDomains[] = {AF_UNIX};
// prctl(2): reading our own state back, never setting it (PR_SET_DUMPABLE 1 would undo us).
constexpr unsigned kPrctlOptions[] = {PR_GET_SECCOMP, PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS};

// AddressSanitizer builds only (kSandboxSanitizerAllowance): at exit LeakSanitizer makes the
// process dumpable for a moment (prctl), clones a task sharing our memory that ptrace-attaches
// to every thread, lists /proc/self/task with the legacy open/getdents, and reads
// /proc/self/exe to symbolize a report. Found by running an ASan build inside the filter and
// reading the kernel's audit record of each kill (type=1326 syscall=N) until none was left.
constexpr Syscall kSanitizerAllowed[] = {
    NSB_SYSCALL(open),    NSB_SYSCALL(getdents),    NSB_SYSCALL(readlink), NSB_SYSCALL(clone),
    NSB_SYSCALL(ptrace),  NSB_SYSCALL(wait4),       NSB_SYSCALL(prctl),    NSB_SYSCALL(sched_yield),
    NSB_SYSCALL(getppid), NSB_SYSCALL(sigaltstack),
};

sock_filter Stmt(std::uint16_t code, std::uint32_t k) { return BPF_STMT(code, k); }
sock_filter Jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
  return BPF_JUMP(code, k, jt, jf);
}

constexpr std::uint32_t kArg0 = offsetof(seccomp_data, args);

void ReturnIfNr(std::vector<sock_filter>& f, long nr, std::uint32_t action) {
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 0, 1));
  f.push_back(Stmt(BPF_RET | BPF_K, action));
}

// nr with its first argument one of `values`, else the process dies. When nr does not match,
// the accumulator still holds it for the rules after this block.
template <std::size_t N>
void AllowIfArg0(std::vector<sock_filter>& f, long nr, const unsigned (&values)[N]) {
  constexpr std::size_t block = 1 + 2 * N + 1;
  static_assert(block <= 255, "BPF jump offsets are 8 bits");
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 0,
                   static_cast<std::uint8_t>(block)));
  f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
  for (unsigned v : values) {
    f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, v, 0, 1));
    f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  }
  f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
}

std::vector<sock_filter> BuildFilter() {
  std::vector<sock_filter> f;
  // Syscall numbers mean something only for one architecture: any other dies.
  f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  f.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0));
  f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  f.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
#if defined(__x86_64__)
  // x32 syscalls share AUDIT_ARCH_X86_64 and differ by this bit: a second table, refused.
  f.push_back(Jump(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1));
  f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
  for (const Syscall& s : kAllowed) ReturnIfNr(f, s.nr, SECCOMP_RET_ALLOW);
  AllowIfArg0(f, SYS_socket, kSocketDomains);
  if (kSandboxSanitizerAllowance) {
    for (const Syscall& s : kSanitizerAllowed) ReturnIfNr(f, s.nr, SECCOMP_RET_ALLOW);
  } else {
    AllowIfArg0(f, SYS_prctl, kPrctlOptions);
  }
  f.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  return f;
}

std::string SanitizerNames() {
  std::string out;
  for (const Syscall& s : kSanitizerAllowed) out += (out.empty() ? "" : " ") + std::string(s.name);
  return out;
}

bool HasEffective(unsigned cap) {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

// The first capability number the kernel does not know: PR_CAPBSET_READ says EINVAL there.
unsigned CapabilityCount() {
  unsigned cap = 0;
  while (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0) ++cap;
  return cap;
}

Result<void> CheckMountsReadOnly() {
  std::ifstream mountinfo("/proc/self/mountinfo");
  if (!mountinfo) return SysError(ErrorCode::kInternal, "sandbox: open /proc/self/mountinfo");
  std::string line;
  std::size_t mounts = 0;
  while (std::getline(mountinfo, line)) {
    // mount id, parent id, major:minor, root, mount point, per-mount options (proc(5)).
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, options;
    fields >> id >> parent >> dev >> root >> point >> options;
    ++mounts;
    if (options != "ro" && options.rfind("ro,", 0) != 0) {
      return MakeError(ErrorCode::kInternal,
                       "sandbox: " + point + " is still mounted writable (" + options + ")");
    }
  }
  if (mounts == 0) return MakeError(ErrorCode::kInternal, "sandbox: no mounts in mountinfo");
  return {};
}

Result<void> ClearCapabilities() {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) {
    return SysError(ErrorCode::kInternal, "sandbox: capset to the empty set");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "sandbox: PR_CAP_AMBIENT_CLEAR_ALL");
  }
  // Read back what the kernel holds for us now: all three sets, then every ambient bit.
  __user_cap_data_struct now[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, now) != 0)
    return SysError(ErrorCode::kInternal, "sandbox: capget");
  for (const auto& word : now) {
    if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0) {
      return MakeError(ErrorCode::kInternal,
                       "sandbox: capabilities remain after capset (effective " +
                           std::to_string(word.effective) + ", permitted " +
                           std::to_string(word.permitted) + ", inheritable " +
                           std::to_string(word.inheritable) + ")");
    }
  }
  for (unsigned cap = 0, n = CapabilityCount(); cap < n; ++cap) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) != 0) {
      return MakeError(ErrorCode::kInternal,
                       "sandbox: ambient capability " + std::to_string(cap) + " remains");
    }
  }
  return {};
}

}  // namespace

Result<void> PrepareSandbox() {
  // A mount namespace of our own (mount_namespaces(7)): what we make read-only here is read-only
  // for us alone. The broker is one thread, as unshare(CLONE_NEWNS) needs (it unshares fs too).
  if (unshare(CLONE_NEWNS) != 0)
    return SysError(ErrorCode::kInternal, "sandbox: unshare(CLONE_NEWNS)");
  // One call for the whole tree: read-only so nothing can be created, replaced or written by
  // path; nosuid and nodev so no file here raises privilege or reaches a device; private so
  // mounts made on the host later never appear in here. noexec is left out: exec is the
  // filter's to refuse, and a reload may still map an NSS module for getpwnam(3).
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.propagation = MS_PRIVATE;
  if (mount_setattr(-1, "/", AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return SysError(ErrorCode::kInternal, "sandbox: mount_setattr / read-only, recursive");
  }
  if (auto ro = CheckMountsReadOnly(); !ro) return ro;
  // An empty bounding set: nothing executed later could gain a capability, whatever its file
  // capabilities. The filter refuses exec and no_new_privs ignores file capabilities, so this
  // is depth, and it needs CAP_SETPCAP: a service manager that withheld it (a unit's
  // CapabilityBoundingSet= without it) leaves the set as that unit bounded it, and we say so.
  if (!HasEffective(CAP_SETPCAP)) {
    LogLine("sandbox: capability bounding set left as it is: CAP_SETPCAP is not ours",
            LogPriority::kWarning);
    return {};
  }
  for (unsigned cap = 0, n = CapabilityCount(); cap < n; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return SysError(ErrorCode::kInternal,
                      "sandbox: PR_CAPBSET_DROP capability " + std::to_string(cap));
    }
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0) {
      return MakeError(ErrorCode::kInternal, "sandbox: capability " + std::to_string(cap) +
                                                 " is still in the bounding set");
    }
  }
  return {};
}

Result<void> EnterSandbox() {
  // Non-dumpable: no process of our uid (run_as may be shared) can ptrace us or read our
  // memory through /proc, and no core file holds a peer's data (prctl(2), ptrace(2)).
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "sandbox: PR_SET_DUMPABLE 0");
  }
  if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return MakeError(ErrorCode::kInternal, "sandbox: the process is still dumpable");
  }
  // A drop to a non-root uid empties the permitted and effective sets but keeps the
  // inheritable one (capabilities(7)); run_as "root" keeps them all. Empty them here.
  if (auto caps = ClearCapabilities(); !caps) return caps;
  // Without no_new_privs an unprivileged process may not install a filter (seccomp(2)); it
  // also means no exec could ever gain privileges, filter or not.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return SysError(ErrorCode::kInternal, "sandbox: PR_SET_NO_NEW_PRIVS");
  }
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
    return MakeError(ErrorCode::kInternal, "sandbox: no_new_privs did not take");
  }
  std::vector<sock_filter> filter = BuildFilter();
  sock_fprog program{.len = static_cast<unsigned short>(filter.size()), .filter = filter.data()};
  // TSYNC: every thread gets the filter or none does (the server has one; a sanitizer may not).
  long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
  if (rc != 0) {
    return rc > 0 ? MakeError(ErrorCode::kInternal,
                              "sandbox: seccomp: thread " + std::to_string(rc) + " cannot sync")
                  : SysError(ErrorCode::kInternal, "sandbox: seccomp(SECCOMP_SET_MODE_FILTER)");
  }
  if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) {
    return MakeError(ErrorCode::kInternal, "sandbox: the seccomp filter did not take");
  }
  if (kSandboxSanitizerAllowance) {
    LogLine("sandbox: AddressSanitizer build: " + std::to_string(std::size(kSanitizerAllowed)) +
                " more syscalls are allowed for LeakSanitizer (" + SanitizerNames() + ")",
            LogPriority::kWarning);
  }
  // socket and prctl count once each, with their argument checks.
  std::size_t allowed =
      std::size(kAllowed) + 2 + (kSandboxSanitizerAllowance ? std::size(kSanitizerAllowed) - 1 : 0);
  LogLine("sandbox: entered: no capabilities, no_new_privs, not dumpable, " +
          std::to_string(allowed) + " syscalls allowed");
  return {};
}

}  // namespace nsbroker
