// jailme end to end: a setuid-root copy of the real binary, run as uid 65534 and 65533 against
// the real nsbrokerd and a real target. Never mocks the kernel, never touches the host's /run.
//
// jailme's socket path is compiled in (NSB_SOCKET_PATH), so the test binary is built with the
// same value and each test first moves into a private mount namespace with a fresh tmpfs over
// that path's directory. The broker it starts binds the compiled-in path there; tests running
// in parallel (ctest -j, other build trees) each have their own and never clash.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cgroup_util.h"
#include "harness.h"
#include "oci_container.h"
#include "terminal.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

constexpr char kSocketPath[] = NSB_SOCKET_PATH;
constexpr uid_t kNobody = 65534;  // in the host's passwd: nobody, /nonexistent, nologin
constexpr uid_t kOther = 65533;   // no passwd entry
constexpr gid_t kWebGroup = 65532;
constexpr char kHostname[] = "jailme-web1";
constexpr char kFixedPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string NsLink(const std::string& path) {
  char buf[256];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  return n < 0 ? std::string() : std::string(buf, static_cast<std::size_t>(n));
}

// A private mount namespace for this test process and its children, with an empty tmpfs on
// the deepest existing ancestor of the socket's directory (then the missing directories).
::testing::AssertionResult PrivateSocketDirectory() {
  if (unshare(CLONE_NEWNS) != 0) return ::testing::AssertionFailure() << "unshare(CLONE_NEWNS)";
  // Slave, not shared: nothing mounted here may propagate back to the host.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    return ::testing::AssertionFailure() << "make / a slave mount: " << std::strerror(errno);
  }
  std::filesystem::path dir = std::filesystem::path(kSocketPath).parent_path();
  std::filesystem::path base = dir;
  while (!std::filesystem::exists(base)) base = base.parent_path();
  if (base == "/") {
    return ::testing::AssertionFailure()
           << "NSB_SOCKET_PATH " << kSocketPath << " would need a tmpfs over /";
  }
  if (mount("tmpfs", base.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) {
    return ::testing::AssertionFailure() << "tmpfs on " << base << ": " << std::strerror(errno);
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return ::testing::AssertionFailure() << "mkdir " << dir << ": " << ec.message();
  chmod(dir.c_str(), 0755);
  return ::testing::AssertionSuccess();
}

// A SEQPACKET listener created by `uid` (so SO_PEERCRED names that uid), as a user who wants
// jailme to trust them would make one. Every accepted connection writes a byte to a pipe.
struct FakeBroker {
  ChildProcess process;
  UniqueFd connections;  // non-blocking read end

  bool Connected() const {
    char byte;
    return read(connections.get(), &byte, 1) == 1;
  }
};

FakeBroker StartFakeBroker(const std::string& path, uid_t uid) {
  int ready[2], conns[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(conns, O_CLOEXEC | O_NONBLOCK) != 0) std::abort();
  UniqueFd ready_r(ready[0]), ready_w(ready[1]), conns_r(conns[0]), conns_w(conns[1]);
  pid_t pid = fork();
  if (pid < 0) std::abort();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(1);
    }
    UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        chmod(path.c_str(), 0666) != 0 || listen(sock.get(), 8) != 0 ||
        write(ready_w.get(), "r", 1) != 1) {
      _exit(2);
    }
    for (;;) {
      UniqueFd conn(accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.valid() && write(conns_w.get(), "c", 1) != 1) _exit(3);
    }
  }
  FakeBroker fake{ChildProcess(pid), std::move(conns_r)};
  ready_w.reset();
  char byte;
  if (read(ready_r.get(), &byte, 1) != 1) ADD_FAILURE() << "the fake broker did not start";
  return fake;
}

class JailmeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    ASSERT_TRUE(PrivateSocketDirectory());
    auto target = Target::Start({.hostname = kHostname});
    ASSERT_OK(target);
    target_.emplace(std::move(*target));
    // A setuid-root copy in a directory every uid can reach, on a mount without nosuid.
    jailme_ = dir_.Join("jailme");
    std::filesystem::copy_file(JailmeBinary(), jailme_);
    ASSERT_EQ(chown(jailme_.c_str(), 0, 0), 0);
    ASSERT_EQ(chmod(jailme_.c_str(), 04755), 0);  // after chown, which clears the bit
    // A directory the unprivileged commands can write into (the target shares this fs).
    ASSERT_EQ(mkdir(Shared("").c_str(), 0777), 0);
    ASSERT_EQ(chmod(Shared("").c_str(), 0777), 0);
  }

  std::string Shared(const std::string& name) const { return dir_.Join("shared/" + name); }

  // Allows root, uid 65534 and group 65532 into "web1"; everyone else is denied.
  void StartBroker() {
    std::string config = std::string("socket: \"") + kSocketPath + "\"\n" +
                         "socket_mode: \"0666\"\n"
                         "target { name: \"web1\" pid: " +
                         std::to_string(target_->pid()) +
                         " allow { uid: 0 } allow { uid: " + std::to_string(kNobody) + " }" +
                         " allow { gid: " + std::to_string(kWebGroup) + " } }\n";
    auto broker = Broker::Start(config);
    ASSERT_OK(broker);
    broker_.emplace(std::move(*broker));
  }

  RunResult Jailme(uid_t uid, const std::vector<std::string>& args, RunOptions options = {}) {
    options.uid = uid;
    if (!options.env) options.env = std::map<std::string, std::string>{{"PATH", "/usr/bin:/bin"}};
    std::vector<std::string> argv = {jailme_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, options);
  }

  // Started with fds 0-2 closed, jailme must not let the broker socket or a namespace
  // descriptor become the command's stdin/stdout/stderr. For a setuid start glibc already puts
  // /dev/full (stdin) and /dev/null there (csu/check_fds.c); run by root (no AT_SECURE) it is
  // jailme's own EnsureStdio that does, with /dev/null.
  void ExpectHarmlessStdio(std::optional<uid_t> uid, bool dev_full_stdin) {
    std::string file = Shared("fds-" + std::to_string(uid.value_or(0)));
    RunOptions options{.uid = uid,
                       .env = std::map<std::string, std::string>{{"PATH", "/bin"}},
                       .close_stdio = true};
    // fd 8 keeps the command's original stdout while fd 9 collects the report.
    auto r = RunCommand({jailme_, "web1", "/bin/sh", "-c",
                         "exec 9>" + file + " 8>&1; readlink /proc/self/fd/0 /proc/self/fd/8 " +
                             "/proc/self/fd/2 >&9; ls -l /proc/self/fd >&9; hostname >&9"},
                        options);
    EXPECT_EQ(r.status, 0);
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    auto lines = Lines(text.str());
    ASSERT_GE(lines.size(), 4u) << text.str();
    EXPECT_EQ(lines[0], dev_full_stdin ? "/dev/full" : "/dev/null") << text.str();
    EXPECT_EQ(lines[1], "/dev/null") << text.str();
    EXPECT_EQ(lines[2], "/dev/null") << text.str();
    for (const auto& line : lines) {
      EXPECT_EQ(line.find("socket:"), std::string::npos) << line;
      EXPECT_EQ(line.find(":[40"), std::string::npos) << "a namespace descriptor: " << line;
    }
    EXPECT_EQ(lines.back(), kHostname) << text.str();
  }

  TempDir dir_;
  std::string jailme_;
  std::optional<Target> target_;
  std::optional<Broker> broker_;
};

TEST_F(JailmeTest, AllowedUserRunsInsideTheTargetAsThemselvesWithoutPrivileges) {
  StartBroker();
  auto r =
      Jailme(kNobody, {"web1", "/bin/sh", "-c",
                       "hostname; id -u; id -g; id -G; pwd -P;"
                       "for k in uts net ipc mnt pid cgroup; do readlink /proc/self/ns/$k; done;"
                       "grep -E '^(CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 15u) << r.out;
  EXPECT_EQ(lines[0], kHostname);
  EXPECT_EQ(lines[1], "65534");
  EXPECT_EQ(lines[2], "65534");
  EXPECT_EQ(lines[3], "65534");
  EXPECT_EQ(lines[4], NsLink("/proc/" + std::to_string(target_->pid()) + "/cwd"));
  const char* kinds[] = {"uts", "net", "ipc", "mnt", "pid", "cgroup"};
  for (std::size_t i = 0; i < std::size(kinds); ++i) {
    EXPECT_EQ(lines[5 + i], NsLink(target_->NsPath(kinds[i]))) << kinds[i];
    EXPECT_NE(lines[5 + i], NsLink(std::string("/proc/self/ns/") + kinds[i])) << kinds[i];
  }
  EXPECT_EQ(lines[11], "CapPrm:\t0000000000000000");
  EXPECT_EQ(lines[12], "CapEff:\t0000000000000000");
  EXPECT_EQ(lines[13], "CapAmb:\t0000000000000000");
  EXPECT_EQ(lines[14], "NoNewPrivs:\t1");
}

TEST_F(JailmeTest, SecondUserAllowedByGroupKeepsTheirGroups) {
  StartBroker();
  auto r =
      Jailme(kOther, {"web1", "/bin/sh", "-c", "hostname; id -u; id -g; id -G; echo \"$HOME\""},
             {.groups = {kWebGroup}});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kHostname) + "\n65533\n65533\n65533 65532\n/\n");
}

