// jailme: the setuid-root helper that lets an ordinary user run a command inside a broker
// target. The broker, asked as the user, decides; jailme enters as root, then drops back to
// the user for good and execs. See docs/jailme.1 for the security model.
//
// Nothing the caller controls changes where jailme connects or what it trusts: the socket
// path is compiled in (NSB_SOCKET_PATH), the broker must be served by root, the environment
// is rebuilt from an allow-list and the host's passwd. The order below is the contract of
// issue 5 and STYLE.md section 5 [bubblewrap main, openssh ssh-keysign.c].
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jailme_platform.h"
#include "jailme_privs.h"
#include "nsbroker/client.h"
#include "nsbroker/join.h"
#include "session.h"

// POSIX leaves environ undeclared in <unistd.h> (FreeBSD does not declare it; glibc does).
extern char** environ;

#ifndef NSB_SOCKET_PATH
#error "NSB_SOCKET_PATH must be defined by the build (CMake cache variable)"
#endif

namespace nsbroker {
namespace {

constexpr char kSocketPath[] = NSB_SOCKET_PATH;
constexpr char kPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr int kExitFailure = 125;  // jailme itself failed (coreutils env/chroot)
constexpr int kExitNotExecutable = 126;
constexpr int kExitNotFound = 127;
constexpr std::size_t kMaxTargetName = 255;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "jailme: %s\n", message.c_str());
  _exit(kExitFailure);
}

// Messages from the broker or libnsjoin may already name the target; say it once.
[[noreturn]] void DieTarget(const std::string& target, const std::string& reason) {
  std::string prefix = "target '" + target + "': ";
  Die(reason.starts_with(prefix) ? reason : prefix + reason);
}

// Descriptors 0-2 must be open before jailme opens anything: a caller that closed them
// would otherwise see the broker socket or a namespace descriptor land on stdout or stderr,
// and jailme's own messages (or the command's output) be written into it. glibc does the
// same before main for a setuid start (csu/check_fds.c, /dev/full for stdin); this covers
// every other start (root running jailme, another libc). No O_CLOEXEC on purpose: these
// become the command's standard descriptors.
void EnsureStdio() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int opened = open("/dev/null", O_RDWR);  // lowest free descriptor: `fd`
    if (opened != fd) _exit(kExitFailure);   // cannot even report it safely
  }
}

// TERM, LANG, LC_* and TZ only change how the user's own command presents itself; they are
// copied aside and everything else (LD_*, NSBROKER_*, PATH, HOME...) is gone before jailme
// does anything else, so neither jailme's libc nor the command ever sees it.
std::vector<std::string> TakeEnvironment() {
  std::vector<std::string> kept;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view kv(*entry);
    std::string_view key = kv.substr(0, kv.find('='));
    if (key.size() == kv.size()) continue;
    if (key == "TERM" || key == "LANG" || key == "TZ" || key.starts_with("LC_")) {
      kept.emplace_back(kv);
    }
  }
  clearenv();
  return kept;
}

// The caller's account, from the *host's* passwd, looked up before entering anything: files
// inside the target are the target's to forge.
struct Account {
  std::optional<std::string> name;  // no passwd entry: USER/LOGNAME are not set
  std::string home = "/";
  std::string shell = "/bin/sh";
};

Account LookupAccount(uid_t uid) {
  Account account;
  const passwd* pw = getpwuid(uid);
  if (pw == nullptr) return account;
  account.name = pw->pw_name;
  if (pw->pw_dir != nullptr && pw->pw_dir[0] != '\0') account.home = pw->pw_dir;
  if (pw->pw_shell != nullptr && pw->pw_shell[0] != '\0') account.shell = pw->pw_shell;
  return account;
}

void BuildEnvironment(const std::vector<std::string>& kept, const Account& account) {
  for (const auto& kv : kept) {
    std::size_t eq = kv.find('=');
    setenv(kv.substr(0, eq).c_str(), kv.c_str() + eq + 1, 1);
  }
  setenv("PATH", kPath, 1);
  setenv("HOME", account.home.c_str(), 1);
  setenv("SHELL", account.shell.c_str(), 1);
  if (account.name) {
    setenv("USER", account.name->c_str(), 1);
    setenv("LOGNAME", account.name->c_str(), 1);
  }
}

