// The real nsjoin binary joining a real uWSGI --setns-socket server (nsjoin --uwsgi):
// entering works exactly as with a broker grant, with the same exit statuses.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <memory>
#include <string>

#include "harness.h"
#include "test_util.h"
#include "uwsgi_instance.h"

namespace nsbroker::testing {
namespace {

class NsjoinUwsgi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto started = UwsgiInstance::Start(socket_, "uwsgi-joined", dir_.Join("uwsgi.log"));
    ASSERT_OK(started);
    uwsgi_ = std::make_unique<UwsgiInstance>(std::move(*started));
  }
  void TearDown() override {
    if (uwsgi_) {
      EXPECT_EQ(uwsgi_->Stop(), 0) << uwsgi_->log();
    }
  }

  RunResult Nsjoin(std::vector<std::string> args) {
    args.insert(args.begin(), {NsjoinBinary(), "--uwsgi", socket_});
    return RunCommand(args);
  }

  TempDir dir_;
  std::string socket_ = dir_.Join("uwsgi-ns.sock");
  std::unique_ptr<UwsgiInstance> uwsgi_;
};

TEST_F(NsjoinUwsgi, UtsFlagSeesTheInstancesHostname) {
  RunResult r = Nsjoin({"-u", "--", "hostname"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "uwsgi-joined\n");
}

TEST_F(NsjoinUwsgi, NetFlagSeesTheInstancesNetworkNamespace) {
  RunResult r = Nsjoin({"-n", "--", "readlink", "/proc/self/ns/net", "/proc/self/ns/uts"});
  EXPECT_EQ(r.status, 0) << r.err;
  // Only what was asked for: uWSGI's net namespace, our own uts namespace.
  EXPECT_EQ(r.out, "net:[" + std::to_string(NsInode(uwsgi_->NsPath("net"))) + "]\nuts:[" +
                       std::to_string(NsInode("/proc/self/ns/uts")) + "]\n");
}

TEST_F(NsjoinUwsgi, AllFlagEntersEveryNamespaceItSent) {
  RunResult r = Nsjoin({"-a", "--", "sh", "-c",
                        "hostname; for k in ipc mnt net; do readlink /proc/self/ns/$k; done"});
  EXPECT_EQ(r.status, 0) << r.err;
  std::string expected = "uwsgi-joined\n";
  for (const char* kind : {"ipc", "mnt", "net"}) {
    expected += std::string(kind) + ":[" + std::to_string(NsInode(uwsgi_->NsPath(kind))) + "]\n";
  }
  EXPECT_EQ(r.out, expected);
}

TEST_F(NsjoinUwsgi, PassesOnTheCommandsExitStatus) {
  EXPECT_EQ(Nsjoin({"-u", "--", "sh", "-c", "exit 7"}).status, 7);
}

TEST_F(NsjoinUwsgi, MissingCommandIs127) {
  RunResult r = Nsjoin({"-u", "--", "/nonexistent/command"});
  EXPECT_EQ(r.status, 127) << r.err;
}

TEST_F(NsjoinUwsgi, UserNamespaceIsNotSentByUwsgi) {
  RunResult r = Nsjoin({"-U", "--", "true"});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find(socket_), std::string::npos) << r.err;
}

TEST_F(NsjoinUwsgi, RootAndTargetFlagsAreRefused) {
  for (const char* flag : {"-r", "-w"}) {
    RunResult r = Nsjoin({flag, "--", "true"});
    EXPECT_EQ(r.status, 125) << flag;
    EXPECT_NE(r.err.find("--uwsgi takes no"), std::string::npos) << r.err;
  }
  RunResult r = Nsjoin({"-t", "web", "--", "true"});
  EXPECT_EQ(r.status, 125);
}

TEST(NsjoinUwsgiErrors, NoServerIs125NamingTheSocket) {
  TempDir dir;
  std::string socket = dir.Join("nobody.sock");
  RunResult r = RunCommand({NsjoinBinary(), "--uwsgi", socket, "-u", "--", "true"});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("uwsgi " + socket + ": connect"), std::string::npos) << r.err;
}

TEST(NsjoinUwsgiErrors, ASeqpacketBrokerSocketIsNotAUwsgiServer) {
  // A native broker socket is SOCK_SEQPACKET: a stream connect to it fails clearly.
  TempDir dir;
  std::string path = dir.Join("native.sock");
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(sock.get(), 1), 0);
  RunResult r = RunCommand({NsjoinBinary(), "--uwsgi", path, "-u", "--", "true"});
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find("uwsgi " + path), std::string::npos) << r.err;
}

}  // namespace
}  // namespace nsbroker::testing