TEST_F(JailmeTest, DeniedUserGetsTheBrokersReasonAndNothingRuns) {
  StartBroker();
  auto r = Jailme(kOther, {"web1", "/bin/sh", "-c", "echo ran; touch " + Shared("ran")});
  EXPECT_EQ(r.status, 125);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("jailme: target 'web1': ", 0), 0u) << r.err;
  // It may have nothing of web1, so to it web1 does not exist (the audit line says why).
  EXPECT_EQ(r.err, "jailme: target 'web1': unknown target 'web1'\n");
  EXPECT_FALSE(std::filesystem::exists(Shared("ran")));
  EXPECT_TRUE(broker_->WaitForLog("decision=deny target=web1")) << broker_->log();
  EXPECT_NE(broker_->log().find("peer_uid=65533"), std::string::npos) << broker_->log();
}

TEST_F(JailmeTest, EnvironmentHoldsOnlyTheAllowedKeys) {
  StartBroker();
  std::map<std::string, std::string> env = {
      {"TERM", "xterm-test"}, {"LANG", "C.UTF-8"},       {"LC_TIME", "C"},
      {"TZ", "UTC"},          {"PATH", "/evil/bin"},     {"HOME", "/evil"},
      {"USER", "root"},       {"SHELL", "/evil/sh"},     {"IFS", "x"},
      {"BASH_ENV", "/evil"},  {"NSBROKER_SOCKET", "/x"}, {"LD_LIBRARY_PATH", "/evil"},
      {"FOO", "bar"}};
  auto r = Jailme(kNobody, {"web1", "/usr/bin/env"}, {.env = env});
  ASSERT_EQ(r.status, 0) << r.err;
  std::map<std::string, std::string> seen;
  for (const auto& line : Lines(r.out)) {
    auto eq = line.find('=');
    seen[line.substr(0, eq)] = line.substr(eq + 1);
  }
  std::map<std::string, std::string> expected = {
      {"TERM", "xterm-test"}, {"LANG", "C.UTF-8"},   {"LC_TIME", "C"},
      {"TZ", "UTC"},          {"PATH", kFixedPath},  {"HOME", "/nonexistent"},
      {"USER", "nobody"},     {"LOGNAME", "nobody"}, {"SHELL", "/usr/sbin/nologin"}};
  EXPECT_EQ(seen, expected);
}

TEST_F(JailmeTest, LdPreloadDoesNotReachTheCommand) {
  StartBroker();
  auto r = Jailme(kNobody, {"web1", "/bin/sh", "-c", "echo \"[$LD_PRELOAD]\""},
                  {.env = std::map<std::string, std::string>{{"LD_PRELOAD", Shared("missing.so")},
                                                             {"PATH", "/usr/bin:/bin"}}});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "[]\n");
  EXPECT_EQ(r.err.find("LD_PRELOAD"), std::string::npos) << r.err;
}

TEST_F(JailmeTest, NsbrokerSocketVariableIsIgnored) {
  StartBroker();
  FakeBroker fake = StartFakeBroker(Shared("fake.sock"), kNobody);
  auto r = Jailme(kNobody, {"web1", "hostname"},
                  {.env = std::map<std::string, std::string>{
                       {"NSBROKER_SOCKET", Shared("fake.sock")}, {"PATH", "/usr/bin:/bin"}}});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kHostname) + "\n");
  EXPECT_FALSE(fake.Connected());
}

