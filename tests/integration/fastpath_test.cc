// The grant fast path against the real nsbrokerd: held grant sets and their freshness
// (refresh_ms) with a target that really changes its net namespace, a target's exit seen
// through its pidfd, the cache's budget with 10,000 targets, audit lines written before their
// responses (kill -9 under load), and the native and uWSGI listeners deciding alike.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "nsbroker/uwsgi.h"
#include "raw_client.h"
#include "test_util.h"

namespace nsbroker::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The net inode of a granted Join, or 0.
std::uint64_t NetInode(const Result<Reply>& reply) {
  if (!reply || !reply->response.has_grant()) return 0;
  for (const auto& e : reply->response.grant().entries()) {
    if (e.kind() == v1::NET) return e.inode();
  }
  return 0;
}

// A process that moves to a new net namespace when told (a byte on its pipe), says so (a
// byte back), and then sleeps until killed.
class Unsharer {
 public:
  Unsharer() {
    int go[2], done[2];
    EXPECT_EQ(pipe2(go, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(done, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(go[1]);
      close(done[0]);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(1);
      if (unshare(CLONE_NEWNET) != 0) _exit(2);
      if (write(done[1], "u", 1) != 1) _exit(3);
      for (;;) pause();
    }
    close(go[0]);
    close(done[1]);
    go_.reset(go[1]);
    done_.reset(done[0]);
    child_ = ChildProcess(pid);
  }
  pid_t pid() const { return child_.pid(); }
  bool Unshare() {
    char c = 'g';
    return write(go_.get(), &c, 1) == 1 && read(done_.get(), &c, 1) == 1;
  }

 private:
  UniqueFd go_, done_;
  ChildProcess child_;
};

TEST(FastPath, ChangedNamespaceIsServedWithinRefreshMsAndTheOldOneBefore) {
  ASSERT_TRUE(RequireRoot());
  constexpr milliseconds kRefresh{2000};
  Unsharer target;
  std::string proc_net = "/proc/" + std::to_string(target.pid()) + "/ns/net";
  auto broker = Broker::Start("target { name: \"mover\" pid: " + std::to_string(target.pid()) +
                              " refresh_ms: " + std::to_string(kRefresh.count()) +
                              " }\ntarget { name: \"fresh\" pid: " + std::to_string(target.pid()) +
                              " refresh_ms: 0 }\n");
  ASSERT_OK(broker);
  std::uint64_t old_net = NsInode(proc_net);
  auto fetched = Clock::now();  // no later than the broker's fetch for the first grant
  ASSERT_EQ(NetInode(CallOnce(broker->socket(), JoinRequest("mover", {v1::NET}))), old_net);
  ASSERT_EQ(NetInode(CallOnce(broker->socket(), JoinRequest("fresh", {v1::NET}))), old_net);
  ASSERT_TRUE(target.Unshare());
  std::uint64_t new_net = NsInode(proc_net);
  ASSERT_NE(new_net, old_net);

  // Within refresh_ms of the fetch: the held (old) namespace; refresh_ms 0: the new one.
  auto reply = CallOnce(broker->socket(), JoinRequest("mover", {v1::NET}));
  bool within = Clock::now() - fetched < kRefresh;
  ASSERT_TRUE(within) << "the machine is too slow for this test's refresh_ms";
  EXPECT_EQ(NetInode(reply), old_net);
  EXPECT_EQ(NetInode(CallOnce(broker->socket(), JoinRequest("fresh", {v1::NET}))), new_net);

  // Once refresh_ms has passed since the fetch: the new one, and the change is logged.
  std::this_thread::sleep_until(fetched + kRefresh + milliseconds(20));
  EXPECT_EQ(NetInode(CallOnce(broker->socket(), JoinRequest("mover", {v1::NET}))), new_net);
  EXPECT_TRUE(broker->WaitForLog("target 'mover': net namespace changed, inode " +
                                 std::to_string(old_net) + " -> " + std::to_string(new_net)))
      << broker->log();
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A root broker reloaded with a run_as added keeps running as it is (run_as changes only on
// restart): its targets are still fetched per grant, none opened again and held for good.
TEST(FastPath, ReloadAddingRunAsKeepsTheTargetsFetchedPerGrant) {
  ASSERT_TRUE(RequireRoot());
  Unsharer target;
  std::string proc_net = "/proc/" + std::to_string(target.pid()) + "/ns/net";
  std::string mover =
      "target { name: \"mover\" pid: " + std::to_string(target.pid()) + " refresh_ms: 0 }\n";
  auto broker = Broker::Start(mover);
  ASSERT_OK(broker);
  // Once the broker has closed the harness's own connections (Start waits on one).
  std::size_t before = QuietFdCount(*broker);

  std::ofstream(broker->config_path())
      << "socket: \"" << broker->socket() << "\"\nrun_as: \"nobody\"\n"
      << mover;
  auto reloaded = broker->Reload();
  ASSERT_OK(reloaded);
  EXPECT_FALSE(reloaded->contains("reload failed")) << *reloaded;
  EXPECT_TRUE(broker->WaitForLog("reload: run_as changes only on restart")) << broker->log();
  EXPECT_TRUE(broker->WaitForLog("reloaded " + broker->config_path() + ": 1 targets"))
      << broker->log();
  EXPECT_EQ(QuietFdCount(*broker), before);

  std::uint64_t old_net = NsInode(proc_net);
  ASSERT_EQ(NetInode(CallOnce(broker->socket(), JoinRequest("mover", {v1::NET}))), old_net);
  ASSERT_TRUE(target.Unshare());
  std::uint64_t new_net = NsInode(proc_net);
  ASSERT_NE(new_net, old_net);
  EXPECT_EQ(NetInode(CallOnce(broker->socket(), JoinRequest("mover", {v1::NET}))), new_net);
  EXPECT_EQ(StopCleanly(*broker), "");
}

TEST(FastPath, DeadTargetIsUnavailableOnTheNextGrantAfterItsPidfdFired) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  auto broker = Broker::Start("target { name: \"web1\" pid: " + std::to_string(target->pid()) +
                              " refresh_ms: 3600000 }\n");
  ASSERT_OK(broker);
  auto sock = Connect(broker->socket());
  ASSERT_OK(sock);
  ASSERT_EQ(Summary(Call(*sock, JoinRequest("web1", {v1::NET}))), "GRANT net");
  auto status = CallOnce(broker->socket(), StatusRequest());
  ASSERT_OK(status);
  EXPECT_GT(status->response.status().cache_descriptors(), 0u);
  target->Kill();
  ASSERT_TRUE(broker->WaitForLog("target 'web1' is unavailable")) << broker->log();
  // The same persistent connection, an hour of refresh_ms left: the pidfd event decided.
  EXPECT_EQ(Code(Call(*sock, JoinRequest("web1", {v1::NET}))), "UNAVAILABLE");
  status = CallOnce(broker->socket(), StatusRequest());
  ASSERT_OK(status);
  EXPECT_EQ(status->response.status().cache_descriptors(), 0u);
  EXPECT_EQ(StopCleanly(*broker), "");
}

TEST(FastPath, CacheStaysWithinItsBudgetWith10000Targets) {
  ASSERT_TRUE(RequireRoot());
  constexpr int kTargets = 10000;
  constexpr std::size_t kBudget = 20000;
  auto target = Target::Start();
  ASSERT_OK(target);
  std::string config = "max_connections: 256\n";
  for (int i = 0; i < kTargets; ++i) {
    config += "target { name: \"t" + std::to_string(i) +
              "\" pid: " + std::to_string(target->pid()) + " }\n";
  }
  // The broker's budget is the RLIMIT_NOFILE it inherits.
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit lim{kBudget, kBudget};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  auto broker = Broker::Start(config);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_OK(broker);
  ASSERT_TRUE(broker->WaitForLog("serving 10000 targets (0 unavailable)")) << broker->log();
  auto sock = Connect(broker->socket());
  ASSERT_OK(sock);
  auto check = [&] {
    auto status = CallOnce(broker->socket(), StatusRequest());
    ASSERT_OK(status);
    const auto& s = status->response.status();
    ASSERT_EQ(s.descriptor_budget(), kBudget);
    // reserve 64 + 2 listeners at most + 10,000 pidfds + max_connections 256
    EXPECT_LE(s.cache_descriptors(), kBudget - 64 - 2 - kTargets - 256);
    EXPECT_LE(s.descriptors_held(), kBudget);
    EXPECT_LE(CountFdsOf(broker->ServingPid()), kBudget);
  };
  for (int i = 0; i < kTargets; ++i) {
    auto reply = Call(*sock, JoinRequest("t" + std::to_string(i), {v1::NET, v1::UTS}));
    ASSERT_EQ(Summary(reply), "GRANT net,uts") << i;
    if (i % 2500 == 0) check();
  }
  check();
  // The hot ones are served from memory.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) {
      ASSERT_EQ(Summary(Call(*sock, JoinRequest("t" + std::to_string(i), {v1::NET}))), "GRANT net");
    }
  }
  auto status = CallOnce(broker->socket(), StatusRequest());
  ASSERT_OK(status);
  EXPECT_GE(status->response.status().cache_hits(), 200u);
  EXPECT_GE(status->response.status().cache_misses(), static_cast<std::uint64_t>(kTargets));
  check();
  EXPECT_EQ(StopCleanly(*broker), "");
}

// Lines of `path` that contain `text`.
std::size_t CountLines(const std::string& path, const std::string& text) {
  std::ifstream in(path);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) n += line.find(text) != std::string::npos;
  return n;
}

