// libnsjoin's entering against the real kernel: grants built by hand from a harness
// Target's /proc/PID/ns files (no broker), entered in forked children so that this test
// process never changes namespace.
#include "nsbroker/join.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "harness.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

std::string Describe(const Error& error) {
  return std::string(ErrorCodeName(error.code)) + ": " + error.message;
}

// A grant as the broker would make it: namespace files of the target, plus ROOT and CWD.
Grant GrantFor(pid_t pid, const std::string& name = "unit") {
  Grant grant{.target = name};
  std::string proc = "/proc/" + std::to_string(pid);
  for (NsKind kind : kAllKinds) {
    if (kind == NsKind::kJail) continue;
    bool dir = kind == NsKind::kRoot || kind == NsKind::kCwd;
    std::string path = proc + (dir ? "/" : "/ns/") + std::string(KindProcFile(kind));
    UniqueFd fd(open(path.c_str(), dir ? O_PATH | O_DIRECTORY | O_CLOEXEC : O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << path << ": " << std::strerror(errno);
    struct stat st{};
    fstat(fd.get(), &st);
    grant.entries.push_back(
        GrantEntry{.kind = kind, .fd = std::move(fd), .inode = st.st_ino, .device = st.st_dev});
  }
  return grant;
}

// An O_PATH directory entry, as the broker sends ROOT and CWD.
GrantEntry DirEntry(NsKind kind, const std::string& path) {
  return GrantEntry{.kind = kind,
                    .fd = UniqueFd(open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC))};
}

// Runs fn in a forked child and returns what it returned (the child ends in _exit).
std::string InChild(const std::function<std::string()>& fn) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) return "pipe2 failed";
  UniqueFd r(ends[0]), w(ends[1]);
  pid_t pid = fork();
  if (pid == 0) {
    r.reset();
    std::string out = fn();
    ssize_t n = write(w.get(), out.data(), out.size());
    _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 1);
  }
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  int status;
  waitpid(pid, &status, 0);
  return out;
}

// Drops to uid/gid 65534 for good, as an unprivileged joiner is.
bool BecomeNobody() {
  return setgroups(0, nullptr) == 0 && setresgid(65534, 65534, 65534) == 0 &&
         setresuid(65534, 65534, 65534) == 0;
}

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

ino_t OwnNs(const char* kind) { return NsInode(std::string("/proc/thread-self/ns/") + kind); }

struct Captured {
  int status = -1;
  std::string out;
};

// Spawns argv inside the grant with stdout on a pipe and waits for it.
Result<Captured> SpawnCaptured(const Grant& grant, const std::vector<std::string>& argv,
                               SpawnOptions options = {}) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) return SysError("pipe2");
  UniqueFd r(ends[0]), w(ends[1]);
  options.stdout_fd = w.get();
  auto pid = Spawn(grant, argv, options);
  if (!pid) return std::unexpected(pid.error());
  w.reset();
  Captured captured;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) {
    captured.out.append(buf, static_cast<std::size_t>(n));
  }
  auto status = WaitForExit(*pid);
  if (!status) return std::unexpected(status.error());
  captured.status = *status;
  return captured;
}

class JoinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto target = Target::Start({.hostname = "nsb-unit"});
    ASSERT_OK(target);
    target_.emplace(std::move(*target));
    grant_ = GrantFor(target_->pid());
  }
  std::optional<Target> target_;
  Grant grant_;
};

TEST_F(JoinTest, SpawnRunsTheCommandWithTheTargetsHostname) {
  auto ran = SpawnCaptured(grant_, {"hostname"});
  ASSERT_OK(ran);
  EXPECT_EQ(ran->status, 0);
  EXPECT_EQ(ran->out, "nsb-unit\n");
  EXPECT_NE(Hostname(), "nsb-unit") << "the test process stays outside";
}

TEST_F(JoinTest, SpawnedCommandIsInEveryNamespaceOfTheTarget) {
  auto ran = SpawnCaptured(grant_, {"sh", "-c",
                                    "stat -L -c %i /proc/self/ns/uts /proc/self/ns/net "
                                    "/proc/self/ns/ipc /proc/self/ns/mnt "
                                    "/proc/self/ns/cgroup /proc/self/ns/pid"});
  ASSERT_OK(ran);
  std::string expected;
  for (const char* kind : {"uts", "net", "ipc", "mnt", "cgroup", "pid"}) {
    expected += std::to_string(NsInode(target_->NsPath(kind))) + "\n";
  }
  EXPECT_EQ(ran->out, expected);
}

