// Hostile clients against the real nsbrokerd: garbage, oversized and descriptor-carrying
// datagrams, the wrong socket type, clients that never read, floods of connections,
// descriptor hoarding by one uid, silent, killed and half-closed peers. After each case a
// normal nsjoin still works and the broker's descriptor count is back to its baseline.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "harness.h"
#include "raw_client.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker::testing {
namespace {

constexpr char kHostname[] = "hostile-host";

sockaddr_un Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return addr;
}

// A connection that does not wait: connect retried while the listen backlog is full.
UniqueFd ConnectNonBlocking(const std::string& path) {
  sockaddr_un addr = Address(path);
  for (int attempt = 0; attempt < 500; ++attempt) {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) return fd;
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    if (errno != EAGAIN) return UniqueFd();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return UniqueFd();
}

// Waits until `fd` is readable (a response or EOF) for at most `ms`.
bool Readable(BorrowedFd fd, int ms) {
  pollfd p{fd.get(), POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

// recv() result on a connection the broker should have answered or closed within 5 s:
// "EOF", "DATA" or "TIMEOUT"/"ERROR".
std::string AnsweredOrClosed(BorrowedFd fd) {
  if (!Readable(fd, 5000)) return "TIMEOUT";
  char buf[kMaxMessageSize];
  ssize_t n = recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n == 0) return "EOF";
  if (n > 0) return "DATA";
  return errno == ECONNRESET ? "EOF" : std::string("ERROR ") + std::strerror(errno);
}

std::string Serialized(const v1::Request& request) {
  std::string bytes;
  request.SerializeToString(&bytes);
  return bytes;
}

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    RaiseNofile(20000);
    auto target = Target::Start({.hostname = kHostname});
    ASSERT_OK(target);
    target_.emplace(std::move(*target));
  }

  // Starts the broker with target "web1" (root, uid 65534 and uid 1000 may join it) and
  // `extra` top-level settings; records its descriptor count after one warm-up grant.
  void StartBroker(const std::string& extra = "") {
    auto broker =
        Broker::Start(std::string("socket_mode: \"0666\"\n") + extra +
                      "target {\n  name: \"web1\"\n  pid: " + std::to_string(target_->pid()) +
                      "\n  allow { uid: 65534 }\n  allow { uid: 1000 }\n}\n");
    ASSERT_OK(broker);
    broker_.emplace(std::move(*broker));
    ASSERT_EQ(Summary(CallOnce(socket(), JoinRequest("web1", {v1::NET}))), "GRANT net");
    // Once the broker has read the warm-up connection's end-of-file and closed it.
    baseline_ = QuietFdCount(*broker_);
    ASSERT_GT(baseline_, 0u);
  }

  void TearDown() override {
    if (broker_) {
      EXPECT_EQ(StopCleanly(*broker_), "");
    }
  }

  const std::string& socket() const { return broker_->socket(); }

  // The promise after every hostile case: nsjoin still enters the target, and the broker
  // holds no descriptor more than before.
  void ExpectServedAndClean() {
    auto r =
        RunCommand({NsjoinBinary(), "--socket", socket(), "-t", "web1", "-u", "--", "hostname"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, std::string(kHostname) + "\n");
    EXPECT_EQ(WaitForFdCount(broker_->ServingPid(), baseline_), baseline_) << broker_->log();
    EXPECT_EQ(kill(broker_->pid(), 0), 0) << "broker died:\n" << broker_->log();
  }

  std::optional<Target> target_;
  std::optional<Broker> broker_;
  std::size_t baseline_ = 0;
};