TEST(FastPath, EveryGrantAClientReceivedHasItsAuditLineAfterKill9) {
  ASSERT_TRUE(RequireRoot());
  constexpr int kClients = 4;
  auto target = Target::Start();
  ASSERT_OK(target);
  TempDir dir;
  std::string audit = dir.Join("audit.log");
  auto broker = Broker::Start("audit_log: \"" + audit + "\"\ntarget { name: \"web1\" pid: " +
                              std::to_string(target->pid()) + " }\n");
  ASSERT_OK(broker);
  // Each client counts the grants it received, until the broker goes, and reports the count.
  struct Client {
    ChildProcess process;
    UniqueFd result;
  };
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(p[0]);
      long granted = 0;
      auto sock = Connect(broker->socket());
      while (sock) {
        auto reply = Call(*sock, JoinRequest("web1", {v1::NET, v1::UTS}));
        if (!reply) break;
        granted += reply->response.has_grant();
      }
      std::string out = std::to_string(granted);
      _exit(write(p[1], out.data(), out.size()) > 0 ? 0 : 1);
    }
    close(p[1]);
    clients.push_back({ChildProcess(pid), UniqueFd(p[0])});
  }
  // Mid-load: once the log has a few thousand lines, woken by each write to it (inotify).
  UniqueFd watch(inotify_init1(IN_CLOEXEC));
  ASSERT_TRUE(watch.valid());
  ASSERT_GE(inotify_add_watch(watch.get(), audit.c_str(), IN_MODIFY), 0);
  auto deadline = Clock::now() + std::chrono::seconds(20);
  struct stat st{};
  while (stat(audit.c_str(), &st) != 0 || st.st_size < 400000) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    pollfd pfd{watch.get(), POLLIN, 0};
    if (left <= 0 || poll(&pfd, 1, static_cast<int>(left)) <= 0) break;
    char events[4096];
    ASSERT_GT(read(watch.get(), events, sizeof events), 0);
  }
  EXPECT_EQ(broker->Kill(), 128 + SIGKILL);
  long total = 0;
  for (Client& c : clients) {
    char buf[64];
    ssize_t n = read(c.result.get(), buf, sizeof buf);
    ASSERT_GT(n, 0);
    long received = std::stol(std::string(buf, static_cast<std::size_t>(n)));
    pid_t pid = c.process.pid();
    EXPECT_EQ(c.process.Wait(), 0);
    std::size_t lines = CountLines(
        audit, "decision=grant target=web1 kinds=net,uts peer_pid=" + std::to_string(pid) + " ");
    EXPECT_GE(static_cast<long>(lines), received) << "pid " << pid;
    total += received;
  }
  EXPECT_GT(total, 1000);
}

