// The real nsjoin binary against the real nsbrokerd over real namespaces, as root and as
// uid 65534: what is inside, exit statuses, errors, --list.
#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cgroup_util.h"
#include "harness.h"
#include "nsbroker/client.h"
#include "nsbroker/join.h"
#include "terminal.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

constexpr uid_t kNobody = 65534;

// A process in a mount namespace of its own, chrooted into `dir` (which bind-mounts /usr
// and holds /marker) and working in /sub: what -r and -w must reproduce.
ChildProcess StartChrooted(const TempDir& dir) {
  for (const char* sub : {"usr", "sub"}) mkdir(dir.Join(sub).c_str(), 0755);
  for (const char* link : {"bin", "lib", "lib64", "sbin"}) {
    EXPECT_EQ(symlink((std::string("usr/") + link).c_str(), dir.Join(link).c_str()), 0);
  }
  dir.Write("marker", "chrooted\n");
  int ready[2];
  EXPECT_EQ(pipe2(ready, O_CLOEXEC), 0);
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("/usr", dir.Join("usr").c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        chroot(dir.path().c_str()) != 0 || chdir("/sub") != 0 ||
        write(ready_w.get(), "r", 1) != 1) {
      _exit(1);
    }
    for (;;) pause();
  }
  ready_w.reset();
  char byte;
  EXPECT_EQ(read(ready_r.get(), &byte, 1), 1);
  return ChildProcess(pid);
}

// nsbrokerd on a listening socket that `uid` put in listen(2) state, passed as systemd would
// (LISTEN_FDS): SO_PEERCRED names whoever called listen(), so this is a broker running as
// `uid` to its clients. The socket queues connections before the broker runs: no wait.
ChildProcess StartBrokerListeningAs(uid_t uid, const TempDir& dir, const std::string& targets) {
  std::string path = dir.Join("nsbroker.sock");
  dir.Write("nsbroker.conf", WithTestRunAs("socket: \"" + path + "\"\n" + targets));
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(seteuid(uid), 0);
  EXPECT_EQ(listen(fd.get(), 16), 0);
  EXPECT_EQ(seteuid(0), 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (dup2(fd.get(), 3) != 3) _exit(126);
    std::string log = dir.Join("broker.log"), conf = dir.Join("nsbroker.conf");
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    dup2(out, 2);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
    unsetenv("NOTIFY_SOCKET");
    std::string binary = BrokerBinary();
    execl(binary.c_str(), binary.c_str(), "-c", conf.c_str(), nullptr);
    _exit(127);
  }
  return ChildProcess(pid);
}

class NsjoinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto web1 = Target::Start({.hostname = "web1-host"});
    ASSERT_OK(web1);
    web1_.emplace(std::move(*web1));
    auto rootless = Target::Start({.hostname = "rootless-host", .user_owner_uid = kNobody});
    ASSERT_OK(rootless);
    rootless_.emplace(std::move(*rootless));
    chrooted_ = StartChrooted(chroot_dir_);
    std::string config =
        "socket_mode: \"0666\"\n"
        "target { name: \"web1\" pid: " +
        std::to_string(web1_->pid()) +
        "  allow { uid: 0 } allow { uid: 65534 kinds: [UTS] } }\n"
        "target { name: \"rootless\" pid: " +
        std::to_string(rootless_->pid()) +
        "  allow { uid: 0 } allow { uid: 65534 } }\n"
        "target { name: \"jail\" pid: " +
        std::to_string(chrooted_.pid()) + "  allow { uid: 0 } }\n";
    auto broker = Broker::Start(config);
    ASSERT_OK(broker);
    broker_.emplace(std::move(*broker));
  }

  RunResult Nsjoin(const std::vector<std::string>& args, RunOptions options = {}) {
    std::vector<std::string> argv = {NsjoinBinary(), "--socket", broker_->socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, options);
  }

  std::string Inode(const Target& target, const char* kind) {
    return std::to_string(NsInode(target.NsPath(kind)));
  }

  std::optional<Target> web1_;
  std::optional<Target> rootless_;
  TempDir chroot_dir_;
  ChildProcess chrooted_;
  std::optional<Broker> broker_;
};

