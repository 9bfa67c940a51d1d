// Faults around the real nsbrokerd while clients keep asking: the broker SIGKILLed and
// restarted on its stale socket, accept() hitting EMFILE, a target dying, reloads. Clients
// always get an answer or a clear error within seconds, never a hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "harness.h"
#include "raw_client.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// One letter per call: G grant, C client-side error (refused, reset, closed), U unavailable,
// R resource exhausted, N not found, X anything else, H a call that took over 3 s.
char Letter(const Result<Reply>& reply) {
  std::string code = Code(reply);
  if (code == "GRANT") return 'G';
  if (code == "CLIENT ERROR") return 'C';
  if (code == "UNAVAILABLE") return 'U';
  if (code == "RESOURCE_EXHAUSTED") return 'R';
  if (code == "NOT_FOUND") return 'N';
  return 'X';
}

// A forked client that joins `target` over and over (a fresh connection each time) and
// reports one letter per call through a pipe, until it is killed.
class Load {
 public:
  Load(const std::string& path, const std::string& target) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return;
    read_.reset(p[0]);
    UniqueFd w(p[1]);
    fcntl(w.get(), F_SETFL, 0);
    pid_t pid = fork();
    if (pid == 0) {
      read_.reset();
      for (;;) {
        auto start = steady_clock::now();
        auto reply = CallOnce(path, JoinRequest(target, {v1::NET, v1::UTS}));
        char c = steady_clock::now() - start > seconds(3) ? 'H' : Letter(reply);
        if (write(w.get(), &c, 1) != 1) _exit(1);
        if (c != 'G') usleep(5000);  // no busy loop against a dead broker
      }
    }
    child_ = ChildProcess(pid);
  }
  // Letters reported since the last call.
  std::string Take() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(read_.get(), buf, sizeof buf)) > 0)
      out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
  // Waits until at least `n` more calls have been reported; returns them.
  std::string TakeAtLeast(std::size_t n, milliseconds timeout = seconds(10)) {
    std::string out;
    auto deadline = steady_clock::now() + timeout;
    while (out.size() < n) {
      out += Take();
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      if (out.size() >= n || left.count() <= 0) break;
      pollfd p{read_.get(), POLLIN, 0};  // until the client reports more
      poll(&p, 1, static_cast<int>(left.count()));
    }
    return out;
  }

 private:
  UniqueFd read_;
  ChildProcess child_;
};

std::size_t Count(const std::string& letters, char c) {
  return static_cast<std::size_t>(std::count(letters.begin(), letters.end(), c));
}

std::string TargetBlock(const std::string& name, pid_t pid) {
  return "target { name: \"" + name + "\" pid: " + std::to_string(pid) + " }\n";
}

class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto target = Target::Start({.hostname = "faults-host"});
    ASSERT_OK(target);
    target_.emplace(std::move(*target));
  }
  std::optional<Target> target_;
};

TEST_F(Faults, BrokerKilledUnderLoadThenRestartedOnItsStaleSocket) {
  TempDir dir;
  std::string path = dir.Join("broker.sock");
  std::string config = "socket: \"" + path + "\"\n" + TargetBlock("web1", target_->pid());
  auto broker = Broker::Start(config);
  ASSERT_OK(broker);
  Load a(path, "web1"), b(path, "web1");
  std::string before = a.TakeAtLeast(50) + b.TakeAtLeast(50);
  EXPECT_GE(Count(before, 'G'), 100u) << before;
  EXPECT_EQ(Count(before, 'G'), before.size()) << before;

  EXPECT_EQ(broker->Kill(), 128 + SIGKILL);
  // The socket file stays behind; clients get a clear error at once, never a hang.
  struct stat st;
  ASSERT_EQ(lstat(path.c_str(), &st), 0);
  a.Take();
  b.Take();
  std::string dead = a.TakeAtLeast(20) + b.TakeAtLeast(20);
  EXPECT_GE(Count(dead, 'C'), 40u) << dead;
  EXPECT_EQ(Count(dead, 'H'), 0u) << dead;
  auto nsjoin = RunCommand({NsjoinBinary(), "--socket", path, "-t", "web1", "-u", "true"});
  EXPECT_EQ(nsjoin.status, 125);
  EXPECT_NE(nsjoin.err.find(path), std::string::npos) << nsjoin.err;
  EXPECT_NE(nsjoin.err.find("Connection refused"), std::string::npos) << nsjoin.err;

  // A new broker replaces the stale socket and the same clients are served again.
  auto restarted = Broker::Start(config);
  ASSERT_OK(restarted);
  // A call that started before the restart may still fail: skip to the first grant.
  std::string skipped;
  while (skipped.find('G') == std::string::npos && skipped.size() < 1000) {
    skipped += a.TakeAtLeast(1);
  }
  std::string after = skipped.substr(skipped.find('G') + 1) + a.TakeAtLeast(50);
  EXPECT_EQ(Count(after, 'G'), after.size()) << after;
  EXPECT_GE(after.size(), 50u);
  EXPECT_EQ(StopCleanly(*restarted), "");
}

