// The real nsbrokerd with run_as, its server inside the sandbox (broker/sandbox.h): what the
// kernel says about the server and about the root opener (which is not sandboxed), and that
// the pair still serves, reloads and stops cleanly.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "harness.h"
#include "raw_client.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

std::string StatusField(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0)
      return line.substr(line.find_first_not_of(" \t", name.size() + 1));
  }
  return "";
}

std::string Config(pid_t target, bool allow_nobody) {
  return "socket_mode: \"0666\"\nrun_as: \"nobody\"\ntarget {\n  name: \"web1\"\n  pid: " +
         std::to_string(target) + "\n" + (allow_nobody ? "  allow { uid: 65534 }\n" : "") + "}\n";
}

TEST(BrokerSandbox, RunAsServesReloadsAndStopsInsideTheSandbox) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "sandboxed"});
  ASSERT_OK(target);
  auto broker = Broker::Start(Config(target->pid(), false));
  ASSERT_OK(broker);
  auto server = broker->ServerPid();
  ASSERT_OK(server);
  pid_t pid = *server;
  EXPECT_NE(broker->log().find("sandbox: entered: "), std::string::npos) << broker->log();
  EXPECT_EQ(StatusField(pid, "NoNewPrivs"), "1");
  EXPECT_EQ(StatusField(pid, "Seccomp"), "2");
  EXPECT_EQ(StatusField(pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(StatusField(pid, "CapBnd"), "0000000000000000");
  EXPECT_NE(NsInode("/proc/" + std::to_string(pid) + "/ns/mnt"), NsInode("/proc/self/ns/mnt"));
  // The opener opens targets for it: root, in our mount namespace, no filter.
  EXPECT_EQ(StatusField(broker->pid(), "Seccomp"), "0");
  EXPECT_EQ(NsInode("/proc/" + std::to_string(broker->pid()) + "/ns/mnt"),
            NsInode("/proc/self/ns/mnt"));
  std::string socket = broker->socket();
  auto join = [&] { return Summary(CallOnce(socket, JoinRequest("web1", {v1::NET}))); };
  EXPECT_EQ(AsUser(65534, 65534, join), "NOT_FOUND: unknown target 'web1'");
  // A reload: the opener reads the file, the server parses the bytes it is sent.
  std::ofstream(broker->config_path())
      << "socket: \"" + socket + "\"\n" + Config(target->pid(), true);
  auto reloaded = broker->Reload();
  ASSERT_OK(reloaded);
  EXPECT_EQ(AsUser(65534, 65534, join), "GRANT net");
  EXPECT_EQ(join(), "GRANT net") << broker->log();
  EXPECT_EQ(StopCleanly(*broker), "");
}

}  // namespace
}  // namespace nsbroker::testing