TEST_F(JailmeTest, BrokerSocketNotServedByRootIsRefused) {
  // The compiled-in path itself, bound by an unprivileged user (as after the broker died).
  ASSERT_EQ(chmod(std::filesystem::path(kSocketPath).parent_path().c_str(), 01777), 0);
  FakeBroker fake = StartFakeBroker(kSocketPath, kNobody);
  auto r = Jailme(kNobody, {"web1", "/bin/sh", "-c", "echo ran; touch " + Shared("ran")});
  EXPECT_EQ(r.status, 125);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("jailme: target 'web1': ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("65534"), std::string::npos) << "names the server's uid: " << r.err;
  EXPECT_FALSE(std::filesystem::exists(Shared("ran")));
}

TEST_F(JailmeTest, ClosedStdioNeverBecomesADescriptorJailmeOpened) {
  StartBroker();
  ExpectHarmlessStdio(kNobody, /*dev_full_stdin=*/true);
}

// Only a real setuid start in the host's user namespace: root running it (no AT_SECURE) and a
// user inside a user namespace of their own (euid 0 there, the setuid bit ignored) are refused
// before anything is asked of the broker.
TEST_F(JailmeTest, RefusesAnythingButARealSetuidStart) {
  StartBroker();
  auto root = RunCommand({jailme_, "web1", "/bin/sh", "-c", "touch " + Shared("ran")});
  EXPECT_EQ(root.status, 125);
  EXPECT_NE(root.err.find("jailme: not a setuid start (AT_SECURE is 0)"), std::string::npos)
      << root.err;
  auto userns = RunCommand(
      {"unshare", "-U", "-r", jailme_, "web1", "/bin/sh", "-c", "touch " + Shared("ran")},
      {.uid = kNobody});
  EXPECT_EQ(userns.status, 125);
  EXPECT_NE(userns.err.find("jailme: not a setuid start (AT_SECURE is 0)"), std::string::npos)
      << userns.err;
  EXPECT_FALSE(std::filesystem::exists(Shared("ran")));
  EXPECT_EQ(broker_->log().find("web1"), std::string::npos) << "asked: " << broker_->log();
}

// The command starts with nothing of root: no capability in any set, bounding set empty.
TEST_F(JailmeTest, CommandHasNoCapabilityAndAnEmptyBoundingSet) {
  StartBroker();
  auto r = Jailme(kNobody, {"web1", "grep", "^Cap", "/proc/self/status"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
            "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n");
}

// A rootless target (its namespaces owned by a user namespace that 65534 owns): jailme enters
// everything else as root, then the user namespace as the user, after the drop, so the
// kernel lets its owner in (mapped to root inside) and refuses anyone else.
TEST_F(JailmeTest, RootlessTargetUserNamespaceIsEnteredAsTheUserAfterTheDrop) {
  auto rootless = Target::Start({.hostname = "jailme-rootless", .user_owner_uid = kNobody});
  ASSERT_OK(rootless);
  std::string config = std::string("socket: \"") + kSocketPath + "\"\nsocket_mode: \"0666\"\n" +
                       "target { name: \"rootless\" pid: " + std::to_string(rootless->pid()) +
                       " allow { uid: " + std::to_string(kNobody) + " }" +
                       " allow { gid: " + std::to_string(kWebGroup) + " } }\n";
  auto broker = Broker::Start(config);
  ASSERT_OK(broker);

  auto owner = Jailme(kNobody, {"rootless", "/bin/sh", "-c",
                                "hostname; id -u; readlink /proc/self/ns/user /proc/self/ns/net;"
                                "grep NoNewPrivs /proc/self/status"});
  ASSERT_EQ(owner.status, 0) << owner.err;
  EXPECT_EQ(owner.out, "jailme-rootless\n0\n" + NsLink(rootless->NsPath("user")) + "\n" +
                           NsLink(rootless->NsPath("net")) + "\nNoNewPrivs:\t1\n");

  auto other = Jailme(kOther, {"rootless", "/bin/sh", "-c", "echo ran"}, {.groups = {kWebGroup}});
  EXPECT_EQ(other.status, 125);
  EXPECT_EQ(other.out, "");
  EXPECT_EQ(other.err.rfind("jailme: target 'rootless': ", 0), 0u) << other.err;
  EXPECT_NE(other.err.find("user namespace"), std::string::npos) << other.err;
}

// docs/jailme.1: leaving USER out of a rootless target's expose list lets a user who does not
// own its user namespace enter the rest with their host ids.
TEST_F(JailmeTest, RootlessTargetWithoutUserExposedIsEnteredWithHostIds) {
  auto rootless = Target::Start({.hostname = "jailme-rootless", .user_owner_uid = kNobody});
  ASSERT_OK(rootless);
  std::string config = std::string("socket: \"") + kSocketPath + "\"\nsocket_mode: \"0666\"\n" +
                       "target { name: \"rootless\" pid: " + std::to_string(rootless->pid()) +
                       " expose: [CGROUP, IPC, MNT, NET, PID, UTS]" +
                       " allow { uid: " + std::to_string(kOther) + " } }\n";
  auto broker = Broker::Start(config);
  ASSERT_OK(broker);
  auto r =
      Jailme(kOther, {"rootless", "/bin/sh", "-c", "hostname; id -u; readlink /proc/self/ns/net"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "jailme-rootless\n65533\n" + NsLink(rootless->NsPath("net")) + "\n");
}

// Pid of the process whose command line is exactly `argv` (root may read anyone's).
pid_t FindProcess(const std::vector<std::string>& argv) {
  std::string wanted;
  for (const auto& a : argv) wanted += a + '\0';
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::stringstream cmdline;
    cmdline << in.rdbuf();
    if (cmdline.str() == wanted) return std::stoi(name);
  }
  return -1;
}

// The parent left outside the pid namespace passes SIGTERM on to the command and ends as it
// ends (a supervisor stopping jailme stops the command, not just the wrapper).
TEST_F(JailmeTest, WaitingParentForwardsSigtermToTheCommand) {
  StartBroker();
  std::vector<std::string> argv = {jailme_, "web1", "/bin/sh", "-c",
                                   "trap 'touch " + Shared("got-term") +
                                       "; kill $!; exit 3' TERM; touch " + Shared("started") +
                                       "; sleep 30 & wait"};
  std::thread stopper([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!std::filesystem::exists(Shared("started")) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // jailme's parent still has this command line; its child became /bin/sh.
    pid_t parent = FindProcess(argv);
    if (parent > 0) kill(parent, SIGTERM);
  });
  auto start = std::chrono::steady_clock::now();
  auto r = RunCommand(argv, {.uid = kNobody});
  stopper.join();
  EXPECT_EQ(r.status, 3) << "the command's own status after its TERM trap: " << r.err;
  EXPECT_TRUE(std::filesystem::exists(Shared("got-term")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST_F(JailmeTest, NotSetuidRefusesWith125) {
  std::string plain = dir_.Join("jailme-plain");
  std::filesystem::copy_file(JailmeBinary(), plain);
  ASSERT_EQ(chmod(plain.c_str(), 0755), 0);
  auto r = RunCommand({plain, "web1", "/bin/true"}, {.uid = kNobody});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("jailme: not installed setuid root"), std::string::npos) << r.err;
}

TEST_F(JailmeTest, ListShowsTheTargetsTheUserMayJoin) {
  StartBroker();
  auto r = Jailme(kNobody, {"--list"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("web1 ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("uts"), std::string::npos) << r.out;
}

TEST_F(JailmeTest, HelpOnStdoutUsageErrorsAre125) {
  auto help = Jailme(kNobody, {"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_EQ(help.out.rfind("usage: jailme [--pty|--no-pty] TARGET", 0), 0u) << help.out;
  for (const auto& args : std::vector<std::vector<std::string>>{{}, {"-x"}, {"--list", "web1"}}) {
    auto r = Jailme(kNobody, args);
    EXPECT_EQ(r.status, 125);
    EXPECT_EQ(r.err.rfind("usage: jailme [--pty|--no-pty] TARGET", 0), 0u) << r.err;
  }
}

TEST_F(JailmeTest, ExitStatusIsTheCommandsOr126And127) {
  StartBroker();
  EXPECT_EQ(Jailme(kNobody, {"web1", "/bin/sh", "-c", "exit 7"}).status, 7);
  EXPECT_EQ(Jailme(kNobody, {"web1", "/bin/sh", "-c", "kill -9 $$"}).status, 128 + 9);
  auto missing = Jailme(kNobody, {"web1", "no-such-command-here"});
  EXPECT_EQ(missing.status, 127);
  EXPECT_EQ(missing.err.rfind("jailme: target 'web1': ", 0), 0u) << missing.err;
  EXPECT_EQ(Jailme(kNobody, {"web1", "/etc/passwd"}).status, 126);
}

// ---- the terminal (issue 14): a pty of its own when the caller has one, none in a pipeline,
// always a new session ----

// The lines a terminal displayed, without the echo of what was typed.
std::vector<std::string> DisplayLines(const Terminal& terminal) { return Lines(terminal.seen()); }

// A program inside pushes a line into its terminal's input (TIOCSTI; this kernel has
// dev.tty.legacy_tiocsti=1). On the caller's terminal the caller's shell would read and run
// it after jailme; on jailme's own pty it goes nowhere, and with --no-pty the command is in a
// session of its own, whose controlling terminal is not the caller's, so the kernel refuses it.
TEST_F(JailmeTest, TiocstiInsideNeverReachesTheCallersNextRead) {
  StartBroker();
  for (const char* mode : {"", "--no-pty"}) {
    std::string jailme = jailme_ + (*mode != '\0' ? std::string(" ") + mode : "");
    auto t = Terminal::Start({"/bin/sh", "-c",
                              jailme + " web1 " NSB_PTY_PROBE " tiocsti 'echo INJECTED\n'; "
                                       "echo DONE; read line; echo \"GOT:$line\""},
                             kNobody);
    ASSERT_TRUE(t.WaitFor("DONE\n")) << mode << ": " << t.seen();
    t.Type("clean\n");
    ASSERT_TRUE(t.WaitFor("GOT:")) << mode << ": " << t.seen();
    ASSERT_TRUE(t.WaitFor("\n")) << t.seen();
    EXPECT_EQ(t.Wait(), 0);
    auto lines = DisplayLines(t);
    EXPECT_NE(std::find(lines.begin(), lines.end(), "GOT:clean"), lines.end())
        << mode << ": " << t.seen();
    if (*mode != '\0') {
      EXPECT_NE(t.seen().find("tiocsti: EPERM"), std::string::npos) << t.seen();
    }
  }
}

// At a terminal: the command's tty is a new one, the caller's terminal modes come back
// unchanged, exit statuses and signals (128+N) are the command's, and ^C reaches it through
// the pty.
TEST_F(JailmeTest, InteractiveCommandRunsOnAPtyOfItsOwn) {
  StartBroker();
  const std::string& j = jailme_;
  auto t = Terminal::Start(
      {"/bin/sh", "-c",
       "stty -g; tty; " + j + " web1 tty; echo rc:$?; " + j + " web1 sh -c 'exit 7'; echo rc:$?; " +
           j + " web1 sh -c 'kill -9 $$'; echo rc:$?; " + j +
           " web1 sh -c 'echo READY; exec cat'; echo rc:$?; stty -g; echo END"},
      kNobody);
  ASSERT_TRUE(t.WaitFor("READY\n")) << t.seen();
  t.Type("\x03");  // the caller's terminal is raw: ^C is the pty's, and SIGINT the command's
  ASSERT_TRUE(t.WaitFor("END\n")) << t.seen();
  EXPECT_EQ(t.Wait(), 0);
  std::vector<std::string> lines;
  for (auto line : DisplayLines(t)) {
    if (line.starts_with("^C")) line.erase(0, 2);  // the pty's echo of the ^C typed
    if (line != "READY") lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 9u) << t.seen();
  EXPECT_EQ(lines[1], t.slave_name());
  EXPECT_EQ(lines[2].rfind("/dev/pts/", 0), 0u) << lines[2];
  EXPECT_NE(lines[2], t.slave_name());
  EXPECT_EQ(lines[3], "rc:0");
  EXPECT_EQ(lines[4], "rc:7");
  EXPECT_EQ(lines[5], "rc:137");
  EXPECT_EQ(lines[6], "rc:130");
  EXPECT_EQ(lines[7], lines[0]) << "the caller's terminal modes changed";
}

// The window size at start and every change after (SIGWINCH) reach the command's pty.
TEST_F(JailmeTest, WindowSizeArrivesAndFollowsChanges) {
  StartBroker();
  auto t = Terminal::Start(
      {"/bin/sh", "-c", "exec " + jailme_ + " web1 sh -c 'tty; exec " NSB_PTY_PROBE " winch'"},
      kNobody, 30, 100);
  ASSERT_TRUE(t.WaitFor("size 30 100\n")) << t.seen();
  t.Resize(40, 120);
  ASSERT_TRUE(t.WaitFor("size 40 120\n")) << t.seen();
  EXPECT_EQ(t.Wait(), 0);
  auto lines = DisplayLines(t);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0], t.slave_name()) << "the command ran on the caller's terminal";
}

// Without a terminal (a pipeline, cron) no pty: input and output stay plain bytes. --pty
// forces one anyway, --no-pty keeps the caller's terminal.
TEST_F(JailmeTest, PipelineGetsNoPtyAndPtyFlagsOverride) {
  StartBroker();
  auto r = Jailme(kNobody, {"web1", "sh", "-c", "cat; tty"}, {.stdin_data = "x\n"});
  EXPECT_EQ(r.status, 1) << r.err;  // tty(1): not a tty
  EXPECT_EQ(r.out, "x\nnot a tty\n");
  auto forced = Jailme(kNobody, {"--pty", "web1", "tty"});
  EXPECT_EQ(forced.status, 0) << forced.err;
  EXPECT_EQ(forced.out.rfind("/dev/pts/", 0), 0u) << forced.out;
  auto t = Terminal::Start({"/bin/sh", "-c", jailme_ + " --no-pty web1 tty"}, kNobody);
  ASSERT_TRUE(t.WaitFor(t.slave_name() + "\n")) << t.seen();
  EXPECT_EQ(t.Wait(), 0);
}

// A target whose mount namespace has no devpts (an empty tmpfs on /dev, as a container without
// /dev/pts): at a terminal the command still gets a pty, of a devpts instance jailme made for
// it alone, neither the caller's nor one of the host's, and mounted nowhere in the target.
// Input and output relay, the exit status comes back, the caller's terminal modes are restored.
TEST_F(JailmeTest, TargetWithoutDevptsGetsAPtyOfAnInstanceOfItsOwn) {
  auto bare = Target::Start({.hostname = "jailme-bare", .empty_dev = true});
  ASSERT_OK(bare);
  const std::string bare_mounts = "/proc/" + std::to_string(bare->pid()) + "/mountinfo";
  std::string config = std::string("socket: \"") + kSocketPath + "\"\nsocket_mode: \"0666\"\n" +
                       "target { name: \"bare\" pid: " + std::to_string(bare->pid()) +
                       " allow { uid: " + std::to_string(kNobody) + " } }\n";
  auto broker = Broker::Start(config);
  ASSERT_OK(broker);
  ASSERT_EQ(DevptsDevices(bare_mounts).size(), 0u);
  auto t = Terminal::Start(
      {"/bin/sh", "-c",
       "stty -g; " + jailme_ +
           " bare sh -c '" NSB_PTY_PROBE
           " devpts; stat -L -c %u:%a /proc/self/fd/0; ls -A /dev; echo TYPE; read line; "
           "echo \"GOT:$line\"; exit 5'; echo rc:$?; stty -g; echo END"},
      kNobody);
  ASSERT_TRUE(t.WaitFor("TYPE\n")) << t.seen();
  t.Type("hello\n");
  ASSERT_TRUE(t.WaitFor("END\n")) << t.seen();
  EXPECT_EQ(t.Wait(), 0);
  auto lines = DisplayLines(t);
  // modes, devpts, owner, TYPE, the echo of hello, GOT, rc, modes, END
  ASSERT_EQ(lines.size(), 9u) << t.seen();
  ASSERT_EQ(lines[1].rfind("devpts ", 0), 0u) << t.seen();
  std::string device = lines[1].substr(7);
  struct stat caller{};
  ASSERT_EQ(stat(t.slave_name().c_str(), &caller), 0);
  std::string caller_device =
      std::to_string(major(caller.st_dev)) + ":" + std::to_string(minor(caller.st_dev));
  auto host = DevptsDevices();
  ASSERT_NE(std::count(host.begin(), host.end(), caller_device), 0) << caller_device;
  EXPECT_EQ(std::count(host.begin(), host.end(), device), 0)
      << "the command's pty is of a host devpts, " << device;
  EXPECT_EQ(lines[2], std::to_string(kNobody) + ":600") << "the slave is the user's alone";
  EXPECT_EQ(lines[4], "hello");
  EXPECT_EQ(lines[5], "GOT:hello");
  EXPECT_EQ(lines[6], "rc:5");
  EXPECT_EQ(lines[7], lines[0]) << "the caller's terminal modes changed";
  EXPECT_EQ(DevptsDevices(bare_mounts).size(), 0u) << "a devpts was mounted in the target";
}

// A target that exposes its cgroup (CGROUPDIR): the user's command starts in it, under the
// target's resource limits; the waiting parent stays where the caller was.
TEST_F(JailmeTest, CommandStartsInTheTargetsCgroupWhenItIsGranted) {
  ScopedCgroup cgroup("nsb-jailme-" + std::to_string(getpid()));
  ASSERT_FALSE(cgroup.path().empty()) << "no cgroup2 mount or no cgroup to make one under";
  auto target = Target::Start({.hostname = "cg-host"});
  ASSERT_OK(target);
  ASSERT_TRUE(cgroup.Move(target->pid()));
  std::string config = std::string("socket: \"") + kSocketPath + "\"\nsocket_mode: \"0666\"\n" +
                       "target { name: \"cg\" pid: " + std::to_string(target->pid()) +
                       " expose: [UTS, CGROUPDIR] allow { uid: " + std::to_string(kNobody) +
                       " } }\n";
  auto broker = Broker::Start(config);
  ASSERT_OK(broker);
  auto r = Jailme(kNobody, {"cg", "sh", "-c", "hostname; grep ^0:: /proc/self/cgroup; id -u"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "cg-host\n0::" + cgroup.path() + "\n65534\n");
  target->Kill();
}

// Targets by name need nothing new of jailme: a cgroup's process and a runc container are
// joined by name, all their namespaces, as the user.
TEST_F(JailmeTest, TargetsByNameAreJoinedInAllTheirNamespaces) {
  ScopedCgroup cgroup("nsb-jailme-named-" + std::to_string(getpid()));
  ASSERT_FALSE(cgroup.path().empty()) << "no cgroup2 mount or no cgroup to make one under";
  auto member = Target::Start({.hostname = "jailme-member"});
  ASSERT_OK(member);
  ASSERT_TRUE(cgroup.Move(member->pid()));
  Container box(Runtimes().front(), "nsb-jailme-" + std::to_string(getpid()));
  pid_t init = box.Run("jailme-box");
  ASSERT_GT(init, 0);
  std::string allow = " allow { uid: " + std::to_string(kNobody) + " } }\n";
  auto broker =
      Broker::Start(std::string("socket: \"") + kSocketPath + "\"\nsocket_mode: \"0666\"\n" +
                    "target { name: \"grp\" cgroup: \"" + cgroup.path() + "\"" + allow +
                    "target { name: \"box\" " + OciConfig(box) + allow);
  ASSERT_OK(broker);
  const char* kinds[] = {"uts", "net", "ipc", "mnt", "pid"};
  // busybox's readlink and id: the container's rootfs has no other.
  std::string script;
  for (const char* kind : kinds)
    script += std::string("/bin/busybox readlink /proc/self/ns/") + kind + ";";
  script += "/bin/busybox id -u";
  for (auto [name, pid] : {std::pair{"grp", member->pid()}, std::pair{"box", init}}) {
    auto r = Jailme(kNobody, {name, "/bin/busybox", "sh", "-c", script});
    ASSERT_EQ(r.status, 0) << name << ": " << r.err;
    auto lines = Lines(r.out);
    ASSERT_EQ(lines.size(), std::size(kinds) + 1) << name << ": " << r.out;
    for (std::size_t i = 0; i < std::size(kinds); ++i) {
      std::string want = NsLink("/proc/" + std::to_string(pid) + "/ns/" + kinds[i]);
      EXPECT_EQ(lines[i], want) << name << " " << kinds[i];
      EXPECT_NE(lines[i], NsLink(std::string("/proc/self/ns/") + kinds[i]))
          << name << " " << kinds[i];
    }
    EXPECT_EQ(lines.back(), "65534") << name;
  }
  EXPECT_TRUE(broker->WaitForLog("pid " + std::to_string(init) + " of container " + box.id()))
      << broker->log();
  member->Kill();  // before its group is removed
}

}  // namespace
}  // namespace nsbroker::testing
