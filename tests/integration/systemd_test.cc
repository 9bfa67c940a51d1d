// The broker under systemd's protocols, played by the test with the real nsbrokerd: a real
// NOTIFY_SOCKET listener (READY, RELOADING with MONOTONIC_USEC, STATUS, STOPPING), sockets
// passed as LISTEN_FDS told apart by LISTEN_FDNAMES, and JOURNAL_STREAM priorities.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "nsbroker/client.h"
#include "nsbroker/uwsgi.h"

namespace nsbroker::testing {
namespace {

UniqueFd UnixSocket(const std::string& path, int type, bool listening) {
  UniqueFd fd(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << path;
  if (listening) {
    EXPECT_EQ(listen(fd.get(), 16), 0);
  }
  return fd;
}

std::uint64_t MonotonicUsec() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000 +
         static_cast<std::uint64_t>(now.tv_nsec) / 1000;
}

// One sd_notify datagram as KEY -> VALUE.
using State = std::map<std::string, std::string>;

class SystemdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    notify_ = UnixSocket(dir_.Join("notify"), SOCK_DGRAM, false);
  }

  // Starts nsbrokerd -c CONFIG as systemd would: NOTIFY_SOCKET, `passed` at fds 3.. with
  // LISTEN_FDNAMES `names`, stderr to broker.log (named in JOURNAL_STREAM when `journal`).
  void Start(const std::string& config, std::vector<UniqueFd> passed = {},
             const std::string& names = "", bool journal = false) {
    dir_.Write("broker.conf", config);
    UniqueFd log(
        open(dir_.Join("broker.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    struct stat st;
    ASSERT_EQ(fstat(log.get(), &st), 0);
    std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    std::string binary = BrokerBinary(), conf = dir_.Join("broker.conf");
    std::string notify = dir_.Join("notify");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(log.get(), STDERR_FILENO);
      // Moved above the range first, so that dup2 onto 3.. never hits one still to move.
      std::vector<int> high;
      for (UniqueFd& fd : passed) high.push_back(fcntl(fd.get(), F_DUPFD, 100));
      for (std::size_t i = 0; i < high.size(); ++i) dup2(high[i], 3 + static_cast<int>(i));
      if (!passed.empty()) {
        setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
        setenv("LISTEN_FDS", std::to_string(passed.size()).c_str(), 1);
        setenv("LISTEN_FDNAMES", names.c_str(), 1);
      }
      setenv("NOTIFY_SOCKET", notify.c_str(), 1);
      if (journal) setenv("JOURNAL_STREAM", stream.c_str(), 1);
      execl(binary.c_str(), binary.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    broker_ = ChildProcess(pid);
  }

  // The next sd_notify datagram (at most 10 s).
  State Next() {
    pollfd p{.fd = notify_.get(), .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 10000) != 1) {
      ADD_FAILURE() << "no sd_notify message; log:\n" << Log();
      return {};
    }
    char buf[4096];
    ssize_t n = recv(notify_.get(), buf, sizeof buf, 0);
    State state;
    std::istringstream lines(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0));
    for (std::string line; std::getline(lines, line);) {
      auto eq = line.find('=');
      state[line.substr(0, eq)] = eq == std::string::npos ? "" : line.substr(eq + 1);
    }
    return state;
  }

  std::string Log() const {
    std::ifstream in(dir_.Join("broker.log"));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string SelfConfig(const std::string& extra = "") const {
    return WithTestRunAs("socket: \"" + dir_.Join("nsb.sock") + "\"\n" +
                         "target { name: \"self\" self: true }\n" + extra);
  }

  TempDir dir_;
  UniqueFd notify_;
  ChildProcess broker_;
};

TEST_F(SystemdTest, ReloadIsReloadingWithMonotonicUsecThenReadyEvenWhenItFails) {
  Start(SelfConfig());
  State ready = Next();
  EXPECT_EQ(ready["READY"], "1");
  EXPECT_EQ(ready["STATUS"],
            "1 targets (1 available); 0 grants, 0 denials, 0 errors, 0 connections");
  auto client = Client::Connect(dir_.Join("nsb.sock"));
  ASSERT_TRUE(client.has_value()) << client.error().message;
  ASSERT_TRUE(client->Join("self").has_value());

  // A good reload: RELOADING=1 stamped between the signal and its receipt, then READY=1.
  dir_.Write("broker.conf", SelfConfig("target { name: \"again\" self: true }\n"));
  std::uint64_t before = MonotonicUsec();
  ASSERT_EQ(kill(broker_.pid(), SIGHUP), 0);
  State reloading = Next();
  std::uint64_t after = MonotonicUsec();
  EXPECT_EQ(reloading["RELOADING"], "1");
  std::uint64_t stamp = std::stoull(reloading["MONOTONIC_USEC"]);
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);
  State reloaded = Next();
  EXPECT_EQ(reloaded["READY"], "1");
  EXPECT_EQ(reloaded["STATUS"],
            "2 targets (2 available); 1 grants, 0 denials, 0 errors, 1 connections");

  // A failed reload still ends with READY=1, or `systemctl reload` would hang.
  dir_.Write("broker.conf", "target { name: \"broken\" ");
  ASSERT_EQ(kill(broker_.pid(), SIGHUP), 0);
  EXPECT_EQ(Next()["RELOADING"], "1");
  EXPECT_EQ(Next()["READY"], "1");
  EXPECT_NE(Log().find("reload failed, keeping the old config"), std::string::npos) << Log();

  EXPECT_EQ(broker_.Stop(SIGTERM), 0);
  EXPECT_EQ(Next()["STOPPING"], "1");
}

TEST_F(SystemdTest, SocketActivationTellsNativeAndUwsgiApartByName) {
  // Passed in the "wrong" order: only LISTEN_FDNAMES says which is which.
  std::vector<UniqueFd> passed;
  passed.push_back(UnixSocket(dir_.Join("uwsgi.sock"), SOCK_STREAM, true));
  passed.push_back(UnixSocket(dir_.Join("native.sock"), SOCK_SEQPACKET, true));
  Start(SelfConfig("uwsgi_target: \"self\"\n"), std::move(passed), "uwsgi:native");
  ASSERT_EQ(Next()["READY"], "1") << Log();
  auto client = Client::Connect(dir_.Join("native.sock"));
  ASSERT_TRUE(client.has_value()) << client.error().message;
  auto grant = client->Join("self", std::vector<NsKind>{NsKind::kUts});
  ASSERT_TRUE(grant.has_value()) << grant.error().message;
  auto uwsgi = ReceiveUwsgiGrant(dir_.Join("uwsgi.sock"));
  ASSERT_TRUE(uwsgi.has_value()) << uwsgi.error().message;
  EXPECT_NE(uwsgi->Find(NsKind::kNet), nullptr);
  EXPECT_FALSE(WaitForSocket(dir_.Join("nsb.sock"), std::chrono::milliseconds(0)))
      << "bound the config's socket although systemd passed one";
  EXPECT_NE(Log().find("on the socket systemd passed"), std::string::npos) << Log();
}

TEST_F(SystemdTest, PassedSocketsOfUnknownNameOrWrongTypeAreErrors) {
  std::vector<UniqueFd> passed;
  passed.push_back(UnixSocket(dir_.Join("native.sock"), SOCK_SEQPACKET, true));
  passed.push_back(UnixSocket(dir_.Join("other.sock"), SOCK_SEQPACKET, true));
  Start(SelfConfig(), std::move(passed), "native:metrics");
  EXPECT_EQ(broker_.Wait(), 1);
  EXPECT_NE(Log().find("LISTEN_FDS: descriptor 4 named 'metrics': FileDescriptorName= must be "
                       "'native' or 'uwsgi'"),
            std::string::npos)
      << Log();

  passed.clear();
  passed.push_back(UnixSocket(dir_.Join("stream.sock"), SOCK_STREAM, true));
  Start(SelfConfig(), std::move(passed), "native");
  EXPECT_EQ(broker_.Wait(), 1);
  EXPECT_NE(Log().find("descriptor 3 named 'native' is not a listening AF_UNIX SOCK_SEQPACKET"),
            std::string::npos)
      << Log();

  passed.clear();
  passed.push_back(UnixSocket(dir_.Join("u.sock"), SOCK_STREAM, true));
  Start(SelfConfig(), std::move(passed), "uwsgi");
  EXPECT_EQ(broker_.Wait(), 1);
  EXPECT_NE(Log().find("systemd passed a uwsgi socket, but"), std::string::npos) << Log();
}

TEST_F(SystemdTest, JournalStreamGetsPriorityPrefixes) {
  Start(SelfConfig(), {}, "", true);
  ASSERT_EQ(Next()["READY"], "1") << Log();
  auto client = Client::Connect(dir_.Join("nsb.sock"));
  ASSERT_TRUE(client.has_value()) << client.error().message;
  ASSERT_TRUE(client->Join("self").has_value());
  dir_.Write("broker.conf", "target {");
  ASSERT_EQ(kill(broker_.pid(), SIGHUP), 0);
  EXPECT_EQ(Next()["RELOADING"], "1");
  EXPECT_EQ(Next()["READY"], "1");
  std::string log = Log();
  EXPECT_NE(log.find("<6>nsbrokerd: serving 1 targets"), std::string::npos) << log;
  EXPECT_NE(log.find("<5>nsbroker-audit "), std::string::npos) << log;
  EXPECT_NE(log.find("<4>nsbrokerd: reload failed"), std::string::npos) << log;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(line.size() > 3 && line[0] == '<' && line[2] == '>') << line;
  }
}

}  // namespace
}  // namespace nsbroker::testing
