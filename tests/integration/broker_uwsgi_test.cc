// The real nsbrokerd with uwsgi_socket, a real target in fresh namespaces, and the real uwsgi
// binary as the joiner (uwsgi --setns): policy and audit exactly as for native requests.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "harness.h"
#include "nsbroker/uwsgi.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

class BrokerUwsgi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto target = Target::Start({.hostname = "uwsgi-target"});
    ASSERT_OK(target);
    target_ = std::make_unique<Target>(std::move(*target));
  }

  // `socket` comes first: the harness looks for the first "socket:" in the text.
  void StartBroker(const std::string& allow = "", const std::string& extra = "") {
    auto broker = Broker::Start("socket: \"" + dir_.Join("nsb.sock") +
                                "\"\n"
                                "socket_mode: \"0666\"\n"
                                "uwsgi_socket: \"" +
                                uwsgi_socket_ +
                                "\"\n"
                                "uwsgi_target: \"box\"\n"
                                "target { name: \"box\" pid: " +
                                std::to_string(target_->pid()) + " " + allow + " }\n" + extra);
    ASSERT_OK(broker);
    broker_ = std::make_unique<Broker>(std::move(*broker));
    ASSERT_TRUE(broker_->WaitForLog("to uWSGI")) << broker_->log();
  }

  // uWSGI retries forever when it gets nothing: the timeout bounds a failure.
  RunResult Uwsgi(const RunOptions& options = {.timeout = std::chrono::seconds(10)}) {
    return RunCommand({"uwsgi", "--setns", uwsgi_socket_, "--hook-as-root", "exec:hostname",
                       "--hook-as-root", "exit:0"},
                      options);
  }

  TempDir dir_;
  std::string uwsgi_socket_ = dir_.Join("uwsgi.sock");
  std::unique_ptr<Target> target_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(BrokerUwsgi, RealUwsgiJoinsTheTargetAndIsAudited) {
  StartBroker();
  RunResult r = Uwsgi();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "uwsgi-target\n") << r.err;
  EXPECT_NE(r.err.find("joining namespaces from " + uwsgi_socket_), std::string::npos) << r.err;
  EXPECT_TRUE(
      broker_->WaitForLog("decision=grant target=box kinds=cgroup,ipc,mnt,net,pid,time,uts"))
      << broker_->log();
}

TEST_F(BrokerUwsgi, SendsEachNamespaceOnceMntLastNeverUser) {
  StartBroker();
  auto grant = ReceiveUwsgiGrant(uwsgi_socket_);
  ASSERT_OK(grant);
  std::vector<NsKind> kinds;
  for (const GrantEntry& e : grant->entries) {
    kinds.push_back(e.kind);
    std::string name(KindName(e.kind));
    EXPECT_EQ(e.inode, NsInode(target_->NsPath(name))) << name;
  }
  EXPECT_EQ(kinds, (std::vector<NsKind>{NsKind::kNet, NsKind::kUts, NsKind::kIpc, NsKind::kPid,
                                        NsKind::kCgroup, NsKind::kTime, NsKind::kMnt}));
}

TEST_F(BrokerUwsgi, NsjoinUwsgiWorksAgainstTheBroker) {
  StartBroker();
  RunResult r = RunCommand({NsjoinBinary(), "--uwsgi", uwsgi_socket_, "-u", "-n", "--", "sh", "-c",
                            "hostname; readlink /proc/self/ns/net"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "uwsgi-target\nnet:[" + std::to_string(NsInode(target_->NsPath("net"))) + "]\n");
}

// Everything a peer reads until EOF (uWSGI's server closes right after its greeting, so
// clients may read until EOF). A denied peer: EOF, with no byte and no descriptor.
struct Seen {
  int bytes = -1;
  int fds = -1;
};
Seen ConnectAs(uid_t uid, const std::string& path) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return {};
  UniqueFd r(pipefd[0]), w(pipefd[1]);
  pid_t pid = fork();
  if (pid < 0) return {};
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(1);
    }
    UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(2);
    Seen seen{0, 0};
    char buf[64];
    char control[CMSG_SPACE(64 * sizeof(int))];
    for (;;) {
      iovec iov{buf, sizeof buf};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = recvmsg(sock.get(), &msg, MSG_CMSG_CLOEXEC);
      if (n <= 0) break;
      seen.bytes += static_cast<int>(n);
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        seen.fds += static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      }
    }
    if (write(w.get(), &seen, sizeof seen) != sizeof seen) _exit(3);
    _exit(0);
  }
  ChildProcess child(pid);
  w.reset();
  Seen seen;
  if (read(r.get(), &seen, sizeof seen) != sizeof seen) return {};
  child.Wait();
  return seen;
}

