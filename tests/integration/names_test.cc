// Targets by name against the real nsbrokerd: OCI containers run by Debian's runc and crun in
// a busybox-static rootfs made here, real cgroup2 groups made here, and fake runtimes that hang
// or print garbage. Names carry this process's pid: other suites run at the same time.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "harness.h"
#include "oci_container.h"
#include "raw_client.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

using namespace std::chrono_literals;

ino_t FdInode(const UniqueFd& fd) {
  struct stat st{};
  fstat(fd.get(), &st);
  return st.st_ino;
}

// Polls `done` every 20 ms until it holds or `deadline` passes; the last answer.
bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds deadline = 10s) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return done();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::string Join(const Broker& broker, const std::string& target, ino_t* inode = nullptr) {
  auto reply = CallOnce(broker.socket(), JoinRequest(target, {v1::UTS}));
  if (inode != nullptr) *inode = reply && reply->fds.size() == 1 ? FdInode(reply->fds[0]) : 0;
  return Summary(reply);
}

// One target's line of Status.
std::optional<v1::Status::TargetState> StateOf(const Broker& broker, const std::string& name) {
  auto status = CallOnce(broker.socket(), StatusRequest());
  if (!status) return std::nullopt;
  for (const auto& t : status->response.status().targets()) {
    if (t.name() == name) return t;
  }
  return std::nullopt;
}

std::string OciTarget(const std::string& name, const Container& c) {
  return "target { name: \"" + name + "\" " + OciConfig(c) + " }\n";
}

class Containers : public ::testing::TestWithParam<Runtime> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    ASSERT_FALSE(GetParam().path.empty())
        << GetParam().name << " is not installed (scripts/lib.sh installs it)";
  }
  // Ids carry the runtime: runc and crun name a container's cgroup after its id, and the two
  // cases run at the same time.
  std::string Id(const std::string& what) const {
    return "nsb-" + GetParam().name + "-" + what + "-" + std::to_string(getpid());
  }
};

std::string RuntimeName(const ::testing::TestParamInfo<Runtime>& param) { return param.param.name; }

INSTANTIATE_TEST_SUITE_P(Runtimes, Containers, ::testing::ValuesIn(Runtimes()), RuntimeName);

TEST_P(Containers, ContainerIsJoinedByIdAndFollowedAcrossARestart) {
  Container box(GetParam(), Id("box"));
  pid_t first = box.Run("first");
  ASSERT_GT(first, 0);
  auto broker = Broker::Start(OciTarget("box", box));
  ASSERT_OK(broker);
  ino_t inode = 0;
  ASSERT_TRUE(WaitUntil([&] { return Join(*broker, "box", &inode) == "GRANT uts"; }))
      << broker->log();
  EXPECT_EQ(inode, NsInode("/proc/" + std::to_string(first) + "/ns/uts"));
  EXPECT_TRUE(broker->WaitForLog("pid " + std::to_string(first) + " of container " + box.id()))
      << broker->log();

  // Killed, deleted and run again under the same id: the broker finds it by itself.
  box.KillAndDelete();
  pid_t second = box.Run("second");
  ASSERT_GT(second, 0);
  ino_t want = NsInode("/proc/" + std::to_string(second) + "/ns/uts");
  ASSERT_NE(want, NsInode("/proc/self/ns/uts"));
  ASSERT_TRUE(WaitUntil([&] {
    return Join(*broker, "box", &inode) == "GRANT uts" && inode == want;
  })) << broker->log();
  auto state = StateOf(*broker, "box");
  ASSERT_TRUE(state.has_value());
  EXPECT_TRUE(state->available());
  EXPECT_EQ(state->pid(), second);
  EXPECT_GE(state->restarts(), 1u);
  EXPECT_GT(state->since_unix_ms(), 0);
  EXPECT_EQ(broker->log().find("reload"), std::string::npos);
}

TEST_P(Containers, StoppedContainerIsUnavailableWithItsReason) {
  Container box(GetParam(), Id("stopped"));
  ASSERT_GE(box.Run("stopped", "\"true\""), 0);            // 0 once "true" is done
  ASSERT_TRUE(WaitUntil([&] { return box.Pid() == 0; }));  // its init has exited: "stopped"
  auto broker = Broker::Start(OciTarget("box", box));
  ASSERT_OK(broker);
  std::string reason = "container " + box.id() + " is stopped";
  std::string answer;
  ASSERT_TRUE(WaitUntil([&] {
    answer = Join(*broker, "box");
    return answer.find(reason) != std::string::npos;
  })) << answer;
  EXPECT_EQ(answer.rfind("UNAVAILABLE: target 'box' is unavailable: ", 0), 0u) << answer;

  // --check-config asks the runtime too: the state now is a warning.
  RunResult check = RunCommand({BrokerBinary(), "--check-config", "-c", broker->config_path()});
  EXPECT_EQ(check.status, 0) << check.err;
  EXPECT_NE(check.err.find("warning: unavailable: "), std::string::npos) << check.err;
  EXPECT_NE(check.err.find(reason), std::string::npos) << check.err;
}

