// Privilege separation (issue 18, docs/PRIVSEP.md) against the real nsbrokerd with run_as: the
// root opener and its unprivileged server, their mutual death, reload and re-resolution
// after the drop, and a compromised server speaking the opener protocol itself.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness.h"
#include "nsbroker/kind_set.h"
#include "nsbroker/ns_kind.h"
#include "privsep_protocol.h"
#include "raw_client.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker::testing {
namespace {

// The run_as of these tests: not 65534, which the unprivileged joiners below use.
constexpr char kRunAs[] = "run_as: \"daemon\"\nsocket_mode: \"0666\"\n";

std::string PidTarget(const std::string& name, pid_t pid, const std::string& extra = "") {
  return "target { name: \"" + name + "\" pid: " + std::to_string(pid) +
         " allow { uid: 0 } allow { uid: 65534 } " + extra + "}\n";
}

ino_t FdInode(const UniqueFd& fd) {
  struct stat st;
  return fstat(fd.get(), &st) == 0 ? st.st_ino : 0;
}

std::string StatusLine(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return line;
  }
  return "";
}

// Whether `pid` exits within `timeout`, watched through a pidfd (no polling of /proc).
bool ExitsWithin(pid_t pid, std::chrono::milliseconds timeout) {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return errno == ESRCH;
  pollfd p{pidfd.get(), POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

Result<Broker> StartSplit(const std::string& targets) { return Broker::Start(kRunAs + targets); }

// A broker serving only itself, its server's pid, and its socket path.
struct Pair {
  Broker broker;
  pid_t server;
  std::string socket;
};
Result<Pair> StartSelfPair() {
  auto broker = StartSplit("target { name: \"self\" self: true allow { uid: 0 } }\n");
  if (!broker) return std::unexpected(std::move(broker.error()));
  auto server = broker->ServerPid();
  if (!server) return std::unexpected(std::move(server.error()));
  std::string socket = broker->socket();
  return Pair{std::move(*broker), *server, std::move(socket)};
}

TEST(Privsep, TheServerRunsAsRunAsAndTheOpenerStaysRoot) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "split"});
  ASSERT_OK(target);
  auto broker = StartSplit(PidTarget("web1", target->pid()));
  ASSERT_OK(broker);
  auto server = broker->ServerPid();
  ASSERT_OK(server);
  EXPECT_EQ(StatusLine(broker->pid(), "Uid:"), "Uid:\t0\t0\t0\t0");
  EXPECT_EQ(StatusLine(*server, "Uid:"), "Uid:\t1\t1\t1\t1");
  EXPECT_EQ(StatusLine(*server, "CapEff:"), "CapEff:\t0000000000000000");
  // The opener is nsbroker-opener, exec'd in place of nsbrokerd (same pid); the server is not.
  std::string exe = "/proc/" + std::to_string(broker->pid()) + "/exe";
  EXPECT_EQ(std::filesystem::read_symlink(exe), std::filesystem::path(NSB_OPENER));
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(*server) + "/exe"),
            std::filesystem::path(BrokerBinary()));
  // The server holds the listener; the opener closed its copy after the fork.
  ino_t net = NsInode(target->NsPath("net"));
  std::string socket = broker->socket();
  EXPECT_EQ(AsUser(65534, 65534,
                   [&] {
                     auto r = CallOnce(socket, JoinRequest("web1", {v1::NET}));
                     return Summary(r) + (r && FdInode(r->fds[0]) == net ? " same" : " other");
                   }),
            "GRANT net same");
}

TEST(Privsep, KillingTheOpenerStopsTheServer) {
  ASSERT_TRUE(RequireRoot());
  auto pair = StartSelfPair();
  ASSERT_OK(pair);
  UniqueFd server_fd(static_cast<int>(syscall(SYS_pidfd_open, pair->server, 0)));
  ASSERT_TRUE(server_fd.valid());
  ASSERT_EQ(kill(pair->broker.pid(), SIGKILL), 0);
  EXPECT_EQ(pair->broker.process().Wait(), 128 + SIGKILL);
  pollfd p{server_fd.get(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 10000), 1) << "the server outlived its opener: " << pair->broker.log();
}