TEST_F(JoinTest, PidNamespaceHoldsTheCommandOnlyAfterTheSecondFork) {
  // NSpid lists the pid in each pid namespace from ours down: two pids means inside.
  auto pid_levels = [&](SpawnOptions options) {
    auto ran = SpawnCaptured(grant_, {"grep", "NSpid", "/proc/self/status"}, options);
    if (!ran) return -1;
    std::istringstream words(ran->out);
    std::string word;
    int n = -1;  // "NSpid:" itself
    while (words >> word) ++n;
    return n;
  };
  auto pid_ns = [&](SpawnOptions options) -> ino_t {
    auto ran = SpawnCaptured(grant_, {"stat", "-L", "-c", "%i", "/proc/self/ns/pid"}, options);
    return ran ? static_cast<ino_t>(std::stoull(ran->out)) : 0;
  };
  SpawnOptions inside{.enter = {.kinds = {NsKind::kPid}}};
  EXPECT_EQ(pid_levels(inside), 2);
  EXPECT_EQ(pid_ns(inside), NsInode(target_->NsPath("pid")));
  // nsenter -F: exec without the second fork leaves the command itself outside.
  SpawnOptions no_fork{.enter = {.kinds = {NsKind::kPid}}, .fork_after_pid = false};
  EXPECT_EQ(pid_levels(no_fork), 1);
  EXPECT_EQ(pid_ns(no_fork), OwnNs("pid"));
}

TEST_F(JoinTest, ExitStatusesAreTheCommandsOwn) {
  for (bool pid : {false, true}) {
    SpawnOptions options{.enter = {.kinds = {NsKind::kUts}}};
    if (pid) options.enter.kinds.push_back(NsKind::kPid);  // through the stand-in process
    auto seven = SpawnCaptured(grant_, {"sh", "-c", "exit 7"}, options);
    ASSERT_OK(seven);
    EXPECT_EQ(seven->status, 7) << "pid " << pid;
    auto killed = SpawnCaptured(grant_, {"sh", "-c", "kill -TERM $$"}, options);
    ASSERT_OK(killed);
    EXPECT_EQ(killed->status, 128 + SIGTERM) << "pid " << pid;
  }
}

TEST_F(JoinTest, ExecFailuresComeBackAsErrors) {
  TempDir dir;
  dir.Write("not-executable", "#!/bin/sh\n");
  for (bool pid : {false, true}) {
    SpawnOptions options{.enter = {.kinds = {NsKind::kUts}}};
    if (pid) options.enter.kinds.push_back(NsKind::kPid);
    auto missing = Spawn(grant_, {"/nonexistent/command"}, options);
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound) << Describe(missing.error());
    EXPECT_EQ(missing.error().sys_errno, ENOENT);
    EXPECT_NE(missing.error().message.find("/nonexistent/command"), std::string::npos);
    auto denied = Spawn(grant_, {dir.Join("not-executable")}, options);
    ASSERT_FALSE(denied.has_value());
    EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied) << Describe(denied.error());
    EXPECT_EQ(denied.error().sys_errno, EACCES);
  }
}

TEST_F(JoinTest, AskingForAKindTheGrantLacksEntersNothing) {
  Grant uts_only{.target = "unit"};
  uts_only.entries.push_back(std::move(grant_.entries[KindToWire(NsKind::kUts) - 1]));
  ASSERT_EQ(uts_only.entries[0].kind, NsKind::kUts);
  auto r = Enter(uts_only, {.kinds = {NsKind::kUts, NsKind::kNet}});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("'net'"), std::string::npos) << r.error().message;
  EXPECT_NE(Hostname(), "nsb-unit");
}

TEST_F(JoinTest, NamespacesTheCallerIsAlreadyInAreSkipped) {
  Grant own = GrantFor(getpid(), "self");
  // In this (possibly multi-threaded) test process: nothing needs entering, so nothing
  // complains about threads and own user namespace (EINVAL for setns) is not touched.
  auto entered = Enter(own);
  ASSERT_OK(entered);
  EXPECT_TRUE(entered->kinds.empty());
  EXPECT_FALSE(entered->pid);
}