TEST_F(Faults, AcceptHittingEmfileDoesNotSpinAndRecovers) {
  auto broker = Broker::Start("socket_mode: \"0666\"\n" + TargetBlock("web1", target_->pid()));
  ASSERT_OK(broker);
  ASSERT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web1", {v1::NET}))), "GRANT net");
  std::size_t baseline = QuietFdCount(*broker);  // once the broker has closed that one
  // Room for 4 more descriptors: a few connections, then accept() fails with EMFILE.
  // (Only the soft limit: raising a hard limit back needs CAP_SYS_RESOURCE, which containers
  // such as this CI's do not have.)
  rlimit old{};
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, nullptr, &old), 0);
  rlimit low{baseline + 4, old.rlim_max};
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, &low, nullptr), 0);
  std::vector<UniqueFd> held;
  for (int i = 0; i < 40; ++i) {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, broker->socket().c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    held.push_back(std::move(fd));
  }
  ASSERT_TRUE(broker->WaitForLog("Too many open files")) << broker->log();
  // While the backlog stays full the broker must not busy-loop on accept.
  long cpu_before = CpuTicks(broker->pid());
  std::this_thread::sleep_for(seconds(2));
  long cpu = CpuTicks(broker->pid()) - cpu_before;
  EXPECT_LT(cpu, sysconf(_SC_CLK_TCK) / 5) << "ticks in 2 s: " << cpu;
  // An admitted connection asking for descriptors it cannot open gets a clear error.
  // Freeing the descriptors lets it recover, without a restart.
  held.clear();
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, &old, nullptr), 0) << std::strerror(errno) << "\n"
                                                                     << broker->log();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    served = Summary(CallOnce(broker->socket(), JoinRequest("web1", {v1::NET}))) == "GRANT net";
    if (!served) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(served) << broker->log();
  EXPECT_EQ(WaitForFdCount(broker->pid(), baseline), baseline);
  EXPECT_EQ(StopCleanly(*broker), "");
}

TEST_F(Faults, TargetDyingUnderLoad) {
  auto other = Target::Start({.hostname = "survivor"});
  ASSERT_OK(other);
  auto broker =
      Broker::Start(TargetBlock("web1", target_->pid()) + TargetBlock("web2", other->pid()));
  ASSERT_OK(broker);
  std::size_t baseline = QuietFdCount(*broker);
  std::optional<Load> a, b;
  a.emplace(broker->socket(), "web1");
  b.emplace(broker->socket(), "web2");
  std::string before = a->TakeAtLeast(30);
  EXPECT_EQ(Count(before, 'G'), before.size()) << before;
  target_->Kill();
  ASSERT_TRUE(broker->WaitForLog("target 'web1' is unavailable")) << broker->log();
  a->Take();
  b->Take();
  // The call a client had in flight may have been granted in the loop pass that saw the
  // pidfd fire (its audit line follows the log line), and reported only now: skipped.
  a->TakeAtLeast(1);
  std::string web1 = a->TakeAtLeast(30), web2 = b->TakeAtLeast(30);
  EXPECT_EQ(Count(web1, 'U'), web1.size()) << web1;
  EXPECT_EQ(Count(web2, 'G'), web2.size()) << web2;
  auto reply = CallOnce(broker->socket(), JoinRequest("web1"));
  EXPECT_NE(Summary(reply).find("UNAVAILABLE: target 'web1' is unavailable"), std::string::npos)
      << Summary(reply);
  auto status = CallOnce(broker->socket(), StatusRequest());
  ASSERT_OK(status);
  ASSERT_EQ(status->response.status().targets_size(), 2);
  EXPECT_FALSE(status->response.status().targets(0).available());
  EXPECT_TRUE(status->response.status().targets(1).available());
  // Once the clients are gone the broker holds what it held at start (the dead target's
  // pidfd included) and the survivor's held grant set; the dead one's went with its pidfd.
  a.reset();
  b.reset();
  std::size_t cached = status->response.status().cache_descriptors();
  EXPECT_GT(cached, 0u);
  EXPECT_EQ(WaitForFdCount(broker->ServingPid(), baseline + cached), baseline + cached);
  EXPECT_EQ(StopCleanly(*broker), "");
}