[[noreturn]] void Usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: jailme [--pty|--no-pty] TARGET [CMD [ARG...]]\n"
               "       jailme --list\n"
               "       jailme -V|--version\n"
               "Runs CMD (default: your login shell) as yourself inside TARGET, if the broker\n"
               "at %s allows it. See jailme(1).\n",
               kSocketPath);
  std::fflush(stdout);  // _exit does not flush stdio
  _exit(status == 0 ? 0 : kExitFailure);
}

Result<Client> ConnectToBroker() {
  // No trusted_server_uids: only a broker whose listening socket was created by root is
  // believed (SO_PEERCRED of the server, checked by Client::Connect). Otherwise a user who
  // can bind the socket path (say, after the broker died) could hand us descriptors of
  // their choice to enter as root.
  return Client::Connect(kSocketPath, ClientOptions{});
}

[[noreturn]] void List(const Caller& caller) {
  // Nothing to enter: drop for good before talking to the broker at all.
  DropForGood(caller);
  auto client = ConnectToBroker();
  if (!client) Die(client.error().message);
  auto targets = client->List();
  if (!targets) Die(targets.error().message);
  for (const auto& target : *targets) {
    std::string kinds;
    for (NsKind kind : target.kinds) {
      if (!kinds.empty()) kinds += ",";
      kinds += KindName(kind);
    }
    std::printf("%s %s\n", target.name.c_str(), kinds.c_str());  // as nsjoin --list
  }
  _exit(std::fflush(stdout) == 0 ? 0 : kExitFailure);
}

// The command's terminal: a new pty when the caller's stdin is one (or --pty), none for a
// pipeline (or --no-pty).
enum class PtyMode { kAuto, kOn, kOff };

// Called inside the target, still root (CAP_SYS_ADMIN kept from entering): the target's
// /dev/ptmx, opened as the user so that its devpts and its permissions decide; a target
// without one (no devpts in its mount namespace) gets a devpts instance of its own, made as
// root and mounted nowhere, its slave the user's (PtyOrPrivate). Never a pty of the host's
// devpts: the host's root would see the session in its /dev/pts, and the command a host
// file as its terminal.
Result<Pty> CommandPty(const Caller& caller) {
  if (auto r = ActAsCaller(caller); !r) return std::unexpected(std::move(r.error()));
  auto in_target = OpenPty(0);
  if (auto r = RegainRoot(); !r) return std::unexpected(std::move(r.error()));
  return PtyOrPrivate(std::move(in_target), 0, caller.uid, caller.gid);
}

// Every descriptor but 0-2 and `keep` (the pty master, or -1) is closed.
void CloseAllBut(int keep) {
  bool ok = keep < 3 ? close_range(3, ~0U, 0) == 0
                     : (keep == 3 || close_range(3, static_cast<unsigned>(keep) - 1, 0) == 0) &&
                           close_range(static_cast<unsigned>(keep) + 1, ~0U, 0) == 0;
  if (!ok) Die("close_range failed");
}

// The parent left behind by the fork: already dropped to the user and untraceable, it holds
// only fds 0-2 and the pty master, relays the terminal and signals (the command is in a
// session of its own) and reports how the command ended (128+N for signal N).
[[noreturn]] void RelayAndExit(ChildWait& wait, pid_t child, std::optional<Pty>& pty) {
  if (auto r = ForbidTracing(); !r) Die(r.error().message);
  CloseAllBut(pty ? pty->master.get() : -1);
  auto status = RelayUntilExit(wait, child, pty ? &*pty : nullptr);
  if (!status) Die(status.error().message);
  _exit(*status);
}