TEST(Names, AHungOrGarbledRuntimeLeavesTheBrokerServing) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  auto script = [&](const std::string& name, const std::string& body, int timeout_ms = 300) {
    dir.Write(name, "#!/bin/sh\n" + body + "\n");
    chmod(dir.Join(name).c_str(), 0755);
    return "target { name: \"" + name + "\" oci { id: \"x\" runtime: \"" + dir.Join(name) +
           "\" timeout_ms: " + std::to_string(timeout_ms) + " } }\n";
  };
  auto broker = Broker::Start(script("hangs", "exec sleep 100", 1000) +
                              script("garbage", "echo '{\"pid\": 1, \"status\": \"running\"'") +
                              script("chatty", "exec yes") +
                              script("fails", "echo 'container x is lost' >&2; exit 3") +
                              "target { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  std::map<std::string, std::string> reasons = {
      {"hangs", "state x timed out after 1000 ms"},
      {"garbage", "runtime output is not JSON: expected '}' at byte 31"},
      {"chatty", "state x printed more than 64 KiB"},
      {"fails", "state x failed (exit 3): container x is lost"}};
  for (const auto& [name, reason] : reasons) {
    std::string answer;
    EXPECT_TRUE(WaitUntil([&] {
      answer = Join(*broker, name);
      // Served meanwhile, and at once: nothing waits for a runtime.
      auto start = std::chrono::steady_clock::now();
      EXPECT_EQ(Join(*broker, "self"), "GRANT uts");
      EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
      return answer.find(reason) != std::string::npos;
    })) << name
        << ": " << answer;
  }
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A reload in the middle of asking the runtime asks again for the new catalog, rather than
// leaving the target "resolving" for good.
TEST(Names, AReloadWhileTheRuntimeIsAskedAsksAgain) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  dir.Write("slow", "#!/bin/sh\nexec sleep 100\n");
  chmod(dir.Join("slow").c_str(), 0755);
  auto broker = Broker::Start("target { name: \"slow\" oci { id: \"x\" runtime: \"" +
                              dir.Join("slow") + "\" timeout_ms: 700 } }\n");
  ASSERT_OK(broker);
  ASSERT_TRUE(broker->WaitForLog("serving")) << broker->log();
  kill(broker->pid(), SIGHUP);
  ASSERT_TRUE(broker->WaitForLog("reloaded")) << broker->log();
  std::string answer;
  EXPECT_TRUE(WaitUntil([&] {
    answer = Join(*broker, "slow");
    return answer.find("timed out after 700 ms") != std::string::npos;
  })) << answer;
}

// The cgroup2 mount as the broker finds it: /sys/fs/cgroup, or .../unified on hybrid hosts.
std::string Cgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (root == "/" && line.find(" - cgroup2 ") != std::string::npos) return point;
  }
  return {};
}

// A cgroup made for the test; its processes are killed and it is removed at the end.
class Group {
 public:
  explicit Group(const std::string& name) : path_("/" + name), dir_(Cgroup2Mount() + path_) {
    EXPECT_EQ(mkdir(dir_.c_str(), 0755), 0) << dir_ << ": " << std::strerror(errno);
  }
  ~Group() {
    std::ofstream(dir_ + "/cgroup.kill") << "1";  // Linux 5.14; the tests kill theirs anyway
    WaitUntil([&] { return rmdir(dir_.c_str()) == 0 || errno == ENOENT; }, 5s);
  }
  const std::string& path() const { return path_; }
  bool Add(pid_t pid) const {
    std::ofstream procs(dir_ + "/cgroup.procs");
    procs << pid << std::endl;
    return procs.good();
  }

 private:
  std::string path_;
  std::string dir_;
};