TEST_F(JoinTest, MountNamespaceInAMultiThreadedProcessIsAClearError) {
  std::string out = InChild([&] {
    std::thread sleeper([] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
    auto r = Enter(grant_, {.kinds = {NsKind::kMnt}});
    sleeper.join();
    return r ? std::string("entered") : Describe(r.error());
  });
  EXPECT_NE(out.find("INVALID_REQUEST"), std::string::npos) << out;
  EXPECT_NE(out.find("single-threaded"), std::string::npos) << out;
}

TEST_F(JoinTest, ChrootAndChdirGoThroughRootAndCwd) {
  TempDir root;
  root.Write("marker", "x");
  ASSERT_EQ(mkdir(root.Join("sub").c_str(), 0755), 0);
  Grant grant{.target = "dirs"};
  grant.entries.push_back(DirEntry(NsKind::kRoot, root.path()));
  grant.entries.push_back(DirEntry(NsKind::kCwd, root.Join("sub")));
  auto where = [&](EnterOptions options) {
    return InChild([&] {
      auto r = Enter(grant, options);
      if (!r) return Describe(r.error());
      char cwd[PATH_MAX] = {};
      if (getcwd(cwd, sizeof cwd) == nullptr) return std::string("getcwd failed");
      return std::string(cwd) + (access("/marker", F_OK) == 0 ? " marker" : "");
    });
  };
  EXPECT_EQ(where({.chroot_to_root = true}), "/ marker");
  EXPECT_EQ(where({.chroot_to_root = true, .chdir_to_cwd = true}), "/sub marker");
  EXPECT_EQ(where({.chdir_to_cwd = true}), root.Join("sub"));
}

TEST_F(JoinTest, DeadInitIsReportedAsSuch) {
  Grant pid_only{.target = "gone"};
  pid_only.entries.push_back(std::move(grant_.entries[KindToWire(NsKind::kPid) - 1]));
  ASSERT_EQ(pid_only.entries[0].kind, NsKind::kPid);
  target_->Kill();  // the descriptor keeps the namespace, but nothing can be born in it
  auto pid = Spawn(pid_only, {"true"});
  ASSERT_FALSE(pid.has_value());
  EXPECT_EQ(pid.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(pid.error().message,
            "pid namespace of target 'gone' has no init (its init process exited)");
}

TEST_F(JoinTest, RunInNetworkOpensASocketInTheTargetsNetns) {
  ino_t before = OwnNs("net");
  auto fd =
      RunInNetwork(grant_, [] { return UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)); });
  ASSERT_OK(fd);
  ASSERT_TRUE(fd->valid());
  UniqueFd netns(ioctl(fd->get(), SIOCGSKNS));
  ASSERT_TRUE(netns.valid()) << std::strerror(errno);
  struct stat st{};
  ASSERT_EQ(fstat(netns.get(), &st), 0);
  EXPECT_EQ(st.st_ino, NsInode(target_->NsPath("net")));
  EXPECT_EQ(OwnNs("net"), before) << "the calling thread stays outside";
  EXPECT_NE(before, NsInode(target_->NsPath("net")));
}

TEST_F(JoinTest, RunInNetworkPassesErrorsAndExceptionsBack) {
  Grant empty{.target = "none"};
  auto missing = RunInNetwork(empty, [] {});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_THROW((void)RunInNetwork(grant_, []() -> int { throw std::runtime_error("inside"); }),
               std::runtime_error);
}