TEST(Privsep, KillingTheServerStopsTheOpenerWithAFailure) {
  ASSERT_TRUE(RequireRoot());
  auto pair = StartSelfPair();
  ASSERT_OK(pair);
  ASSERT_EQ(kill(pair->server, SIGKILL), 0);
  // Non-zero, so that systemd (Restart=on-failure) restarts the pair.
  EXPECT_EQ(pair->broker.process().Wait(), 1) << pair->broker.log();
  EXPECT_TRUE(pair->broker.log().contains("was killed by signal 9")) << pair->broker.log();
  // The opener removed the socket file it bound.
  EXPECT_FALSE(std::filesystem::exists(pair->socket));
}

TEST(Privsep, SigtermStopsBothCleanly) {
  ASSERT_TRUE(RequireRoot());
  auto pair = StartSelfPair();
  ASSERT_OK(pair);
  EXPECT_EQ(pair->broker.process().Stop(SIGTERM), 0) << pair->broker.log();
  EXPECT_TRUE(ExitsWithin(pair->server, std::chrono::seconds(1)));
  EXPECT_FALSE(std::filesystem::exists(pair->socket));
}

TEST(Privsep, AReloadAfterTheDropOpensNewPidTargets) {
  ASSERT_TRUE(RequireRoot());
  auto first = Target::Start({.hostname = "first"});
  auto second = Target::Start({.hostname = "second"});
  ASSERT_OK(first);
  ASSERT_OK(second);
  auto broker = StartSplit(PidTarget("web1", first->pid()));
  ASSERT_OK(broker);
  // A new pid target, and web1 moved behind it: both sides number the targets alike.
  std::ofstream(broker->config_path())
      << "socket: \"" << broker->socket() << "\"\n"
      << kRunAs << PidTarget("web2", second->pid()) << PidTarget("web1", first->pid());
  auto ready = broker->Reload();
  ASSERT_OK(ready);
  EXPECT_FALSE(ready->contains("reload failed")) << *ready;
  EXPECT_TRUE(ready->contains("STATUS=2 targets (2 available)")) << *ready;
  for (auto& [name, target] : {std::pair{"web1", &*first}, std::pair{"web2", &*second}}) {
    auto reply = CallOnce(broker->socket(), JoinRequest(name, {v1::UTS, v1::NET}));
    ASSERT_EQ(Summary(reply), "GRANT net,uts") << name << ": " << broker->log();
    EXPECT_EQ(FdInode(reply->fds[0]), NsInode(target->NsPath("net"))) << name;
    EXPECT_EQ(FdInode(reply->fds[1]), NsInode(target->NsPath("uts"))) << name;
  }
}

TEST(Privsep, AReloadWhoseConfigDoesNotCompileKeepsTheOldOne) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "kept"});
  ASSERT_OK(target);
  auto broker = StartSplit(PidTarget("web1", target->pid()));
  ASSERT_OK(broker);
  // The opener parses nothing: nsbrokerd --compile-config finds the error, FILE:LINE:COL.
  std::ofstream(broker->config_path()) << "socket: \"" << broker->socket() << "\"\n"
                                       << kRunAs << "target { name: web2 }\n";
  auto ready = broker->Reload();
  ASSERT_OK(ready);
  std::string where = broker->config_path() + ":4:";
  EXPECT_TRUE(ready->contains("STATUS=reload failed: " + where)) << *ready;
  EXPECT_TRUE(broker->log().contains("reload failed, keeping the old config: " + where))
      << broker->log();
  auto reply = CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}));
  ASSERT_EQ(Summary(reply), "GRANT uts") << broker->log();
  EXPECT_EQ(FdInode(reply->fds[0]), NsInode(target->NsPath("uts")));
}