TEST_F(NsjoinTest, HostnameAndNamespaceInodesAreTheTargets) {
  auto r = Nsjoin({"-t", "web1", "--", "sh", "-c",
                   "hostname; stat -L -c %i /proc/self/ns/uts /proc/self/ns/net "
                   "/proc/self/ns/ipc /proc/self/ns/mnt /proc/self/ns/cgroup /proc/self/ns/pid"});
  EXPECT_EQ(r.status, 0) << r.err;
  std::string expected = "web1-host\n";
  for (const char* kind : {"uts", "net", "ipc", "mnt", "cgroup", "pid"}) {
    expected += Inode(*web1_, kind) + "\n";
  }
  EXPECT_EQ(r.out, expected);
  EXPECT_EQ(r.err, "");
  // Without -r/-w it asks for the namespaces only: no ROOT or CWD for the broker to open.
  EXPECT_TRUE(broker_->WaitForLog(
      "decision=grant target=web1 kinds=cgroup,ipc,mnt,net,pid,time,user,uts peer_pid="))
      << broker_->log();
}

TEST_F(NsjoinTest, OnlyTheKindsAskedForAreEntered) {
  auto r =
      Nsjoin({"-t", "web1", "-u", "--", "sh", "-c", "hostname; stat -L -c %i /proc/self/ns/net"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "web1-host\n" + std::to_string(NsInode("/proc/self/ns/net")) + "\n");
}

TEST_F(NsjoinTest, PidPutsTheCommandInTheTargetsPidNamespace) {
  auto r = Nsjoin({"-t", "web1", "-p", "--", "sh", "-c", "exec stat -L -c %i /proc/self/ns/pid"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, Inode(*web1_, "pid") + "\n");
  // The target's init is pid 1 there, so the command has a small pid of its own inside.
  auto nspid = Nsjoin({"-t", "web1", "-p", "-m", "--", "grep", "NSpid", "/proc/self/status"});
  EXPECT_EQ(nspid.status, 0) << nspid.err;
  EXPECT_EQ(std::count(nspid.out.begin(), nspid.out.end(), '\t'), 2) << nspid.out;
  // -F: no fork, so the command itself stays in ours (nsenter's meaning).
  auto no_fork =
      Nsjoin({"-t", "web1", "-p", "-F", "--", "stat", "-L", "-c", "%i", "/proc/self/ns/pid"});
  EXPECT_EQ(no_fork.out, std::to_string(NsInode("/proc/self/ns/pid")) + "\n");
}

TEST_F(NsjoinTest, RootAndWdComeFromTheTarget) {
  auto r = Nsjoin({"-t", "jail", "-r", "-w", "--", "sh", "-c", "pwd; cat /marker"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "/sub\nchrooted\n");
  auto root_only = Nsjoin({"-t", "jail", "-m", "-r", "--", "sh", "-c", "pwd; cat /marker"});
  EXPECT_EQ(root_only.status, 0) << root_only.err;
  EXPECT_EQ(root_only.out, "/\nchrooted\n");
  auto wd_only = Nsjoin({"-t", "web1", "-w", "--", "pwd"});
  EXPECT_EQ(wd_only.status, 0) << wd_only.err;
  char cwd[4096] = {};
  ASSERT_GT(
      readlink(("/proc/" + std::to_string(web1_->pid()) + "/cwd").c_str(), cwd, sizeof cwd - 1), 0);
  EXPECT_EQ(wd_only.out, std::string(cwd) + "\n");
}

TEST_F(NsjoinTest, ExitStatusIsTheCommandsOwn) {
  for (const char* kind : {"-u", "-p"}) {  // exec in place, and through the fork for -p
    EXPECT_EQ(Nsjoin({"-t", "web1", kind, "--", "sh", "-c", "exit 7"}).status, 7) << kind;
    EXPECT_EQ(Nsjoin({"-t", "web1", kind, "--", "sh", "-c", "kill -TERM $$"}).status, 128 + SIGTERM)
        << kind;
    auto missing = Nsjoin({"-t", "web1", kind, "--", "/nonexistent/cmd"});
    EXPECT_EQ(missing.status, 127) << kind;
    EXPECT_EQ(missing.err,
              "nsjoin: target 'web1': exec /nonexistent/cmd: No such file or directory\n");
    TempDir dir;
    dir.Write("script", "#!/bin/sh\n");  // not executable
    auto denied = Nsjoin({"-t", "web1", kind, "--", dir.Join("script")});
    EXPECT_EQ(denied.status, 126) << kind;
    EXPECT_NE(denied.err.find("Permission denied"), std::string::npos) << denied.err;
  }
}

TEST_F(NsjoinTest, OptionsAfterTheCommandAreTheCommands) {
  auto r = Nsjoin({"-t", "web1", "-u", "echo", "-n", "-t", "x"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "-t x");
}

TEST_F(NsjoinTest, DefaultCommandIsTheShell) {
  auto r = Nsjoin(
      {"-t", "web1", "-u"},
      {.env = std::map<std::string, std::string>{{"SHELL", "/bin/sh"}, {"PATH", "/usr/bin:/bin"}},
       .stdin_data = "hostname\n"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "web1-host\n");
}

TEST_F(NsjoinTest, CommandInheritsNoDescriptorOfNsjoin) {
  // Only 0-2, whatever this test inherited itself (ctest's); 3 is ls's own directory.
  for (const char* kind : {"-u", "-p"}) {
    auto r = Nsjoin({"-t", "web1", kind, "--", "ls", "-1", "/proc/self/fd"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "0\n1\n2\n3\n") << kind;
  }
}

// nsenter's -V: all three programs print CMake's project(VERSION), for nsjoin and jailme
// before anything else is checked (no target, no setuid bit needed).
TEST(Version, AllThreeProgramsPrintTheProjectVersion) {
  const std::vector<std::pair<std::string, std::string>> programs = {
      {NsjoinBinary(), "nsjoin"}, {BrokerBinary(), "nsbrokerd"}, {JailmeBinary(), "jailme"}};
  for (const auto& [binary, name] : programs) {
    for (const char* flag : {"-V", "--version"}) {
      auto r = RunCommand({binary, flag}, {.uid = kNobody});
      EXPECT_EQ(r.status, 0) << name << " " << flag << ": " << r.err;
      EXPECT_EQ(r.out, name + " (nsbroker) " NSB_VERSION "\n") << name << " " << flag;
    }
  }
}

// nsenter's habit by default: the command on the caller's terminal. --pty (as su --pty): a
// new pty of its own in a new session, the caller's terminal modes restored after.
TEST_F(NsjoinTest, PtyGivesTheCommandATerminalOfItsOwn) {
  std::string nsjoin = NsjoinBinary() + " --socket " + broker_->socket() + " -t web1 -u ";
  auto t = Terminal::Start({"/bin/sh", "-c",
                            "stty -g; " + nsjoin + "-- tty; " + nsjoin +
                                "--pty -- sh -c 'tty; exit 3'; echo rc:$?; stty -g; echo END"},
                           0);
  ASSERT_TRUE(t.WaitFor("END\n")) << t.seen();
  EXPECT_EQ(t.Wait(), 0);
  auto lines = t.seen();
  std::vector<std::string> out;
  for (std::size_t at = 0, end; (end = lines.find('\n', at)) != std::string::npos; at = end + 1) {
    out.push_back(lines.substr(at, end - at));
  }
  ASSERT_EQ(out.size(), 6u) << lines;
  EXPECT_EQ(out[1], t.slave_name());
  EXPECT_EQ(out[2].rfind("/dev/pts/", 0), 0u) << out[2];
  EXPECT_NE(out[2], t.slave_name());
  EXPECT_EQ(out[3], "rc:3");
  EXPECT_EQ(out[4], out[0]);
}

// --pty into a target without a devpts (an empty tmpfs on /dev): a pty of a devpts instance
// made for the command alone, not one of the host's, and none mounted in the target.
TEST_F(NsjoinTest, PtyInATargetWithoutDevptsIsOfAnInstanceOfItsOwn) {
  auto bare = Target::Start({.hostname = "bare-host", .empty_dev = true});
  ASSERT_OK(bare);
  const std::string bare_mounts = "/proc/" + std::to_string(bare->pid()) + "/mountinfo";
  auto broker = Broker::Start("target { name: \"bare\" pid: " + std::to_string(bare->pid()) +
                              " allow { uid: 0 } }\n");
  ASSERT_OK(broker);
  ASSERT_EQ(DevptsDevices(bare_mounts).size(), 0u);
  auto r = RunCommand({NsjoinBinary(), "--socket", broker->socket(), "-t", "bare", "-m", "-u",
                       "--pty", "--", "sh", "-c", NSB_PTY_PROBE " devpts; ls -A /dev; exit 4"});
  EXPECT_EQ(r.status, 4) << r.err;
  ASSERT_EQ(r.out.rfind("devpts ", 0), 0u) << r.out << r.err;
  std::string device = r.out.substr(7, r.out.find('\r') - 7);
  auto host = DevptsDevices();
  EXPECT_EQ(std::count(host.begin(), host.end(), device), 0) << "a host devpts: " << r.out;
  EXPECT_EQ(r.out, "devpts " + device + "\r\n") << "/dev inside is not empty";
  EXPECT_EQ(DevptsDevices(bare_mounts).size(), 0u) << "a devpts was mounted in the target";
}

TEST_F(NsjoinTest, SetuidAndSetgidApplyAfterEntering) {
  auto r = Nsjoin({"-t", "web1", "-u", "-S", "65534", "-G", "65533", "--", "sh", "-c",
                   "hostname; id -u; id -g; id -G"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "web1-host\n65534\n65533\n65533\n");
  EXPECT_EQ(Nsjoin({"-t", "web1", "-S", "x1"}).status, 125);
}

TEST_F(NsjoinTest, UnknownTargetFailsWith125) {
  auto r = Nsjoin({"-t", "nope", "--", "true"});
  EXPECT_EQ(r.status, 125);
  EXPECT_TRUE(r.err.starts_with("nsjoin: target 'nope': ")) << r.err;
  EXPECT_NE(r.err.find("unknown target"), std::string::npos) << r.err;
}

TEST_F(NsjoinTest, NoBrokerFailsWith125) {
  auto r = RunCommand({NsjoinBinary(), "--socket", chroot_dir_.Join("none.sock"), "-t", "web1"});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("nsjoin: target 'web1': connect to the broker at"), std::string::npos)
      << r.err;
  auto usage = RunCommand({NsjoinBinary(), "-x"});
  EXPECT_EQ(usage.status, 125);
  EXPECT_NE(usage.err.find("usage: nsjoin"), std::string::npos) << usage.err;
}

TEST_F(NsjoinTest, SocketComesFromTheEnvironment) {
  auto r = RunCommand({NsjoinBinary(), "-t", "web1", "-u", "hostname"},
                      {.env = std::map<std::string, std::string>{
                           {"NSBROKER_SOCKET", broker_->socket()}, {"PATH", "/usr/bin:/bin"}}});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "web1-host\n");
}

TEST_F(NsjoinTest, DeniedKindsNameTheKindsAndTheUid) {
  auto r = Nsjoin({"-t", "web1", "-n", "--", "true"}, {.uid = kNobody});
  EXPECT_EQ(r.status, 125);
  EXPECT_TRUE(r.err.starts_with("nsjoin: target 'web1': ")) << r.err;
  EXPECT_NE(r.err.find("net"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("65534"), std::string::npos) << r.err;
  EXPECT_TRUE(broker_->WaitForLog("65534")) << broker_->log();
}

TEST_F(NsjoinTest, GrantedRootOwnedNamespaceStillNeedsCapabilities) {
  // Policy lets 65534 have web1's uts descriptor, but the kernel wants CAP_SYS_ADMIN over
  // a root-owned namespace: a descriptor is not a capability.
  auto r = Nsjoin({"-t", "web1", "-u", "--", "hostname"}, {.uid = kNobody});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("nsjoin: target 'web1': setns uts: Operation not permitted"),
            std::string::npos)
      << r.err;
}

TEST_F(NsjoinTest, UnprivilegedOwnerJoinsARootlessTarget) {
  auto r = Nsjoin({"-t", "rootless", "--", "sh", "-c",
                   "hostname; id -u; stat -L -c %i /proc/self/ns/user /proc/self/ns/pid"},
                  {.uid = kNobody});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "rootless-host\n0\n" + Inode(*rootless_, "user") + "\n" +
                       Inode(*rootless_, "pid") + "\n");
}

TEST_F(NsjoinTest, RootJoinsARootlessTargetAsItsRoot) {
  auto r = Nsjoin({"-t", "rootless", "--", "sh", "-c", "hostname; id -u"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "rootless-host\n0\n");
}

// --preserve-credentials (nsenter's): no switch to uid/gid 0 of the entered user namespace;
// root's host uid is not mapped in the rootless target, so it shows as the overflow uid.
TEST_F(NsjoinTest, PreserveCredentialsKeepsTheCallersIds) {
  auto r = Nsjoin({"-t", "rootless", "--preserve-credentials", "--", "id", "-u"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "65534\n");
}

// nsenter's FILE forms name files, which nsjoin never opens: a clear error, not "bad option".
TEST_F(NsjoinTest, NsenterFileFormsAreRefusedClearly) {
  for (const char* form :
       {"--net=/run/netns/x", "-n/run/netns/x", "--mount=/proc/1/ns/mnt", "-u./uts"}) {
    auto r = Nsjoin({"-t", "web1", form, "--", "true"});
    EXPECT_EQ(r.status, 125) << form;
    EXPECT_EQ(r.err.rfind("nsjoin: nsjoin joins broker targets; nsenter enters files", 0), 0u)
        << form << ": " << r.err;
  }
}

// -rDIR/-wDIR (nsenter's optional argument) and -W/--wdns DIR: directories inside the target,
// resolved after entering; never a host directory opened before.
TEST_F(NsjoinTest, DirectoryArgumentsAreResolvedInsideTheTarget) {
  auto wd = Nsjoin({"-t", "jail", "-m", "-r", "-w/usr", "--", "sh", "-c", "pwd; cat /marker"});
  EXPECT_EQ(wd.status, 0) << wd.err;
  EXPECT_EQ(wd.out, "/usr\nchrooted\n");
  for (const char* form : {"-W/usr", "--wdns=/usr", "--wd=/usr"}) {
    auto r = Nsjoin({"-t", "jail", "-r", form, "--", "pwd"});
    EXPECT_EQ(r.status, 0) << form << ": " << r.err;
    EXPECT_EQ(r.out, "/usr\n") << form;
  }
  auto root = Nsjoin({"-t", "jail", "-r/usr", "--", "/bin/sh", "-c", "pwd; test -e /bin/sh"});
  EXPECT_EQ(root.status, 0) << root.err;
  EXPECT_EQ(root.out, "/\n");
  auto missing = Nsjoin({"-t", "jail", "-r", "-W/no-such-dir", "--", "pwd"});
  EXPECT_EQ(missing.status, 125);
  EXPECT_NE(missing.err.find("chdir /no-such-dir: No such file or directory"), std::string::npos)
      << missing.err;
}

// A descriptor inherited without close-on-exec (a root caller's open host directory is runc
// CVE-2024-21626) does not reach the command, unless --keep-fds asks for it.
TEST_F(NsjoinTest, InheritedDescriptorReachesTheCommandOnlyWithKeepFds) {
  for (const char* keep : {"", "--keep-fds "}) {
    auto r = RunCommand({"/bin/sh", "-c",
                         "exec 7</; exec " + NsjoinBinary() + " --socket " + broker_->socket() +
                             " -t web1 -u " + keep +
                             "-- sh -c 'if [ -e /proc/self/fd/7 ]; then echo open; else echo "
                             "closed; fi'"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, *keep != '\0' ? "open\n" : "closed\n") << keep;
  }
}

// -c/--join-cgroup (nsenter's, util-linux 2.40): the command starts in the target's cgroup v2
// directory, which the broker grants as a CGROUPDIR entry only where a target exposes it.
TEST_F(NsjoinTest, JoinCgroupStartsTheCommandInTheTargetsCgroup) {
  ScopedCgroup cgroup("nsb-nsjoin-" + std::to_string(getpid()));
  ASSERT_FALSE(cgroup.path().empty()) << "no cgroup2 mount or no cgroup to make one under";
  {
    auto target = Target::Start({.hostname = "cg-host"});
    ASSERT_OK(target);
    ASSERT_TRUE(cgroup.Move(target->pid()));
    auto broker = Broker::Start("target { name: \"cg\" pid: " + std::to_string(target->pid()) +
                                " expose: [UTS, CGROUPDIR] allow { uid: 0 } }\n");
    ASSERT_OK(broker);
    for (const char* flag : {"-c", "--join-cgroup"}) {
      auto r = RunCommand({NsjoinBinary(), "--socket", broker->socket(), "-t", "cg", "-u", flag,
                           "--", "sh", "-c", "hostname; grep ^0:: /proc/self/cgroup"});
      EXPECT_EQ(r.status, 0) << r.err;
      EXPECT_EQ(r.out, "cg-host\n0::" + cgroup.path() + "\n") << flag;
    }
    auto plain = RunCommand({NsjoinBinary(), "--socket", broker->socket(), "-t", "cg", "-u", "--",
                             "grep", "^0::", "/proc/self/cgroup"});
    EXPECT_EQ(plain.out, "0::" + CgroupPath(getpid()) + "\n") << "joined without -c";
    target->Kill();
  }
  // web1 exposes every kind but CGROUPDIR (exposed only when named).
  auto refused = Nsjoin({"-t", "web1", "-u", "-c", "--", "true"});
  EXPECT_EQ(refused.status, 125);
  EXPECT_NE(refused.err.find("target 'web1': does not expose cgroupdir"), std::string::npos)
      << refused.err;
}

TEST_F(NsjoinTest, ListJsonParses) {
  auto r = Nsjoin({"--list", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  google::protobuf::ListValue list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &list).ok()) << r.out;
  ASSERT_EQ(list.values_size(), 3) << r.out;
  const auto& web1 = list.values(0).struct_value().fields();
  EXPECT_EQ(web1.at("name").string_value(), "web1");
  std::vector<std::string> kinds;
  for (const auto& kind : web1.at("kinds").list_value().values()) {
    kinds.push_back(kind.string_value());
  }
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "net"), kinds.end()) << r.out;
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "uts"), kinds.end()) << r.out;

  auto nobody = Nsjoin({"--list"}, {.uid = kNobody});
  EXPECT_EQ(nobody.status, 0) << nobody.err;
  EXPECT_NE(nobody.out.find("web1 uts\n"), std::string::npos) << nobody.out;
  EXPECT_EQ(nobody.out.find("jail"), std::string::npos) << nobody.out;
}

TEST_F(NsjoinTest, BrokerUidTrustsABrokerThatIsNotRoot) {
  TempDir dir;
  ChildProcess broker = StartBrokerListeningAs(
      4242, dir,
      "target { name: \"web1\" pid: " + std::to_string(web1_->pid()) + " allow { uid: 0 } }\n");
  std::string socket = dir.Join("nsbroker.sock");
  auto refused = RunCommand({NsjoinBinary(), "--socket", socket, "-t", "web1", "-u", "hostname"});
  EXPECT_EQ(refused.status, 125);
  EXPECT_EQ(refused.err, "nsjoin: target 'web1': the socket " + socket +
                             " is served by uid 4242, which is not root nor a trusted broker "
                             "uid; --broker-uid UID trusts a broker running as UID\n");
  auto other = RunCommand(
      {NsjoinBinary(), "--socket", socket, "--broker-uid", "4243", "-t", "web1", "-u", "hostname"});
  EXPECT_EQ(other.status, 125);
  EXPECT_NE(other.err.find("served by uid 4242"), std::string::npos) << other.err;
  auto joined = RunCommand(
      {NsjoinBinary(), "--socket", socket, "--broker-uid", "4242", "-t", "web1", "-u", "hostname"});
  EXPECT_EQ(joined.status, 0) << joined.err << dir.Join("broker.log");
  EXPECT_EQ(joined.out, "web1-host\n");
  auto bad = RunCommand({NsjoinBinary(), "--broker-uid", "x", "-t", "web1"});
  EXPECT_EQ(bad.status, 125);
  EXPECT_TRUE(bad.err.starts_with("nsjoin: invalid broker uid 'x'")) << bad.err;
}

TEST_F(NsjoinTest, LibraryRunsInTheNetworkNamespaceThroughTheBroker) {
  auto client = Client::Connect(broker_->socket());
  ASSERT_OK(client);
  std::vector<NsKind> kinds = {NsKind::kNet};
  auto grant = client->Join("web1", kinds);
  ASSERT_OK(grant);
  ino_t outside = NsInode("/proc/thread-self/ns/net");
  auto sock =
      RunInNetwork(*grant, [] { return UniqueFd(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0)); });
  ASSERT_OK(sock);
  UniqueFd netns(ioctl(sock->get(), SIOCGSKNS));
  struct stat st{};
  ASSERT_EQ(fstat(netns.get(), &st), 0);
  EXPECT_EQ(std::to_string(st.st_ino), Inode(*web1_, "net"));
  EXPECT_EQ(NsInode("/proc/thread-self/ns/net"), outside);
}

}  // namespace
}  // namespace nsbroker::testing