TEST(Names, CgroupServesItsOldestProcessAndFollowsIt) {
  ASSERT_TRUE(RequireRoot());
  ASSERT_FALSE(Cgroup2Mount().empty()) << "no cgroup2 mount";
  Group group("nsb-test-" + std::to_string(getpid()));
  auto older = Target::Start({.hostname = "older"});
  ASSERT_OK(older);
  auto younger = Target::Start({.hostname = "younger"});
  ASSERT_OK(younger);
  ASSERT_TRUE(group.Add(younger->pid()));  // the order of joining is not the age
  ASSERT_TRUE(group.Add(older->pid()));
  auto broker = Broker::Start("target { name: \"grp\" cgroup: \"" + group.path() + "\" }\n");
  ASSERT_OK(broker);
  ino_t inode = 0;
  ASSERT_EQ(Join(*broker, "grp", &inode), "GRANT uts");
  EXPECT_EQ(inode, NsInode(older->NsPath("uts")));
  EXPECT_TRUE(
      broker->WaitForLog("pid " + std::to_string(older->pid()) + " of cgroup " + group.path()))
      << broker->log();

  // Its process replaced: the next oldest is served.
  older->Kill();
  ino_t want = NsInode(younger->NsPath("uts"));
  ASSERT_TRUE(WaitUntil([&] {
    return Join(*broker, "grp", &inode) == "GRANT uts" && inode == want;
  })) << broker->log();
  auto state = StateOf(*broker, "grp");
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->pid(), younger->pid());
  EXPECT_EQ(state->restarts(), 1u);

  // An empty group is unavailable, and served again once a process joins it.
  younger->Kill();
  std::string answer;
  ASSERT_TRUE(WaitUntil([&] {
    answer = Join(*broker, "grp");
    return answer.find("cgroup " + group.path() + " has no process") != std::string::npos;
  })) << answer;
  auto third = Target::Start({.hostname = "third"});
  ASSERT_OK(third);
  ASSERT_TRUE(group.Add(third->pid()));
  want = NsInode(third->NsPath("uts"));
  ASSERT_TRUE(WaitUntil([&] {
    return Join(*broker, "grp", &inode) == "GRANT uts" && inode == want;
  })) << broker->log();
  third->Kill();
}

// The joiners need nothing new: nsjoin on the native socket and the real uwsgi on the uWSGI
// listener join a group by name, and the audit line says which process that was.
TEST(Names, NsjoinAndUwsgiJoinAGroupByName) {
  ASSERT_TRUE(RequireRoot());
  Group group("nsb-joiners-" + std::to_string(getpid()));
  auto member = Target::Start({.hostname = "member"});
  ASSERT_OK(member);
  ASSERT_TRUE(group.Add(member->pid()));
  TempDir dir;
  std::string uwsgi = dir.Join("uwsgi.sock");
  auto broker = Broker::Start("socket: \"" + dir.Join("nsb.sock") + "\"\nuwsgi_socket: \"" + uwsgi +
                              "\"\nuwsgi_target: \"grp\"\ntarget { name: \"grp\" cgroup: \"" +
                              group.path() + "\" }\n");
  ASSERT_OK(broker);
  ASSERT_TRUE(broker->WaitForLog("to uWSGI")) << broker->log();
  RunResult n = RunCommand(
      {NsjoinBinary(), "--socket", broker->socket(), "-t", "grp", "-u", "--", "hostname"});
  EXPECT_EQ(n.status, 0) << n.err;
  EXPECT_EQ(n.out, "member\n");
  RunResult u = RunCommand(
      {"uwsgi", "--setns", uwsgi, "--hook-as-root", "exec:hostname", "--hook-as-root", "exit:0"},
      {.timeout = 10s});
  EXPECT_EQ(u.status, 0) << u.err;
  EXPECT_EQ(u.out, "member\n") << u.err;
  std::string resolved = "pid " + std::to_string(member->pid()) + " of cgroup " + group.path();
  EXPECT_TRUE(broker->WaitForLog("decision=grant target=grp kinds=uts peer_pid=")) << broker->log();
  std::string log = broker->log();
  std::size_t first = log.find(resolved);
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_NE(log.find(resolved, first + 1), std::string::npos) << log;  // both grants
  member->Kill();
}

TEST(Names, MissingGroupAndUnitAreUnavailableWithTheirPath) {
  ASSERT_TRUE(RequireRoot());
  std::string missing = "nsb-missing-" + std::to_string(getpid());
  auto broker = Broker::Start("target { name: \"g\" cgroup: \"/" + missing + "\" }\n" +
                              "target { name: \"u\" unit: \"" + missing + ".service\" }\n");
  ASSERT_OK(broker);
  EXPECT_NE(Join(*broker, "g").find("cgroup /" + missing + " does not exist"), std::string::npos);
  EXPECT_NE(Join(*broker, "u").find("cgroup /system.slice/" + missing + ".service does not exist"),
            std::string::npos);
}

}  // namespace
}  // namespace nsbroker::testing