// The same peers asking through both listeners get the same decision and the same
// namespaces: one core, two codecs.
TEST(FastPath, NativeAndUwsgiListenersDecideAlikeForTheSamePeers) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  TempDir dir;
  std::string uwsgi = dir.Join("uwsgi.sock");
  auto broker = Broker::Start(
      "socket: \"" + dir.Join("nsb.sock") + "\"\nsocket_mode: \"0666\"\nuwsgi_socket: \"" + uwsgi +
      "\"\nuwsgi_target: \"box\"\ntarget { name: \"box\" pid: " + std::to_string(target->pid()) +
      " allow { uid: 65534 kinds: [UTS, IPC] } allow { gid: 4242 kinds: [NET] }"
      " allow { uid: 65532 kinds: [USER] } }\n");
  ASSERT_OK(broker);
  ASSERT_TRUE(broker->WaitForLog("to uWSGI")) << broker->log();
  ASSERT_EQ(chmod(uwsgi.c_str(), 0666), 0);
  struct Peer {
    uid_t uid;
    std::vector<gid_t> groups;
    std::string expected;  // what both listeners give: granted kinds, or "refused"
  };
  const std::vector<Peer> table = {
      {0, {}, "cgroup,ipc,mnt,net,pid,time,uts"},
      {65534, {}, "ipc,uts"},
      {65533, {4242}, "net"},
      {65533, {}, "refused"},
      {65532, {}, "refused"},  // USER only, which uWSGI never gets; natively asked as uWSGI asks
  };
  const std::string socket = broker->socket();
  for (const Peer& peer : table) {
    auto as_peer = [&](const std::function<std::string()>& fn) {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return std::string("pipe");
      pid_t pid = fork();
      if (pid == 0) {
        close(p[0]);
        if (setgroups(peer.groups.size(), peer.groups.data()) != 0 ||
            setresgid(peer.uid, peer.uid, peer.uid) != 0 ||
            setresuid(peer.uid, peer.uid, peer.uid) != 0) {
          _exit(3);
        }
        std::string out = fn();
        _exit(write(p[1], out.data(), out.size()) == static_cast<ssize_t>(out.size()) ? 0 : 4);
      }
      close(p[1]);
      UniqueFd r(p[0]);
      ChildProcess child(pid);
      std::string out;
      char buf[512];
      ssize_t n;
      while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
      child.Wait();
      return out;
    };
    // Kind names and inodes, checked against the target's own.
    auto describe = [&](const std::vector<std::pair<NsKind, std::uint64_t>>& got) {
      std::string kinds;
      for (const auto& [kind, inode] : got) {
        if (inode != NsInode(target->NsPath(std::string(KindName(kind))))) return std::string("?");
        kinds += (kinds.empty() ? "" : ",") + std::string(KindName(kind));
      }
      return kinds.empty() ? std::string("refused") : kinds;
    };
    std::string native = as_peer([&] {
      // Natively, the kinds uWSGI can use, each asked for: what the peer is allowed of them.
      std::vector<std::pair<NsKind, std::uint64_t>> got;
      for (v1::Kind kind : {v1::CGROUP, v1::IPC, v1::MNT, v1::NET, v1::PID, v1::TIME, v1::UTS}) {
        auto reply = CallOnce(socket, JoinRequest("box", {kind}));
        if (!reply || !reply->response.has_grant()) continue;
        for (const auto& e : reply->response.grant().entries()) {
          got.emplace_back(*KindFromWire(e.kind()), e.inode());
        }
      }
      std::string out;
      for (const auto& [kind, inode] : got)
        out += std::to_string(static_cast<int>(kind)) + ":" + std::to_string(inode) + " ";
      return out;
    });
    std::string via_uwsgi = as_peer([&] {
      auto grant = ReceiveUwsgiGrant(uwsgi, {.trusted_server_uids = {0}});
      std::string out;
      if (!grant) return out;
      for (const GrantEntry& e : grant->entries) {
        out += std::to_string(static_cast<int>(e.kind)) + ":" + std::to_string(e.inode) + " ";
      }
      return out;
    });
    auto parse = [](const std::string& text) {
      std::vector<std::pair<NsKind, std::uint64_t>> got;
      std::istringstream in(text);
      std::string item;
      while (in >> item) {
        auto colon = item.find(':');
        got.emplace_back(static_cast<NsKind>(std::stoi(item.substr(0, colon))),
                         std::stoull(item.substr(colon + 1)));
      }
      std::sort(got.begin(), got.end());
      return got;
    };
    EXPECT_EQ(describe(parse(native)), peer.expected) << "native, uid " << peer.uid;
    EXPECT_EQ(describe(parse(via_uwsgi)), peer.expected) << "uWSGI, uid " << peer.uid;
  }
  EXPECT_EQ(StopCleanly(*broker), "");
}

}  // namespace
}  // namespace nsbroker::testing
