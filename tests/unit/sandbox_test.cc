// The sandbox, entered by a forked child exactly as the broker enters it (prepare as root,
// drop to 65534, enter); the test process reads the child's state from /proc and waits on
// its pidfd for how it died.
#include "sandbox.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>

#include "harness.h"
#include "privileges.h"
#include "test_util.h"

namespace nsbroker {
namespace {

const RunAs kNobody{.name = "nobody", .uid = 65534, .gid = 65534, .groups = {65534}};

// A child inside the sandbox, stopped until Go(): then it runs `then` and _exits 0 if it
// lives through it. Its report ("ok" or the first error) is ready() once the constructor ends.
class SandboxedChild {
 public:
  explicit SandboxedChild(const std::function<void()>& then) {
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) return;
    UniqueFd ready_r(ready[0]), ready_w(ready[1]), go_r(go[0]);
    go_w_.reset(go[1]);
    pid_ = fork();
    if (pid_ == 0) {
      auto fail = [&](const std::string& what) {
        (void)!write(ready_w.get(), what.data(), what.size());
        _exit(1);
      };
      if (auto r = PrepareSandbox(); !r) fail(r.error().message);
      if (auto r = DropPrivileges(kNobody); !r) fail(r.error().message);
      if (auto r = EnterSandbox(); !r) fail(r.error().message);
      // Still works inside: a unix socket (NSS's).
      int unix_sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (unix_sock < 0) fail("socket(AF_UNIX) failed");
      close(unix_sock);
      (void)!write(ready_w.get(), "ok", 2);
      char byte;
      if (read(go_r.get(), &byte, 1) != 1) _exit(1);
      then();
      _exit(0);
    }
    ready_w.reset();
    char buf[512];
    ssize_t n = read(ready_r.get(), buf, sizeof buf);
    report_.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  }
  ~SandboxedChild() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  const std::string& report() const { return report_; }
  std::string Proc(const std::string& file) const {
    return "/proc/" + std::to_string(pid_) + "/" + file;
  }

  // Lets the child run `then`; how it ended, from waitid on the pidfd.
  siginfo_t GoAndWait() {
    (void)!write(go_w_.get(), "g", 1);
    siginfo_t info{};
    waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED);
    reaped_ = true;
    return info;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  UniqueFd go_w_, pidfd_;
  std::string report_;
};

std::map<std::string, std::string> Status(const std::string& path) {
  std::ifstream in(path);
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    out[line.substr(0, colon)] = line.substr(line.find_first_not_of(" \t", colon + 1));
  }
  return out;
}

TEST(Sandbox, LeavesNoPrivilegeAndOnlyReadOnlyMounts) {
  ASSERT_TRUE(testing::RequireRoot());
  SandboxedChild child([] {});
  ASSERT_EQ(child.report(), "ok");
  auto status = Status(child.Proc("status"));
  EXPECT_EQ(status["NoNewPrivs"], "1");
  EXPECT_EQ(status["Seccomp"], "2");
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(status[set], "0000000000000000") << set;
  }
  // A non-dumpable process's /proc files (not its world-readable directories) belong to
  // root, whatever its uid (proc(5), PR_SET_DUMPABLE).
  struct stat st;
  ASSERT_EQ(stat(child.Proc("environ").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_NE(testing::NsInode(child.Proc("ns/mnt")), testing::NsInode("/proc/self/ns/mnt"));
  std::ifstream mountinfo(child.Proc("mountinfo"));
  std::string line;
  int mounts = 0;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, options;
    fields >> id >> parent >> dev >> root >> point >> options;
    ++mounts;
    EXPECT_TRUE(options.rfind("ro", 0) == 0 && options.find("nosuid") != std::string::npos &&
                options.find("nodev") != std::string::npos)
        << point << " " << options;
  }
  EXPECT_GT(mounts, 0);
  siginfo_t end = child.GoAndWait();
  EXPECT_EQ(end.si_code, CLD_EXITED);
  EXPECT_EQ(end.si_status, 0);
}

// Each of these is something a compromised server would try first; each kills it.
TEST(Sandbox, AForbiddenSyscallKillsTheProcessWithSigsys) {
  ASSERT_TRUE(testing::RequireRoot());
  struct Forbidden {
    std::string name;
    std::function<void()> call;
    bool sanitizer_allows;  // kSandboxSanitizerAllowance lets LeakSanitizer use it
  };
  const Forbidden forbidden[] = {
      {"socket(AF_INET)", [] { socket(AF_INET, SOCK_STREAM, 0); }, false},
      {"mount", [] { mount("none", "/tmp", "tmpfs", 0, nullptr); }, false},
      {"setuid", [] { (void)!setuid(0); }, false},
      {"ptrace", [] { ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); }, true},
      {"prctl(PR_SET_DUMPABLE)", [] { prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); }, true},
      // The opener runs the OCI runtime: the server never makes a process.
      {"fork", [] { (void)!fork(); }, true},  // glibc's fork is clone, LeakSanitizer's too
      {"execve", [] { execl("/bin/true", "true", nullptr); }, false},
  };
  for (const auto& [name, call, sanitizer_allows] : forbidden) {
    if (kSandboxSanitizerAllowance && sanitizer_allows) continue;
    SandboxedChild child(call);
    ASSERT_EQ(child.report(), "ok") << name;
    siginfo_t end = child.GoAndWait();
    EXPECT_EQ(end.si_code, CLD_KILLED) << name;
    EXPECT_EQ(end.si_status, SIGSYS) << name;
  }
}

TEST(Sandbox, PreparingWithoutPrivilegeNamesTheStepThatFailed) {
  ASSERT_TRUE(testing::RequireRoot());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setresuid(65534, 65534, 65534) != 0) _exit(9);
    auto r = PrepareSandbox();
    if (r) _exit(1);
    _exit(r.error().message.rfind("sandbox: unshare(CLONE_NEWNS): ", 0) == 0 ? 0 : 2);
  }
  testing::ChildProcess child(pid);
  EXPECT_EQ(child.Wait(), 0);
}

// A unit whose CapabilityBoundingSet= withholds CAP_SETPCAP: the rest is done, the bounding
// set stays as the unit left it (a warning says so), and nothing fails.
TEST(Sandbox, WithoutSetpcapTheBoundingSetIsLeftAlone) {
  ASSERT_TRUE(testing::RequireRoot());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capget, &header, data) != 0) _exit(9);
    data[0].effective &= ~(1u << CAP_SETPCAP);
    if (syscall(SYS_capset, &header, data) != 0) _exit(9);
    if (!PrepareSandbox()) _exit(1);
    _exit(prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 1 ? 0 : 2);
  }
  testing::ChildProcess child(pid);
  EXPECT_EQ(child.Wait(), 0);
}

}  // namespace
}  // namespace nsbroker