TEST(Privsep, ACompileStepThatHangsIsKilledAtItsBound) {
  ASSERT_TRUE(RequireRoot());
  auto broker = StartSplit("target { name: \"self\" self: true allow { uid: 0 } }\n");
  ASSERT_OK(broker);
  // A FIFO no one writes: nsbrokerd --compile-config blocks opening it, for good.
  std::string config = broker->config_path();
  ASSERT_EQ(unlink(config.c_str()), 0);
  ASSERT_EQ(mkfifo(config.c_str(), 0600), 0);
  auto ready = broker->Reload();
  ASSERT_OK(ready);
  EXPECT_TRUE(ready->contains("STATUS=reload failed: nsbrokerd --compile-config " + config +
                              " did not finish within 5 s"))
      << *ready;
  auto reply = CallOnce(broker->socket(), JoinRequest("self", {v1::UTS}));
  EXPECT_EQ(Summary(reply), "GRANT uts") << broker->log();
}

// nsbrokerd copied to DIR/sbin, its opener expected at DIR/<the configured relative path>:
// what start-up says when the opener is `missing`, or there but untrusted.
struct Layout {
  TempDir dir;
  std::string broker = dir.Join("sbin/nsbrokerd");
  std::string opener = dir.Join("sbin/" NSB_OPENER_RELATIVE);
  Layout() {
    std::filesystem::create_directories(dir.Join("sbin"));
    std::filesystem::copy_file(BrokerBinary(), broker);
    dir.Write("broker.conf", std::string("socket: \"") + dir.Join("broker.sock") + "\"\n" + kRunAs +
                                 "target { name: \"self\" self: true }\n");
  }
  void InstallOpener() const {
    std::filesystem::create_directories(std::filesystem::path(opener).parent_path());
    std::filesystem::copy_file(NSB_OPENER, opener);
  }
  RunResult Start() const { return RunCommand({broker, "-c", dir.Join("broker.conf")}); }
};

TEST(Privsep, AMissingOpenerFailsStartUpNamingItsPath) {
  ASSERT_TRUE(RequireRoot());
  Layout layout;
  RunResult r = layout.Start();
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(r.err.contains("the opener " + layout.opener + ": No such file or directory"))
      << r.err;
  EXPECT_FALSE(r.err.contains("server pid")) << "forked before the check: " << r.err;
}

TEST(Privsep, AnOpenerRootDoesNotOwnOrOthersMayWriteOrReplaceIsRefused) {
  ASSERT_TRUE(RequireRoot());
  Layout layout;
  layout.InstallOpener();
  ASSERT_EQ(chown(layout.opener.c_str(), 65534, 65534), 0);
  RunResult r = layout.Start();
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(r.err.contains("the opener " + layout.opener + " is owned by uid 65534, not root"))
      << r.err;
  ASSERT_EQ(chown(layout.opener.c_str(), 0, 0), 0);
  ASSERT_EQ(chmod(layout.opener.c_str(), 0775), 0);
  r = layout.Start();
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(
      r.err.contains("the opener " + layout.opener + " is writable by group or others (mode 775)"))
      << r.err;
  // A trusted file in a directory others may write is not: they could replace it.
  ASSERT_EQ(chmod(layout.opener.c_str(), 0755), 0);
  std::string dir = std::filesystem::path(layout.opener).parent_path();
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  r = layout.Start();
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(r.err.contains("the opener " + dir + " is writable by group or others (mode 777)"))
      << r.err;
}

TEST(Privsep, ARestartedPidFileTargetIsReresolved) {
  ASSERT_TRUE(RequireRoot());
  auto first = Target::Start({.hostname = "first"});
  ASSERT_OK(first);
  TempDir dir;
  dir.Write("web1.pid", std::to_string(first->pid()) + "\n");
  auto broker = StartSplit("target { name: \"web1\" pid_file: \"" + dir.Join("web1.pid") +
                           "\" allow { uid: 0 } }\n");
  ASSERT_OK(broker);
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  pid_t dead = first->pid();
  first->Kill();
  ASSERT_TRUE(broker->WaitForLog("target 'web1' is unavailable: process " + std::to_string(dead) +
                                 " exited"))
      << broker->log();
  auto second = Target::Start({.hostname = "second"});
  ASSERT_OK(second);
  dir.Write("web1.pid", std::to_string(second->pid()) + "\n");
  ASSERT_TRUE(broker->WaitForLog("target 'web1' is available")) << broker->log();
  auto reply = CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS, v1::MNT}));
  ASSERT_EQ(Summary(reply), "GRANT mnt,uts") << broker->log();
  EXPECT_EQ(FdInode(reply->fds[0]), NsInode(second->NsPath("mnt")));
  EXPECT_EQ(FdInode(reply->fds[1]), NsInode(second->NsPath("uts")));
}