TEST_F(Hostile, GarbageAndZeroLengthDatagrams) {
  StartBroker();
  // Garbage: bytes that are no protobuf, and a valid protobuf of the wrong shape.
  for (std::string garbage : {std::string("\xff\xff\xff\xff\x0f", 5), std::string(1000, '\x80'),
                              std::string("GET / HTTP/1.0\r\n\r\n"), std::string("\x12\x00", 2)}) {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    ASSERT_OK(SendDatagram(*sock, garbage));
    auto reply = Receive(*sock);
    EXPECT_TRUE(Code(reply) == "INVALID_REQUEST" || Code(reply) == "UNSUPPORTED_VERSION")
        << Summary(reply);
    // The connection keeps working after a bad request.
    EXPECT_EQ(Summary(Call(*sock, JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  }
  // A zero-length datagram reads like end-of-file to a SEQPACKET receiver: the broker
  // closes that connection, promptly and without answering anything else.
  for (int i = 0; i < 20; ++i) {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    ASSERT_EQ(send(sock->get(), "", 0, MSG_NOSIGNAL), 0);
    EXPECT_EQ(AnsweredOrClosed(*sock), "EOF");
  }
  ExpectServedAndClean();
}

// protobuf logs a string field with invalid UTF-8; a peer must not be able to make the broker
// write a line per request that way.
TEST_F(Hostile, InvalidUtf8WritesNoLibraryLogLine) {
  StartBroker();
  {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    for (int i = 0; i < 20; ++i) {
      auto reply = Call(*sock, JoinRequest("web\xff\xfe"));
      EXPECT_EQ(Code(reply), "INVALID_REQUEST") << Summary(reply);
    }
  }
  EXPECT_EQ(broker_->log().find("libprotobuf"), std::string::npos) << broker_->log();
  ExpectServedAndClean();
}

TEST_F(Hostile, OversizedMessages) {
  StartBroker();
  for (std::size_t size : {kMaxMessageSize + 1, std::size_t{200 * 1024}}) {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    int sndbuf = 1 << 20;
    setsockopt(sock->get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    std::string big(size, 'x');
    ASSERT_EQ(send(sock->get(), big.data(), big.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(big.size()));
    auto reply = Receive(*sock);
    EXPECT_EQ(Code(reply), "INVALID_REQUEST") << Summary(reply);
  }
  // A well-formed request naming a target of almost 64 KiB: NOT_FOUND, and the audit line
  // does not carry the name.
  auto reply = CallOnce(socket(), JoinRequest(std::string(60000, 'w')));
  EXPECT_EQ(Code(reply), "NOT_FOUND") << Summary(reply);
  EXPECT_EQ(broker_->log().find(std::string(100, 'w')), std::string::npos);
  ExpectServedAndClean();
}

TEST_F(Hostile, StreamClientIsRefusedByTheKernel) {
  StartBroker();
  sockaddr_un addr = Address(socket());
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(fd.valid());
    errno = 0;
    EXPECT_NE(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_TRUE(errno == EPROTOTYPE || errno == ECONNREFUSED) << std::strerror(errno);
    // A datagram socket can still try sendto without connecting.
    if (type == SOCK_DGRAM) {
      EXPECT_LT(
          sendto(fd.get(), "x", 1, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
          0);
    }
  }
  ExpectServedAndClean();
}

TEST_F(Hostile, RequestsCarryingDescriptorsAreRefusedAndClosed) {
  StartBroker();
  std::vector<UniqueFd> mine;
  for (int i = 0; i < static_cast<int>(kMaxFdsPerMessage); ++i) {
    mine.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  std::vector<int> numbers;
  for (const auto& fd : mine) numbers.push_back(fd.get());
  std::string join = Serialized(JoinRequest("web1", {v1::NET}));
  for (std::size_t count : {std::size_t{1}, std::size_t{3}, kMaxFdsPerMessage}) {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    ASSERT_OK(SendDatagram(*sock, join, std::span<const int>(numbers.data(), count)));
    auto reply = Receive(*sock);
    EXPECT_EQ(Code(reply), "INVALID_REQUEST") << Summary(reply);
    EXPECT_TRUE(reply && reply->fds.empty());
    // Descriptors on a zero-length datagram are no end-of-file.
    ASSERT_OK(SendDatagram(*sock, "", std::span<const int>(numbers.data(), count)));
    reply = Receive(*sock);
    EXPECT_EQ(Code(reply), "INVALID_REQUEST") << Summary(reply);
  }
  ExpectServedAndClean();
}

TEST_F(Hostile, ClientThatSendsManyRequestsAndNeverReads) {
  StartBroker("request_timeout_ms: 500\n");
  UniqueFd flood = ConnectNonBlocking(socket());
  ASSERT_TRUE(flood.valid());
  std::string join = Serialized(JoinRequest("web1", {v1::NET}));
  // Send until the broker stops taking requests (our send buffer fills while its answers
  // pile up unread), then keep trying: once a response has waited request_timeout_ms the
  // broker drops the connection and the next send fails.
  int sent = 0;
  int error = 0;
  bool served_meanwhile = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (error == 0 && std::chrono::steady_clock::now() < deadline) {
    if (send(flood.get(), join.data(), join.size(), MSG_NOSIGNAL) >= 0) {
      ++sent;
      continue;
    }
    if (errno != EAGAIN) {
      error = errno;
      break;
    }
    if (!served_meanwhile) {
      // Meanwhile others are served.
      for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(Summary(CallOnce(socket(), JoinRequest("web1", {v1::NET}))), "GRANT net");
      }
      served_meanwhile = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(error == EPIPE || error == ECONNRESET)
      << "after " << sent << " requests: " << std::strerror(error) << "\n"
      << broker_->log();
  EXPECT_GT(sent, 10);
  EXPECT_TRUE(served_meanwhile);
  flood.reset();
  ExpectServedAndClean();
}

TEST_F(Hostile, ThousandConnectionsBeyondMaxConnections) {
  StartBroker("max_connections: 50\nmax_connections_per_uid: 5000\n");
  std::vector<UniqueFd> conns;
  for (int i = 0; i < 1050; ++i) {
    UniqueFd fd = ConnectNonBlocking(socket());
    ASSERT_TRUE(fd.valid()) << "connection " << i << ": " << std::strerror(errno);
    conns.push_back(std::move(fd));
  }
  // The first 50 are admitted (and stay silent); the other 1000 hear RESOURCE_EXHAUSTED and
  // are closed. Wait until the broker has dealt with all of them.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int answered = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    answered = 0;
    for (auto& fd : conns) answered += Readable(fd, 0) ? 1 : 0;
    if (answered >= 1000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int refused = 0, silent = 0;
  for (auto& fd : conns) {
    if (!Readable(fd, 0)) {
      ++silent;
      continue;
    }
    auto reply = Receive(fd);
    EXPECT_EQ(Summary(reply), "RESOURCE_EXHAUSTED: too many connections (max_connections 50)");
    refused += Code(reply) == "RESOURCE_EXHAUSTED" ? 1 : 0;
  }
  EXPECT_EQ(refused, 1000);
  EXPECT_EQ(silent, 50);
  conns.clear();
  // With the flood gone, connections are admitted again.
  ExpectServedAndClean();
}

// Thousands of connections from uid 65534 that ask for grants and never read them: the
// descriptors in those unread responses are charged to the broker's user by the kernel
// (unix(7), ETOOMANYREFS once past RLIMIT_NOFILE without CAP_SYS_RESOURCE), so the broker
// bounds them per uid with max_inflight_fds_per_uid, answering RESOURCE_EXHAUSTED beyond it,
// while uid 1000 and root keep being served.
TEST_F(Hostile, DescriptorHoardingIsBoundedPerUid) {
  constexpr int kHoard = 3000;
  constexpr int kLimit = 200;
  StartBroker(
      "max_connections: 10000\nmax_connections_per_uid: 5000\n"
      "max_inflight_fds_per_uid: " +
      std::to_string(kLimit) + "\n");
  int ready[2], done[2], result[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(done, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(result, O_CLOEXEC), 0);
  UniqueFd ready_r(ready[0]), ready_w(ready[1]), done_r(done[0]), done_w(done[1]),
      result_r(result[0]), result_w(result[1]);
  std::string path = socket();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto hoard = [&]() -> std::string {
      rlimit lim{kHoard + 100, kHoard + 100};
      if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return "setrlimit";
      if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
          setresuid(65534, 65534, 65534) != 0) {
        return "setresuid";
      }
      std::string join = Serialized(JoinRequest("web1", {v1::NET, v1::UTS}));
      std::vector<UniqueFd> conns;
      for (int i = 0; i < kHoard; ++i) {
        UniqueFd fd = ConnectNonBlocking(path);
        if (!fd.valid()) return "connect " + std::to_string(i) + ": " + std::strerror(errno);
        if (send(fd.get(), join.data(), join.size(), MSG_NOSIGNAL) < 0) return "send";
        conns.push_back(std::move(fd));
      }
      // Every request is answered (and left unread) before the others are let in.
      for (auto& fd : conns) {
        if (!Readable(fd, 10000)) return "a hoarded request was not answered";
      }
      if (write(ready_w.get(), "r", 1) != 1) return "write";
      char c;
      if (read(done_r.get(), &c, 1) != 1) return "read";
      std::map<std::string, int> codes;
      std::size_t fds = 0;
      for (auto& fd : conns) {
        auto reply = Receive(fd);
        ++codes[Code(reply)];
        if (reply) fds += reply->fds.size();
      }
      std::string out = "fds " + std::to_string(fds);
      for (const auto& [code, n] : codes) out += " " + code + " " + std::to_string(n);
      return out;
    };
    std::string out = hoard();
    _exit(write(result_w.get(), out.data(), out.size()) == static_cast<ssize_t>(out.size()) ? 0
                                                                                            : 1);
  }
  ChildProcess child(pid);
  ready_w.reset();
  done_r.reset();
  result_w.reset();
  char c = 0;
  bool hoarded = read(ready_r.get(), &c, 1) == 1;
  if (hoarded) {
    // The hoarder's budget is spent; another request from it is refused ...
    EXPECT_EQ(AsUser(65534, 65534,
                     [&] { return Summary(CallOnce(path, JoinRequest("web1", {v1::NET}))); }),
              "RESOURCE_EXHAUSTED: target 'web1': uid 65534 has too many descriptors in "
              "unread responses");
    // ... while uid 1000 and root are served.
    EXPECT_EQ(
        AsUser(1000, 1000, [&] { return Summary(CallOnce(path, JoinRequest("web1", {v1::NET}))); }),
        "GRANT net");
    EXPECT_EQ(Summary(CallOnce(path, JoinRequest("web1", {v1::NET, v1::UTS}))), "GRANT net,uts");
    EXPECT_EQ(write(done_w.get(), "d", 1), 1);
  }
  done_w.reset();
  std::string hoarder;
  char buf[256];
  ssize_t n;
  while ((n = read(result_r.get(), buf, sizeof buf)) > 0) {
    hoarder.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(child.Wait(), 0);
  ASSERT_TRUE(hoarded) << hoarder;
  // Exactly the budget went out (2 descriptors per grant), everything else was refused.
  EXPECT_EQ(hoarder, "fds " + std::to_string(kLimit) + " GRANT " + std::to_string(kLimit / 2) +
                         " RESOURCE_EXHAUSTED " + std::to_string(kHoard - kLimit / 2));
  // Once read, the budget is back.
  EXPECT_EQ(
      AsUser(65534, 65534, [&] { return Summary(CallOnce(path, JoinRequest("web1", {v1::NET}))); }),
      "GRANT net");
  ExpectServedAndClean();
}

// The budget outlives the connection: when the broker closes an idle connection whose peer
// never read its grants, those descriptors are still in flight in the peer's receive queue,
// so they must still count against its uid (or waiting out idle_timeout_ms would refill the
// budget, and a hoarder could pile up descriptors without end).
TEST_F(Hostile, HoardedGrantsStayChargedAfterIdleClose) {
  StartBroker("idle_timeout_ms: 300\nmax_inflight_fds_per_uid: 20\n");
  std::string path = socket();
  EXPECT_EQ(AsUser(65534, 65534,
                   [&]() -> std::string {
                     std::string join = Serialized(JoinRequest("web1", {v1::NET, v1::UTS}));
                     std::vector<UniqueFd> hoard;
                     std::string out;
                     for (int round = 0; round < 3; ++round) {
                       auto sock = Connect(path);
                       if (!sock) return sock.error().message;
                       for (int i = 0; i < 10; ++i) {
                         if (send(sock->get(), join.data(), join.size(), MSG_NOSIGNAL) < 0)
                           return "send";
                       }
                       // Answered (unread), then closed by the broker as idle; the queue stays
                       // ours.
                       if (!Readable(*sock, 5000)) return "no answer";
                       std::this_thread::sleep_for(std::chrono::milliseconds(600));
                       hoard.push_back(std::move(*sock));
                     }
                     // 10 grants of 2 descriptors fit the budget of 20, once; later rounds were
                     // refused.
                     for (auto& fd : hoard) {
                       std::map<std::string, int> codes;
                       for (;;) {
                         auto reply = Receive(fd);
                         if (!reply) break;
                         ++codes[Code(reply)];
                       }
                       for (const auto& [code, n] : codes)
                         out += code + " " + std::to_string(n) + " ";
                       out += "| ";
                     }
                     return out;
                   }),
            "GRANT 10 | RESOURCE_EXHAUSTED 10 | RESOURCE_EXHAUSTED 10 | ");
  ExpectServedAndClean();
}

TEST_F(Hostile, SilentClientsAreClosedWhenIdle) {
  StartBroker("idle_timeout_ms: 300\n");
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 50; ++i) {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    silent.push_back(std::move(*sock));
  }
  auto start = std::chrono::steady_clock::now();
  for (auto& fd : silent) EXPECT_EQ(AnsweredOrClosed(fd), "EOF");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  silent.clear();
  ExpectServedAndClean();
}

TEST_F(Hostile, ClientsKilledMidRequest) {
  StartBroker("request_timeout_ms: 500\n");
  std::string path = socket();
  std::string join = Serialized(JoinRequest("web1", {v1::NET, v1::UTS}));
  for (int round = 0; round < 5; ++round) {
    int ready[2];
    ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
    UniqueFd r(ready[0]), w(ready[1]);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Some connections with requests in flight, some that only connected, one flooding.
      std::vector<UniqueFd> conns;
      for (int i = 0; i < 20; ++i) {
        UniqueFd fd = ConnectNonBlocking(path);
        if (i % 3 != 0) (void)!send(fd.get(), join.data(), join.size(), MSG_NOSIGNAL);
        if (i == 0) {
          for (int j = 0; j < 200; ++j) (void)!send(fd.get(), join.data(), join.size(), 0);
        }
        conns.push_back(std::move(fd));
      }
      (void)!write(w.get(), "r", 1);
      pause();
      _exit(0);
    }
    ChildProcess child(pid);
    w.reset();
    char c;
    ASSERT_EQ(read(r.get(), &c, 1), 1);
    if (round % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(child.Stop(SIGKILL), 128 + SIGKILL);
  }
  ExpectServedAndClean();
}

TEST_F(Hostile, HalfClosedPeers) {
  StartBroker();
  // Shut for writing after the request: the answer still arrives, then the broker closes.
  {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    ASSERT_OK(SendMessage(*sock, JoinRequest("web1", {v1::NET})));
    ASSERT_EQ(shutdown(sock->get(), SHUT_WR), 0);
    EXPECT_EQ(Summary(Receive(*sock)), "GRANT net");
    EXPECT_EQ(AnsweredOrClosed(*sock), "EOF");
  }
  // Shut for reading before the request: the broker cannot deliver and lets go.
  {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    ASSERT_EQ(shutdown(sock->get(), SHUT_RD), 0);
    ASSERT_OK(SendMessage(*sock, JoinRequest("web1", {v1::NET})));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Shut both ways with requests queued.
  for (int i = 0; i < 10; ++i) {
    auto sock = Connect(socket());
    ASSERT_OK(sock);
    ASSERT_OK(SendMessage(*sock, JoinRequest("web1", {v1::NET})));
    ASSERT_EQ(shutdown(sock->get(), SHUT_RDWR), 0);
  }
  ExpectServedAndClean();
}

}  // namespace
}  // namespace nsbroker::testing