[[noreturn]] void Main(int argc, char** argv) {
  EnsureStdio();
  // Not traceable until exec (Linux: PR_SET_DUMPABLE 0, so neither the target's processes,
  // once we are in its pid namespace, nor the caller can ptrace us or open our /proc files
  // while we hold root; FreeBSD: PROC_TRACE_CTL). execve of the user's command resets it.
  if (auto r = ForbidTracing(); !r) Die(r.error().message);
  std::vector<std::string> kept_env = TakeEnvironment();
  // A constant string, before the setuid check: packagers and users ask it of any install.
  if (argc == 2 &&
      (std::string_view(argv[1]) == "-V" || std::string_view(argv[1]) == "--version")) {
    std::fputs("jailme (nsbroker) " NSB_VERSION "\n", stdout);
    _exit(std::fflush(stdout) == 0 ? 0 : kExitFailure);
  }
  if (geteuid() != 0) {
    Die("not installed setuid root (effective uid " + std::to_string(geteuid()) +
        "): it needs root to enter namespaces; see jailme(1)");
  }
  if (auto r = CheckRealSetuidStart(); !r) Die(r.error().message);
  if (auto r = LimitToEnterAndDrop(); !r) Die(r.error().message);

  PtyMode pty_mode = PtyMode::kAuto;
  int arg = 1;
  for (; arg < argc; ++arg) {
    std::string_view flag = argv[arg];
    if (flag == "--pty") {
      pty_mode = PtyMode::kOn;
    } else if (flag == "--no-pty") {
      pty_mode = PtyMode::kOff;
    } else {
      break;
    }
  }
  if (arg >= argc) Usage(kExitFailure);
  std::string_view first = argv[arg];
  if (first == "-h" || first == "--help") Usage(0);
  bool list = first == "--list";
  if (list && arg + 1 != argc) Usage(kExitFailure);
  if (!list && (first.empty() || first[0] == '-' || first.size() > kMaxTargetName)) {
    Usage(kExitFailure);
  }

  const Caller caller = RecordCaller();
  if (list) List(caller);
  if (auto r = ActAsCaller(caller); !r) Die(r.error().message);
  std::string target(first);
  const Account account = LookupAccount(caller.uid);  // as the user, before any target file

  // Asked as the user: the broker's SO_PEERCRED/SO_PEERGROUPS see the caller's uid, gid and
  // groups, so its policy (not jailme) decides. The connection is closed right after.
  auto grant = [&]() -> Result<Grant> {
    auto client = ConnectToBroker();
    if (!client) return std::unexpected(std::move(client.error()));
    // The target's own root and working directory, and its cgroup, come only when named
    // (nsbrokerd(8)), and naming one the target does not expose is an error: name those the
    // broker lists for this user. A target it does not list gets a plain Join, so the broker's
    // refusal (and its audit line) is what the user sees.
    auto targets = client->List();
    if (!targets) return std::unexpected(std::move(targets.error()));
    std::vector<NsKind> dirs;
    for (const TargetInfo& info : *targets) {
      if (info.name != target) continue;
      for (NsKind kind : info.kinds) {
        if (IsDirectoryKind(kind)) dirs.push_back(kind);
      }
    }
    return client->Join(target, dirs);
  }();
  if (!grant) DieTarget(target, grant.error().message);

  // Every namespace but the user namespace is entered as root. The user namespace (a
  // rootless target) is entered after the drop, as the user: then the kernel's own rule
  // (CAP_SYS_ADMIN in that namespace, i.e. the user owns it) decides, and root never
  // carries its host identity into a namespace some user controls.
  EnterOptions as_root{.kinds = {},
                       .chroot_to_root = grant->Find(NsKind::kRoot) != nullptr,
                       .chdir_to_cwd = grant->Find(NsKind::kCwd) != nullptr};
  for (const auto& entry : grant->entries) {
    if (IsNamespaceKind(entry.kind) && entry.kind != NsKind::kUser) {
      as_root.kinds.push_back(entry.kind);
    }
  }
  // A FreeBSD jail: jail_attach needs root. The broker gives this user the jid and name only
  // (never a jail descriptor: it would let them remove the jail); Enter checks with
  // jail_getname right before attaching that the jid still names that jail, then
  // jail_attach chroots and chdirs into it. Nothing inside the jail is read as root: the
  // account was looked up in the host's passwd above, before attaching.
  if (grant->Find(NsKind::kJail) != nullptr) as_root = EnterOptions{.kinds = {NsKind::kJail}};
  bool use_pty = pty_mode == PtyMode::kAuto ? isatty(0) == 1 : pty_mode == PtyMode::kOn;
  // An empty list would mean "everything" to Enter; a grant with nothing to enter would
  // run the command on the host, which is never what the caller asked for.
  if (as_root.kinds.empty()) DieTarget(target, "the broker granted no namespace to enter");
  bool enter_user = grant->Find(NsKind::kUser) != nullptr;

  if (auto r = RegainRoot(); !r) DieTarget(target, r.error().message);
  // The target's cgroup, when the broker grants it: cgroup.procs opened as root and outside
  // the target's cgroup namespace, so that the kernel allows the move (it checks the opener);
  // the command's process writes to it below, after the drop. An administrator keeps users'
  // sessions inside the target's resource limits this way.
  UniqueFd cgroup_procs;
  if (grant->Find(NsKind::kCgroupDir) != nullptr) {
    auto procs = OpenCgroupProcs(*grant);
    if (!procs) DieTarget(target, procs.error().message);
    cgroup_procs = std::move(*procs);
  }
  // setns(2) needs CAP_SYS_ADMIN over each namespace's owner (mnt also CAP_SYS_CHROOT);
  // Enter checks every descriptor's type and passes it to setns. setns into a mount
  // namespace resets root and cwd to that namespace's root; ROOT/CWD then give the target's
  // own view (chroot needs CAP_SYS_CHROOT, hence before the drop).
  auto entered = Enter(*grant, as_root);
  if (!entered) DieTarget(target, entered.error().message);
  // runc CVE-2024-21626: never leave the cwd on a host directory inside a target.
  if (!as_root.chdir_to_cwd && chdir("/") != 0) {
    DieTarget(target, std::string("chdir /: ") + std::strerror(errno));
  }
  // The pty after chroot/chdir (the target's /dev), before the drop (a devpts of its own
  // needs CAP_SYS_ADMIN).
  std::optional<Pty> pty;
  if (use_pty) {
    auto opened = CommandPty(caller);
    if (!opened) DieTarget(target, opened.error().message);
    pty = std::move(*opened);
  }
  if (auto r = LimitToDrop(); !r) DieTarget(target, r.error().message);
  DropForGood(caller);

  // Always a child in a session of its own (setsid), so that nothing inside can TIOCSTI into
  // the caller's terminal; after a pid namespace the fork also puts the command inside it.
  // Both sides are already the user; the parent relays and waits.
  ChildWait wait(ChildWait::Session::kOwn);        // from before the fork: no signal lost
  auto child = ForkCommand(*grant, entered->pid);  // a dead init is reported as such
  if (!child) DieTarget(target, child.error().message);
  if (*child > 0) {
    grant = Grant{};  // close every descriptor of the target in this process
    RelayAndExit(wait, *child, pty);
  }
  if (auto r = StartSession(pty ? &*pty : nullptr, wait); !r) {
    DieTarget(target, r.error().message);
  }
  if (cgroup_procs.valid()) {
    if (auto r = MoveIntoCgroup(*grant, cgroup_procs); !r) DieTarget(target, r.error().message);
    cgroup_procs.reset();
  }
  if (enter_user) {
    if (auto r = Enter(*grant, EnterOptions{.kinds = {NsKind::kUser}}); !r) {
      DieTarget(target, r.error().message);
    }
  }
  grant = Grant{};

  // No new privileges (Linux PR_SET_NO_NEW_PRIVS, FreeBSD PROC_NO_NEW_PRIVS_CTL): execve(2)
  // then never grants privileges, so a setuid or file-capability binary in the target's
  // filesystem (which the target's owner controls) cannot turn the user into root. Policy
  // decision, as bubblewrap: jailme lets a user run their own programs inside, never the
  // target's privileged ones (no su/sudo inside).
  if (auto r = ForbidNewPrivileges(); !r) Die(r.error().message);
  // close_range(2): whatever else is open (NSS, a descriptor inherited from the caller that
  // is not close-on-exec) does not reach the command; fds 0-2 are the caller's.
  if (close_range(3, ~0U, 0) != 0) Die("close_range failed");
  BuildEnvironment(kept_env, account);

  std::vector<char*> command;
  std::string shell = account.shell;
  if (arg + 1 < argc) {
    command.assign(argv + arg + 1, argv + argc);
  } else {
    command.push_back(shell.data());
  }
  command.push_back(nullptr);
  execvp(command[0], command.data());
  int err = errno;
  std::fprintf(stderr, "jailme: target '%s': cannot run '%s': %s\n", target.c_str(), command[0],
               std::strerror(err));
  // _exit, as on every path once inside: nothing to flush, and no exit-time hooks running
  // in the target's namespaces.
  _exit(err == ENOENT ? kExitNotFound : kExitNotExecutable);
}

}  // namespace
}  // namespace nsbroker

int main(int argc, char** argv) { nsbroker::Main(argc, argv); }