TEST_F(Faults, ReloadUnderLoad) {
  auto other = Target::Start({.hostname = "added"});
  ASSERT_OK(other);
  std::string web1 = TargetBlock("web1", target_->pid());
  auto broker = Broker::Start(web1);
  ASSERT_OK(broker);
  std::string socket_line = "socket: \"" + broker->socket() + "\"\n";
  auto rewrite = [&](const std::string& text) {
    std::string tmp = broker->config_path() + ".new";
    std::ofstream(tmp) << socket_line << text;
    ASSERT_EQ(rename(tmp.c_str(), broker->config_path().c_str()), 0);
  };
  Load a(broker->socket(), "web1"), b(broker->socket(), "web1");
  a.TakeAtLeast(20);
  for (int i = 0; i < 6; ++i) {
    // Alternate a good config (web2 added or removed) with a broken one that changes nothing.
    if (i % 3 == 2) {
      rewrite(web1 + "target { name: \"broken\" }\n");
    } else {
      rewrite(web1 + (i % 2 == 0 ? TargetBlock("web2", other->pid()) : ""));
    }
    // Waits for the reload to be complete (READY=1), whether it succeeded or not.
    ASSERT_OK(broker->Reload());
  }
  rewrite(web1 + TargetBlock("web2", other->pid()));
  // A storm of reloads: a signal that lands while the broker checks a target must not make
  // that target look dead (poll() on its pidfd fails with EINTR then).
  for (int i = 0; i < 400; ++i) {
    ASSERT_EQ(kill(broker->pid(), SIGHUP), 0);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    broker->DrainNotifications();
  }
  std::string calls = a.TakeAtLeast(20) + b.TakeAtLeast(20);
  EXPECT_EQ(Count(calls, 'G'), calls.size()) << calls << "\n" << broker->log();
  // One more reload, waited for: after it web2 is served.
  ASSERT_OK(broker->Reload());
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web2", {v1::UTS}))), "GRANT uts")
      << broker->log();
  EXPECT_EQ(StopCleanly(*broker), "");
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
constexpr bool kAsan = __has_feature(address_sanitizer);
#else
constexpr bool kAsan = false;
#endif

// 100,000 grants in a row: the broker's descriptors and memory afterwards equal those before
// (measured after a warm-up, so allocator pools and caches are already at their size).
TEST_F(Faults, HundredThousandGrantsLeakNothing) {
  // Under ASan (scripts/test --sanitize) freed memory waits in a quarantine of up to 256 MiB
  // by design, which reads as RSS growth: this broker runs without it, so that RSS measures
  // leaks alone. The variable means nothing to a build without ASan.
  const char* asan = getenv("ASAN_OPTIONS");
  std::string saved = asan != nullptr ? asan : "";
  setenv("ASAN_OPTIONS", (saved + (saved.empty() ? "" : ":") + "quarantine_size_mb=0").c_str(), 1);
  auto broker = Broker::Start(TargetBlock("web1", target_->pid()));
  if (asan != nullptr) {
    setenv("ASAN_OPTIONS", saved.c_str(), 1);
  } else {
    unsetenv("ASAN_OPTIONS");
  }
  ASSERT_OK(broker);
  std::string join;
  JoinRequest("web1", {v1::NET}).SerializeToString(&join);
  // Eight requests in flight per connection (the client's receive queue holds ten datagrams),
  // so that the loop measures the broker rather than two context switches per grant.
  auto grants = [&](int n) -> std::string {
    constexpr int kDepth = 8;
    for (int done = 0; done < n;) {
      // A fresh connection every 1000 grants: connection setup and teardown count too.
      auto sock = Connect(broker->socket());
      if (!sock) return sock.error().message;
      int batch = std::min(1000, n - done), sent = 0, received = 0;
      while (received < batch) {
        if (sent < batch && sent - received < kDepth) {
          if (auto s = SendDatagram(*sock, join); !s) return s.error().message;
          ++sent;
          continue;
        }
        auto reply = ReceiveDatagram(*sock, 1);
        if (!reply) return reply.error().message;
        if (reply->fds.size() != 1) return "a grant without its descriptor";
        ++received;
      }
      done += batch;
    }
    return "";
  };
  // Under ASan 20,000 were too few: the first 100,000 after them still touched 8-12 KiB of new
  // allocator pages in 2 of 7 runs (then 0 KiB in each of four more rounds: no leak).
  ASSERT_EQ(grants(50000), "");
  std::size_t fds = QuietFdCount(*broker);
  long rss = RssKib(broker->ServingPid());
  auto start = steady_clock::now();
  ASSERT_EQ(grants(100000), "");
  auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  EXPECT_EQ(QuietFdCount(*broker), fds);
  long grown = RssKib(broker->ServingPid()) - rss;
  // ASan's allocator still maps a page or four now and then (16 KiB seen once in the run_as
  // server); a leak of one allocation per grant would cost it 100,000 redzoned chunks, MiBs.
  EXPECT_LE(grown, kAsan ? 64 : 8) << "RSS grew by " << grown << " KiB over 100,000 grants";
  std::cout << "100,000 grants in " << took.count() << " ms; RSS " << rss << " KiB -> "
            << rss + grown << " KiB; fds " << fds << "\n";
  EXPECT_EQ(StopCleanly(*broker), "");
}

}  // namespace
}  // namespace nsbroker::testing
