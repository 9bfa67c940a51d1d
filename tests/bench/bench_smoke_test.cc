// The benchmark programs work: nsbroker-bench drives grants through nsbroker-ceiling against a
// real target. Checks counts and descriptors only; no timing is ever asserted.
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>

#include "harness.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

std::string BenchBinary() { return NSB_BINARY_DIR "/tests/bench/nsbroker-bench"; }
std::string CeilingBinary() { return NSB_BINARY_DIR "/tests/bench/nsbroker-ceiling"; }
std::string E2eBinary() { return NSB_BINARY_DIR "/tests/bench/nsbroker-e2e"; }

// "k=v k=v" -> map (the --kv line).
std::map<std::string, std::string> ParseKv(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in(line);
  std::string word;
  while (in >> word) {
    auto eq = word.find('=');
    if (eq != std::string::npos) out[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return out;
}

ChildProcess StartCeiling(const std::string& socket, pid_t target, const std::string& kinds) {
  pid_t pid = fork();
  if (pid == 0) {
    std::string pid_text = std::to_string(target);
    execl(CeilingBinary().c_str(), "nsbroker-ceiling", "--socket", socket.c_str(), "--pid",
          pid_text.c_str(), "--kinds", kinds.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return ChildProcess(pid);
}

class BenchSmoke : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto target = Target::Start();
    ASSERT_OK(target);
    target_ = std::move(*target);
    socket_ = dir_.Join("ceiling.sock");
    ceiling_ = StartCeiling(socket_, target_.pid(), "net,uts,ipc,mnt,root");
    ASSERT_TRUE(WaitForSocket(socket_)) << "nsbroker-ceiling did not start";
  }

  std::map<std::string, std::string> Bench(const std::string& mode, const std::string& clients) {
    auto r = RunCommand({BenchBinary(), "--socket", socket_, "--mode", mode, "--clients", clients,
                         "--count", "100", "--expect-fds", "5", "--label", "ceiling", "--kv"});
    EXPECT_EQ(r.status, 0) << r.err;
    return ParseKv(r.out);
  }

  TempDir dir_;
  Target target_;
  std::string socket_;
  ChildProcess ceiling_;
};

TEST_F(BenchSmoke, OneClientConnectModeGetsHundredGrants) {
  auto kv = Bench("connect", "1");
  EXPECT_EQ(kv["server"], "ceiling");
  EXPECT_EQ(kv["grants"], "100");
  EXPECT_EQ(kv["errors"], "0");
  EXPECT_EQ(kv["fds_per_grant"], "5.00");
  EXPECT_EQ(kv["samples"], "100");
}

TEST_F(BenchSmoke, PersistentClientsShareTheCount) {
  auto kv = Bench("persistent", "2");
  EXPECT_EQ(kv["grants"], "100");
  EXPECT_EQ(kv["errors"], "0");
  EXPECT_EQ(kv["mode"], "persistent");
}

TEST_F(BenchSmoke, CeilingStopsCleanlyAndRemovesItsSocket) {
  EXPECT_EQ(ceiling_.Stop(SIGTERM), 0);
  EXPECT_NE(access(socket_.c_str(), F_OK), 0);
}

TEST_F(BenchSmoke, NoServerIsAnErrorNotAHang) {
  ceiling_.Stop(SIGTERM);
  auto r = RunCommand({BenchBinary(), "--socket", socket_, "--count", "3", "--kv"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("connect " + socket_), std::string::npos) << r.err;
  EXPECT_EQ(ParseKv(r.out)["errors"], "3");
}

// nsbroker-e2e runs every command once per round and reports each; a failing command stops it.
TEST(E2eSmoke, RunsEachCommandAndReportsWallAndCpuTime) {
  auto r = RunCommand({E2eBinary(), "--runs", "3", "--command", "true=/bin/true", "--command",
                       "echo=/bin/echo to /dev/null"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream lines(r.out);
  std::string first, second;
  ASSERT_TRUE(std::getline(lines, first) && std::getline(lines, second)) << r.out;
  auto kv = ParseKv(first);
  EXPECT_EQ(kv["label"], "true");
  EXPECT_EQ(kv["runs"], "3");
  EXPECT_FALSE(kv["wall_median_us"].empty());
  EXPECT_FALSE(kv["cpu_median_us"].empty());
  EXPECT_EQ(ParseKv(second)["label"], "echo");
  EXPECT_EQ(r.out.find("to /dev/null"), std::string::npos) << "the commands' stdout leaked";
}

TEST(E2eSmoke, AFailingCommandStopsTheRun) {
  auto r = RunCommand({E2eBinary(), "--runs", "3", "--command", "false=/bin/false"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("false: /bin/false failed"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace nsbroker::testing