// A compromised server: the test takes a duplicate of the server's end of the socketpair
// (pidfd_getfd), stops the server, and speaks the opener protocol itself.
class CompromisedServer {
 public:
  static Result<CompromisedServer> Take(Broker& broker) {
    auto server = broker.ServerPid();
    if (!server) return std::unexpected(std::move(server.error()));
    CompromisedServer c;
    c.opener_ = broker.pid();
    c.server_.reset(static_cast<int>(syscall(SYS_pidfd_open, *server, 0)));
    if (!c.server_.valid()) return SysError(ErrorCode::kInternal, "pidfd_open server");
    kill(*server, SIGSTOP);
    // Its channel: the one connected SOCK_SEQPACKET socket whose peer is the opener.
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(*server) + "/fd")) {
      int number = std::stoi(e.path().filename().string());
      UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_getfd, c.server_.get(), number, 0)));
      int type = 0, listening = 0;
      socklen_t len = sizeof type;
      if (!fd.valid() || getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
          type != SOCK_SEQPACKET) {
        continue;
      }
      len = sizeof listening;
      ucred peer{};
      socklen_t peer_len = sizeof peer;
      if (getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
          listening == 0 && getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) == 0 &&
          peer.pid == c.opener_) {
        c.channel_ = std::move(fd);
        return c;
      }
    }
    return MakeError(ErrorCode::kNotFound, "no channel in the server's descriptors");
  }

  BorrowedFd channel() const { return channel_; }
  void Send(std::string_view bytes, std::span<const int> fds = {}) {
    ASSERT_OK(SendDatagram(channel_, bytes, fds));
  }
  // The next reply within 5 s, with its descriptors; an error once the opener is gone.
  Result<Datagram> Next() {
    pollfd p{channel_.get(), POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return MakeError(ErrorCode::kUnavailable, "no reply");
    return ReceiveDatagram(channel_, 64, 64 * 1024);
  }
  // Every descriptor the opener sent until it closed the channel.
  std::size_t DrainUntilClosed() {
    std::size_t fds = 0;
    for (;;) {
      auto d = Next();
      if (!d) return fds;
      fds += d->fds.size();
    }
  }
  bool ServerKilled() const {
    pollfd p{server_.get(), POLLIN, 0};
    return poll(&p, 1, 5000) == 1;
  }

 private:
  pid_t opener_ = 0;
  UniqueFd server_;
  UniqueFd channel_;
};

privsep::Request Open(std::uint32_t index, std::uint64_t generation = 1) {
  return {.op = privsep::Op::kOpen, .index = index, .seq = 1, .generation = generation};
}

TEST(Privsep, ACompromisedServerGetsOnlyWhatTheConfigExposes) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "exposed"});
  ASSERT_OK(target);
  auto broker = StartSplit(PidTarget("web1", target->pid(), "expose: [NET]"));
  ASSERT_OK(broker);
  auto evil = CompromisedServer::Take(*broker);
  ASSERT_OK(evil);
  // What the server may have: the target's pidfd, its exposed namespace.
  evil->Send(privsep::Bytes(Open(0)));
  auto opened = evil->Next();
  ASSERT_OK(opened);
  auto reply = privsep::Decode<privsep::Reply>(opened->bytes);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->error, 0u) << privsep::Text(*reply);
  EXPECT_EQ(reply->pid, target->pid());
  ASSERT_EQ(opened->fds.size(), 1u);
  privsep::Request fetch{.op = privsep::Op::kFetch,
                         .index = 0,
                         .seq = 2,
                         .generation = 1,
                         .kinds = KindBit(NsKind::kNet)};
  evil->Send(privsep::Bytes(fetch));
  auto fetched = evil->Next();
  ASSERT_OK(fetched);
  ASSERT_EQ(fetched->fds.size(), 1u);
  EXPECT_EQ(FdInode(fetched->fds[0]), NsInode(target->NsPath("net")));
  // A kind the target does not expose ends the opener, and nothing comes with it.
  fetch.kinds = KindBit(NsKind::kMnt);
  evil->Send(privsep::Bytes(fetch));
  EXPECT_EQ(evil->DrainUntilClosed(), 0u);
  EXPECT_EQ(broker->process().Wait(), 1);
  EXPECT_TRUE(broker->log().contains("opener: a fetch of kinds")) << broker->log();
  EXPECT_TRUE(evil->ServerKilled());
}