TEST(JoinProc, EnteringInStepsWorksOnceTheTargetsProcHidesUs) {
  // A target with its own /proc (unshare --mount-proc): after entering its mount namespace
  // this process is not in that /proc, as when jailme enters the user namespace last.
  ASSERT_TRUE(RequireRoot());
  pid_t unshare_pid = fork();
  if (unshare_pid == 0) {
    execlp("unshare", "unshare", "--fork", "--kill-child", "--pid", "--mount", "--mount-proc",
           "sleep", "60", nullptr);
    _exit(127);
  }
  ChildProcess keeper(unshare_pid);
  // unshare's child mounts the new /proc, then execs sleep: wait for the exec.
  pid_t target = 0;
  for (int i = 0; i < 500; ++i) {
    std::ifstream children("/proc/" + std::to_string(unshare_pid) + "/task/" +
                           std::to_string(unshare_pid) + "/children");
    children >> target;
    char exe[PATH_MAX] = {};
    if (target != 0 &&
        readlink(("/proc/" + std::to_string(target) + "/exe").c_str(), exe, sizeof exe - 1) > 0 &&
        std::string(exe).ends_with("/sleep")) {
      break;
    }
    target = 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_NE(target, 0);
  Grant grant = GrantFor(target);
  std::string out = InChild([&] {
    auto mnt = Enter(grant, {.kinds = {NsKind::kMnt}});
    if (!mnt) return "mnt: " + Describe(mnt.error());
    if (access("/proc/thread-self/ns/pid", F_OK) == 0) return std::string("still in /proc");
    auto pid = Enter(grant, {.kinds = {NsKind::kPid}});
    if (!pid) return "pid: " + Describe(pid.error());
    return std::string(pid->pid ? "pid entered" : "pid skipped");
  });
  EXPECT_EQ(out, "pid entered");
}

TEST(JoinRootless, UnprivilegedOwnerEntersUserNamespaceFirst) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "rootless", .user_owner_uid = 65534});
  ASSERT_OK(target);
  Grant grant = GrantFor(target->pid());
  std::string out = InChild([&] {
    if (!BecomeNobody()) return std::string("cannot become 65534");
    auto entered = Enter(grant);
    if (!entered) return Describe(entered.error());
    return Hostname() + " first=" + std::string(KindName(entered->kinds.front())) +
           " user=" + std::to_string(OwnNs("user"));
  });
  EXPECT_EQ(out, "rootless first=user user=" + std::to_string(NsInode(target->NsPath("user"))));

  // The same through Spawn, with -p: the command is inside the target's pid namespace.
  std::string spawned = InChild([&] {
    if (!BecomeNobody()) return std::string("cannot become 65534");
    auto ran = SpawnCaptured(grant, {"sh", "-c", "hostname; grep NSpid /proc/self/status | wc -w"});
    if (!ran) return Describe(ran.error());
    return ran->out;
  });
  EXPECT_EQ(spawned, "rootless\n3\n");
}

TEST(JoinRootless, RootEntersUserNamespaceLast) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "rootless-root", .user_owner_uid = 65534});
  ASSERT_OK(target);
  Grant grant = GrantFor(target->pid());
  std::string out = InChild([&] {
    auto entered = Enter(grant);
    if (!entered) return Describe(entered.error());
    return Hostname() + " last=" + std::string(KindName(entered->kinds.back()));
  });
  EXPECT_EQ(out, "rootless-root last=user");
}

TEST(JoinRootless, AnotherUsersRootlessTargetIsRefusedWithItsOwner) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "someone-else", .user_owner_uid = 65533});
  ASSERT_OK(target);
  Grant grant = GrantFor(target->pid());
  std::string out = InChild([&] {
    if (!BecomeNobody()) return std::string("cannot become 65534");
    auto entered = Enter(grant);
    return entered ? Hostname() : Describe(entered.error());
  });
  EXPECT_EQ(out,
            "PERMISSION_DENIED: its user namespace belongs to uid 65533, so uid 65534 (without "
            "CAP_SYS_ADMIN) cannot enter it");
}

// Enter (join.cc, platform-neutral) routes a jail grant to the seam; on Linux the seam says
// plainly that jails are FreeBSD's, and a jail never mixes with namespaces.
TEST(JoinJail, LinuxSeamRefusesJails) {
  Grant grant{.target = "www1"};
  grant.entries.push_back(GrantEntry{.kind = NsKind::kJail, .jid = 3, .jail_name = "www1"});
  auto entered = Enter(grant);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(entered.error().message, "jail targets need FreeBSD");
  grant.entries.push_back(GrantEntry{
      .kind = NsKind::kNet, .fd = UniqueFd(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC))});
  auto mixed = Enter(grant);
  ASSERT_FALSE(mixed.has_value());
  EXPECT_EQ(mixed.error().message,
            "a jail cannot be entered together with namespaces, root or cwd");
  EXPECT_OK(Enter(grant, {.kinds = {NsKind::kNet}, .chroot_to_root = false, .chdir_to_cwd = false}))
      << "asking for net alone leaves the jail entry aside (and net is our own: skipped)";
}

}  // namespace
}  // namespace nsbroker::testing