TEST_F(BrokerUwsgi, DeniedUidGetsNothingAndAnAuditDenyLine) {
  StartBroker();
  Seen seen = ConnectAs(65534, uwsgi_socket_);
  EXPECT_EQ(seen.bytes, 0);
  EXPECT_EQ(seen.fds, 0);
  EXPECT_TRUE(broker_->WaitForLog("decision=deny target=box"));
  EXPECT_NE(broker_->log().find("peer_uid=65534"), std::string::npos) << broker_->log();
  EXPECT_NE(broker_->log().find("reason=\"no allow rule matches\""), std::string::npos)
      << broker_->log();
}

TEST_F(BrokerUwsgi, AllowedUidGetsOnlyItsKinds) {
  StartBroker("allow { uid: 65534 kinds: [UTS, NET] }");
  Seen seen = ConnectAs(65534, uwsgi_socket_);
  EXPECT_EQ(seen.bytes, 15);
  EXPECT_EQ(seen.fds, 2);
  EXPECT_TRUE(broker_->WaitForLog("decision=grant target=box kinds=net,uts")) << broker_->log();
  EXPECT_NE(broker_->log().find("peer_uid=65534"), std::string::npos) << broker_->log();
}

// A rootless target exposes its user namespace; uWSGI must never get it (root entering it
// first would lose its power over what follows), and still joins everything else.
TEST_F(BrokerUwsgi, RootlessTargetsUserNamespaceIsNeverSent) {
  auto rootless = Target::Start({.hostname = "rootless-box", .user_owner_uid = 65534});
  ASSERT_OK(rootless);
  *target_ = std::move(*rootless);
  StartBroker();
  auto grant = ReceiveUwsgiGrant(uwsgi_socket_);
  ASSERT_OK(grant);
  EXPECT_EQ(grant->entries.size(), 7u);
  for (const GrantEntry& e : grant->entries) EXPECT_NE(e.kind, NsKind::kUser);
  RunResult r = Uwsgi();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "rootless-box\n") << r.err;
}

// A client that reads, closes and reconnects at once must not pile up connections: the
// greeting goes out from the loop, where the previous connection's close is noticed too.
TEST_F(BrokerUwsgi, FastSerialClientsStayUnderTheConnectionLimit) {
  StartBroker("", "max_connections_per_uid: 2\n");
  for (int i = 0; i < 300; ++i) {
    auto grant = ReceiveUwsgiGrant(uwsgi_socket_);
    ASSERT_OK(grant) << "connection " << i << "\n" << broker_->log();
  }
  EXPECT_EQ(broker_->log().find("too many connections"), std::string::npos) << broker_->log();
}

TEST(BrokerUwsgiConfig, UwsgiSocketWithoutTargetIsRefusedAtStart) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  auto broker = Broker::Start("socket: \"" + dir.Join("nsb.sock") + "\"\nuwsgi_socket: \"" +
                              dir.Join("u.sock") + "\"\ntarget { name: \"self\" self: true }\n");
  ASSERT_FALSE(broker.has_value());
  EXPECT_NE(broker.error().message.find("needs uwsgi_target"), std::string::npos)
      << broker.error().message;
}

TEST(BrokerUwsgiConfig, BothSocketsAreRemovedOnStop) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  auto broker = Broker::Start("socket: \"" + dir.Join("nsb.sock") + "\"\nuwsgi_socket: \"" +
                              dir.Join("u.sock") +
                              "\"\nuwsgi_target: \"self\"\ntarget { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  ASSERT_TRUE(broker->WaitForLog("to uWSGI")) << broker->log();
  EXPECT_EQ(access(dir.Join("u.sock").c_str(), F_OK), 0);
  EXPECT_EQ(broker->process().Stop(SIGTERM), 0) << broker->log();
  EXPECT_NE(access(dir.Join("u.sock").c_str(), F_OK), 0);
  EXPECT_NE(access(dir.Join("nsb.sock").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace nsbroker::testing