TEST(Privsep, GarbageAndOutOfRangeRequestsEndTheOpenerWithNothingSent) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  privsep::Request fetch_all{
      .op = privsep::Op::kFetch, .index = 0, .seq = 1, .generation = 1, .kinds = 0xffffffff};
  privsep::Request unknown = Open(0);
  unknown.op = static_cast<privsep::Op>(99);
  privsep::Request short_request = Open(0);
  struct Case {
    std::string name;
    std::string bytes;
    bool with_fd = false;
    std::string logged;
  } cases[] = {
      {"garbage", std::string(100, '\x5a'), false, "malformed request"},
      {"garbage of a request's size", std::string(sizeof(privsep::Request), '\x5a'), false,
       "that is not one"},
      {"truncated", std::string(privsep::Bytes(short_request).substr(0, 20)), false,
       "that is not one"},
      {"index out of range", std::string(privsep::Bytes(Open(1))), false, "target index 1 of 1"},
      {"huge index", std::string(privsep::Bytes(Open(0xffffffff))), false, "target index"},
      {"another generation", std::string(privsep::Bytes(Open(0, 7))), false, "generation 7"},
      {"unknown op", std::string(privsep::Bytes(unknown)), false, "unknown type 99"},
      {"every kind", std::string(privsep::Bytes(fetch_all)), false, "a fetch of kinds"},
      {"a descriptor along", std::string(privsep::Bytes(Open(0))), true, "malformed request"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto broker = StartSplit(PidTarget("web1", target->pid()));
    ASSERT_OK(broker);
    auto evil = CompromisedServer::Take(*broker);
    ASSERT_OK(evil);
    int fd = devnull.get();
    evil->Send(c.bytes, c.with_fd ? std::span<const int>(&fd, 1) : std::span<const int>());
    EXPECT_EQ(evil->DrainUntilClosed(), 0u);
    EXPECT_EQ(broker->process().Wait(), 1);
    EXPECT_TRUE(broker->log().contains(c.logged)) << broker->log();
    EXPECT_TRUE(evil->ServerKilled());
  }
}

TEST(Privsep, AFloodOfRequestsNotReadEndsTheOpener) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  auto broker = StartSplit(PidTarget("web1", target->pid()));
  ASSERT_OK(broker);
  auto evil = CompromisedServer::Take(*broker);
  ASSERT_OK(evil);
  // Valid opens, never read: the replies pile up until the queue is full; the opener then
  // knows the server broke "one request at a time" and stops rather than block.
  // Blocking sends: they go on while the opener reads, and fail (EPIPE) once it is gone.
  std::size_t sent = 0;
  for (; sent < 100000; ++sent) {
    auto request = Open(0);
    request.seq = sent;
    if (!SendDatagram(evil->channel(), privsep::Bytes(request))) break;
  }
  EXPECT_EQ(broker->process().Wait(), 1);
  EXPECT_TRUE(broker->log().contains("the server does not read its replies")) << broker->log();
  // What did arrive is one pidfd per reply, no more. (The opener closed with requests
  // unread: the first receive reports ECONNRESET once, then the queued replies follow.)
  std::size_t replies = 0, fds = 0;
  for (bool reset_seen = false;;) {
    auto d = ReceiveDatagram(evil->channel(), 64, 64 * 1024);
    if (!d && d.error().sys_errno == ECONNRESET && !reset_seen) {
      reset_seen = true;
      continue;
    }
    if (!d || d->bytes.empty()) break;
    ++replies;
    fds += d->fds.size();
  }
  EXPECT_GT(replies, 0u);
  EXPECT_EQ(fds, replies);
  EXPECT_LT(replies, sent);
}

}  // namespace
}  // namespace nsbroker::testing
