// The real nsbrokerd on a hostile multi-user host (issue 12): several unprivileged uids at once
// flooding connections and hoarding descriptors while root joins; pid files users can reach;
// targets that are missing, dead or many; what the audit log says. Each test failed on the
// broker before the descriptor ledger.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "harness.h"
#include "raw_client.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr char kHostname[] = "multi-host";

std::string TargetBlock(const std::string& name, pid_t pid, const std::string& extra = "") {
  return "target { name: \"" + name + "\" pid: " + std::to_string(pid) + extra + " }\n";
}

// A forked process that switched for good to `uid`, ran `setup` (which opens what it
// holds), reported its result and holds everything until released or destroyed.
class Holder {
 public:
  Holder(uid_t uid, std::size_t nofile, std::function<std::string()> setup) {
    int up[2], down[2];
    if (pipe2(up, O_CLOEXEC) != 0 || pipe2(down, O_CLOEXEC) != 0) return;
    UniqueFd up_r(up[0]), up_w(up[1]), down_r(down[0]), down_w(down[1]);
    pid_t pid = fork();
    if (pid == 0) {
      // Only our own pipe ends: another holder's release must not wait for us.
      for (int fd = 3; fd < 4096; ++fd) {
        if (fd != up_w.get() && fd != down_r.get()) close(fd);
      }
      rlimit lim{nofile, nofile};
      if (setrlimit(RLIMIT_NOFILE, &lim) != 0 || setgroups(0, nullptr) != 0 ||
          setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
        _exit(3);
      }
      std::string out = setup() + "\n";
      if (write(up_w.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(4);
      char c;
      (void)!read(down_r.get(), &c, 1);  // until released (or the test's end closes it)
      _exit(0);
    }
    child_ = ChildProcess(pid);
    up_w.reset();
    down_r.reset();
    report_ = std::move(up_r);
    release_ = std::move(down_w);
  }
  // The setup's result: blocks until the child has everything in hand.
  std::string Report() {
    std::string out;
    char c;
    while (read(report_.get(), &c, 1) == 1 && c != '\n') out += c;
    return out;
  }
  // Lets the child exit, closing everything it held; waits for it.
  void Release() {
    release_.reset();
    child_.Wait();
  }

 private:
  ChildProcess child_;
  UniqueFd report_, release_;
};

// Opens `n` connections that each List, keeping the admitted ones: "admitted A refused R
// first-refusal-message".
std::string OpenListing(const std::string& path, int n, std::vector<UniqueFd>& keep) {
  int admitted = 0, refused = 0;
  std::string why;
  v1::Request list;
  list.set_protocol_version(kProtocolVersion);
  list.mutable_list();
  for (int i = 0; i < n; ++i) {
    auto sock = Connect(path);
    if (!sock) return "connect: " + sock.error().message;
    auto reply = Call(*sock, list);
    if (Code(reply) == "TARGETS") {
      ++admitted;
      keep.push_back(std::move(*sock));
    } else {
      ++refused;
      if (why.empty()) why = Summary(reply);
    }
  }
  return "admitted " + std::to_string(admitted) + " refused " + std::to_string(refused) + " " + why;
}

// Milliseconds of one nsjoin run as root, which must enter the target.
long TimedRootJoin(const std::string& socket) {
  auto start = steady_clock::now();
  auto r = RunCommand({NsjoinBinary(), "--socket", socket, "-t", "web1", "-u", "--", "hostname"});
  long ms = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kHostname) + "\n");
  return ms;
}

std::size_t Count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The broker's descriptors with no client connected: asks Status on one connection until the
// broker counts no other, then leaves that one out.
std::size_t QuietFds(Broker& broker) {
  auto sock = Connect(broker.socket());
  if (!sock) return 0;
  for (int i = 0; i < 10000; ++i) {
    auto reply = Call(*sock, StatusRequest());
    if (!reply) return 0;
    if (reply->response.status().active_connections() == 1)
      return CountFdsOf(broker.ServingPid()) - 1;
  }
  return 0;
}

class MultiUser : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    RaiseNofile(20000);
    auto target = Target::Start({.hostname = kHostname});
    ASSERT_OK(target);
    target_.emplace(std::move(*target));
  }
  std::string Web1(const std::string& extra = "") const {
    return TargetBlock("web1", target_->pid(), extra);
  }
  std::optional<Target> target_;
};

// 20 uids x 64 connections kept alive: more than max_connections (1024) in all, yet root
// joins, three times in a row, from the reserve. The refused see why, and the audit log
// holds a bounded number of lines for them.
TEST_F(MultiUser, TwentyUidsFloodingConnectionsLeaveRootItsReserve) {
  auto broker = Broker::Start("socket_mode: \"0666\"\n" + Web1());
  ASSERT_OK(broker);
  std::string path = broker->socket();
  std::vector<std::unique_ptr<Holder>> flood;
  for (uid_t uid = 61000; uid < 61020; ++uid) {
    flood.push_back(std::make_unique<Holder>(uid, 256, [path] {
      static std::vector<UniqueFd> keep;
      return OpenListing(path, 64, keep);
    }));
  }
  int admitted = 0, refused = 0;
  std::string why;
  for (auto& h : flood) {
    std::istringstream in(h->Report());
    std::string word;
    int a = 0, r = 0;
    in >> word >> a >> word >> r;
    admitted += a;
    refused += r;
    std::string rest;
    std::getline(in, rest);
    if (r > 0 && why.empty()) why = rest;
  }
  // Everyone but root shares max_connections less root_reserve (16).
  EXPECT_EQ(admitted, 1024 - 16);
  EXPECT_EQ(refused, 20 * 64 - (1024 - 16));
  EXPECT_EQ(why,
            " RESOURCE_EXHAUSTED: too many connections (max_connections 1024, 16 of them "
            "reserved for root)");
  long worst = 0;
  for (int i = 0; i < 3; ++i) worst = std::max(worst, TimedRootJoin(path));
  std::cout << "root's nsjoin under a flood of 20 uids x 64 connections: worst of 3 " << worst
            << " ms; broker descriptors " << CountFdsOf(broker->ServingPid()) << "\n";
  // Ten lines a second at most, and the rest counted.
  ASSERT_TRUE(broker->WaitForLog("more connections refused, not logged one by one"))
      << broker->log();
  std::string log = broker->log();
  EXPECT_LE(Count(log, "decision=refuse"), 40u);
  EXPECT_GE(Count(log, "decision=refuse"), 10u);
  for (auto& h : flood) h->Release();
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A refused nsjoin reads the broker's RESOURCE_EXHAUSTED message instead of a bare reset.
TEST_F(MultiUser, RefusedNsjoinPrintsWhy) {
  auto broker = Broker::Start("socket_mode: \"0666\"\nmax_connections_per_uid: 2\n" +
                              Web1("\n  allow { uid: 65534 }"));
  ASSERT_OK(broker);
  std::string path = broker->socket();
  Holder two(65534, 64, [path] {
    static std::vector<UniqueFd> keep;
    return OpenListing(path, 2, keep);
  });
  ASSERT_EQ(two.Report(), "admitted 2 refused 0 ");
  for (int i = 0; i < 3; ++i) {
    auto r = RunCommand({NsjoinBinary(), "--socket", path, "-t", "web1", "-u", "--", "true"},
                        {.uid = 65534});
    EXPECT_EQ(r.status, 125);
    EXPECT_NE(r.err.find("uid 65534 has too many connections (max_connections_per_uid 2)"),
              std::string::npos)
        << r.err;
  }
  EXPECT_TRUE(broker->WaitForLog("decision=refuse target=- kinds= peer_pid="));
  EXPECT_NE(broker->log().find("peer_uid=65534 peer_gid=65534 reason=\"uid 65534 has too many "
                               "connections (max_connections_per_uid 2)\""),
            std::string::npos)
      << broker->log();
  two.Release();
  EXPECT_EQ(StopCleanly(*broker), "");
}

// 6 uids each connect 4200 times, ask for a grant, shut down their write side and never read.
// Kept sockets count as connections of their uid, so the broker holds at most
// max_connections_per_uid of them per uid; root is served throughout, and once the hoarders
// are gone the broker holds what it held before.
TEST_F(MultiUser, SixHoardingUidsCannotLockRootOut) {
  std::string allow;
  for (uid_t uid = 62000; uid < 62006; ++uid)
    allow += "\n  allow { uid: " + std::to_string(uid) + " }";
  auto broker = Broker::Start("socket_mode: \"0666\"\n" + Web1(allow));
  ASSERT_OK(broker);
  std::string path = broker->socket();
  ASSERT_EQ(Summary(CallOnce(path, JoinRequest("web1", {v1::NET}))), "GRANT net");
  std::size_t baseline = QuietFds(*broker);
  std::vector<std::unique_ptr<Holder>> hoarders;
  for (uid_t uid = 62000; uid < 62006; ++uid) {
    hoarders.push_back(std::make_unique<Holder>(uid, 5000, [path] {
      static std::vector<UniqueFd> keep;
      std::string join;
      JoinRequest("web1", {v1::NET}).SerializeToString(&join);
      int sent = 0;
      for (int i = 0; i < 4200; ++i) {
        auto sock = Connect(path);
        if (!sock) return "connect: " + sock.error().message;
        if (send(sock->get(), join.data(), join.size(), MSG_NOSIGNAL) > 0) ++sent;
        shutdown(sock->get(), SHUT_WR);
        keep.push_back(std::move(*sock));
      }
      return std::to_string(sent);
    }));
  }
  for (auto& h : hoarders) EXPECT_NE(h->Report().rfind("connect", 0), 0u);
  std::size_t during = CountFdsOf(broker->ServingPid());
  long worst = 0;
  for (int i = 0; i < 3; ++i) worst = std::max(worst, TimedRootJoin(path));
  std::cout << "6 uids hoarding: broker descriptors " << baseline << " before, " << during
            << " during; root's nsjoin worst of 3: " << worst << " ms\n";
  // Kept sockets, and refused connections waiting for their request (at most 32).
  EXPECT_LE(during, baseline + 6 * 64 + 32 + 8);
  for (auto& h : hoarders) h->Release();
  EXPECT_EQ(WaitForFdCount(broker->ServingPid(), baseline), baseline) << broker->log();
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A FIFO where a pid file should be cannot freeze the broker: opened O_NONBLOCK, refused as
// no regular file, and the others keep being served, before and after a reload.
TEST_F(MultiUser, FifoPidFileIsUnavailableAndNeverStalls) {
  TempDir dir;
  std::string fifo = dir.Join("fifo.pid");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0666), 0);
  chmod(fifo.c_str(), 0666);  // a user could write to it
  auto broker = Broker::Start(Web1());
  ASSERT_OK(broker);
  std::ofstream(broker->config_path(), std::ios::app)
      << "target { name: \"pf\" pid_file: \"" << fifo << "\" }\n";
  ASSERT_OK(broker->Reload());
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  auto reply = CallOnce(broker->socket(), JoinRequest("pf", {v1::UTS}));
  EXPECT_NE(Summary(reply).find("UNAVAILABLE: target 'pf' is unavailable: "), std::string::npos)
      << Summary(reply);
  EXPECT_NE(Summary(reply).find(fifo + " is not a regular file"), std::string::npos)
      << Summary(reply);
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A pid file a user can write (its own file in a sticky directory, or root's file in the
// user's directory) would let that user point the target at any process: unavailable, with
// the path and its owner. Root's file in a sticky directory is fine.
TEST_F(MultiUser, UserWrittenPidFileIsRefused) {
  auto denied = Target::Start({.hostname = "denied-box"});
  ASSERT_OK(denied);
  TempDir dir;
  std::string sticky = dir.Join("tmp");
  ASSERT_EQ(mkdir(sticky.c_str(), 01777), 0);
  chmod(sticky.c_str(), 01777);
  std::string users = dir.Join("user");
  ASSERT_EQ(mkdir(users.c_str(), 0755), 0);
  ASSERT_EQ(chown(users.c_str(), 65534, 65534), 0);
  std::string pid = std::to_string(denied->pid()) + "\n";
  EXPECT_EQ(AsUser(65534, 65534,
                   [&] {
                     std::ofstream(sticky + "/mine.pid") << pid;
                     std::ofstream(users + "/theirs.pid") << pid;
                     return std::string("written");
                   }),
            "written");
  // Root's file in the user's directory: the user can rename another over it.
  std::ofstream(users + "/root.pid") << pid;
  std::ofstream(sticky + "/root.pid") << pid;
  auto broker = Broker::Start(
      "socket_mode: \"0666\"\n" + Web1() + "target { name: \"pf1\" pid_file: \"" + sticky +
      "/mine.pid\" allow { uid: 65534 } }\ntarget { name: \"pf2\" pid_file: \"" + users +
      "/root.pid\" allow { uid: 65534 } }\ntarget { name: \"pf3\" pid_file: \"" + sticky +
      "/root.pid\" }\n");
  ASSERT_OK(broker);
  std::string path = broker->socket();
  std::string out = AsUser(65534, 65534, [&] {
    return Summary(CallOnce(path, JoinRequest("pf1", {v1::UTS}))) + "|" +
           Summary(CallOnce(path, JoinRequest("pf2", {v1::UTS})));
  });
  EXPECT_NE(out.find("UNAVAILABLE: target 'pf1' is unavailable: "), std::string::npos) << out;
  EXPECT_NE(out.find(sticky + "/mine.pid is owned by uid 65534, not root"), std::string::npos)
      << out;
  EXPECT_NE(out.find(users + " is owned by uid 65534, not root"), std::string::npos) << out;
  EXPECT_EQ(Summary(CallOnce(path, JoinRequest("pf3", {v1::UTS}))), "GRANT uts");
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A pid file that does not exist yet: --check-config warns (exit 0), the broker starts and
// serves the others, root's nsjoin --list says why, and the target comes up by itself once
// the file appears.
TEST_F(MultiUser, MissingPidFileAtStartThenTheFileAppears) {
  TempDir dir;
  std::string pid_file = dir.Join("later.pid");
  std::string config = Web1() + "target { name: \"later\" pid_file: \"" + pid_file + "\" }\n";
  dir.Write("check.conf", config);
  auto check = RunCommand({BrokerBinary(), "-c", dir.Join("check.conf"), "--check-config"});
  EXPECT_EQ(check.status, 0) << check.err;
  EXPECT_EQ(check.out, dir.Join("check.conf") + ": OK, 2 targets, 1 unavailable\n");
  EXPECT_NE(check.err.find("warning: unavailable: " + dir.Join("check.conf") +
                           ":2:1: target 'later': open " + pid_file),
            std::string::npos)
      << check.err;
  auto broker = Broker::Start(config);
  ASSERT_OK(broker);
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  auto list = RunCommand({NsjoinBinary(), "--socket", broker->socket(), "--list"});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find("later cgroup,ipc,mnt,net,pid,time,user,uts,root,cwd (unavailable: "),
            std::string::npos)
      << list.out;
  auto json = RunCommand({NsjoinBinary(), "--socket", broker->socket(), "--list", "--json"});
  EXPECT_NE(json.out.find("\"name\":\"later\""), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"available\":false,\"reason\":"), std::string::npos) << json.out;
  // Written elsewhere and renamed into place, as daemons write pid files.
  dir.Write("later.tmp", std::to_string(target_->pid()) + "\n");
  ASSERT_EQ(rename(dir.Join("later.tmp").c_str(), pid_file.c_str()), 0);
  ASSERT_TRUE(broker->WaitForLog("target 'later' is available")) << broker->log();
  auto reply = CallOnce(broker->socket(), JoinRequest("later", {v1::UTS}));
  ASSERT_EQ(Summary(reply), "GRANT uts");
  struct stat st;
  ASSERT_EQ(fstat(reply->fds[0].get(), &st), 0);
  EXPECT_EQ(st.st_ino, NsInode(target_->NsPath("uts")));
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A dead pid: target neither stops the broker from starting nor blocks later reloads.
TEST_F(MultiUser, ReloadWithADeadPidTarget) {
  auto dead = Target::Start();
  ASSERT_OK(dead);
  pid_t gone = dead->pid();
  dead->Kill();
  auto other = Target::Start({.hostname = "other"});
  ASSERT_OK(other);
  auto broker = Broker::Start(Web1() + TargetBlock("dead", gone));
  ASSERT_OK(broker);
  std::string socket_line = "socket: \"" + broker->socket() + "\"\n";
  std::ofstream(broker->config_path())
      << socket_line << Web1() << TargetBlock("dead", gone) << TargetBlock("web2", other->pid());
  auto ready = broker->Reload();
  ASSERT_OK(ready);
  EXPECT_TRUE(ready->starts_with("READY=1\nSTATUS=") && !ready->contains("reload failed"))
      << *ready;
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web2", {v1::UTS}))), "GRANT uts");
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  EXPECT_EQ(Summary(CallOnce(broker->socket(), JoinRequest("dead", {v1::UTS}))),
            "UNAVAILABLE: target 'dead' is unavailable: " + broker->config_path() +
                ":3:1: target 'dead': no process " + std::to_string(gone));
  EXPECT_EQ(StopCleanly(*broker), "");
}

std::string ManyTargets(const std::string& prefix, int n, pid_t pid) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += "target { name: \"" + prefix + std::to_string(i) + "\" pid: " + std::to_string(pid) +
           " allow { uid: 65534 } }\n";
  }
  return out;
}

// 10,000 targets replaced by 10,000 others under a descriptor limit of 15,000: the reload
// needs no second copy (the old handles go before the new ones open), and grants for web1
// keep flowing while the new targets open a batch per loop turn.
TEST_F(MultiUser, TenThousandTargetsReloadWhileJoinsContinue) {
  auto broker = Broker::Start(Web1() + ManyTargets("a", 10000, target_->pid()),
                              BrokerOptions{.nofile = 15000});
  ASSERT_OK(broker);
  std::string path = broker->socket();
  std::ofstream(broker->config_path()) << "socket: \"" << path << "\"\n"
                                       << Web1() << ManyTargets("b", 10000, target_->pid());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    r.reset();
    // Joins web1 over and over on one connection, until the parent goes.
    auto sock = Connect(path);
    for (;;) {
      char c =
          sock && Summary(Call(*sock, JoinRequest("web1", {v1::UTS}))) == "GRANT uts" ? 'G' : 'X';
      if (write(w.get(), &c, 1) != 1) _exit(0);
    }
  }
  ChildProcess joiner(pid);
  w.reset();
  char c;
  ASSERT_EQ(read(r.get(), &c, 1), 1);
  auto ready = broker->Reload();
  ASSERT_OK(ready);
  EXPECT_TRUE(ready->starts_with("READY=1\nSTATUS=") && !ready->contains("reload failed"))
      << *ready;
  fcntl(r.get(), F_SETFL, O_NONBLOCK);
  std::string letters;
  char buf[65536];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) letters.append(buf, static_cast<std::size_t>(n));
  joiner.Stop(SIGKILL);
  EXPECT_GT(letters.size(), 0u);
  EXPECT_EQ(std::count(letters.begin(), letters.end(), 'G'), static_cast<long>(letters.size()))
      << letters.substr(0, 200);
  EXPECT_NE(
      broker->log().find("reloaded " + broker->config_path() + ": 10001 targets (0 unavailable)"),
      std::string::npos)
      << broker->log().substr(0, 2000);
  EXPECT_EQ(Summary(CallOnce(path, JoinRequest("b9999", {v1::UTS}))), "GRANT uts");
  EXPECT_EQ(Code(CallOnce(path, JoinRequest("a9999", {v1::UTS}))), "NOT_FOUND");
  EXPECT_EQ(StopCleanly(*broker), "");
}

// A List (and a Status) of 10,000 targets is more than one 64 KiB datagram: it comes in
// pages, and nsjoin --list and --list --json show every target, to root and to a user.
TEST_F(MultiUser, ListOfTenThousandTargets) {
  auto broker = Broker::Start("socket_mode: \"0666\"\n" + ManyTargets("t", 10000, target_->pid()));
  ASSERT_OK(broker);
  std::string path = broker->socket();
  auto list = RunCommand({NsjoinBinary(), "--socket", path, "--list"});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(Count(list.out, "\n"), 10000u);
  EXPECT_NE(list.out.find("t9999 cgroup,"), std::string::npos);
  auto json = RunCommand({NsjoinBinary(), "--socket", path, "--list", "--json"}, {.uid = 65534});
  EXPECT_EQ(json.status, 0) << json.err;
  EXPECT_EQ(Count(json.out, "{\"name\":"), 10000u);
  EXPECT_NE(json.out.find("{\"name\":\"t9999\",\"kinds\":[\"cgroup\""), std::string::npos);
  std::size_t states = 0;
  std::uint32_t start = 0;
  int pages = 0;
  do {
    v1::Request status = StatusRequest();
    status.mutable_status()->set_start(start);
    auto reply = CallOnce(path, status);
    ASSERT_OK(reply);
    states += static_cast<std::size_t>(reply->response.status().targets_size());
    start = reply->response.status().next_start();
    ++pages;
  } while (start != 0 && pages < 100);
  EXPECT_EQ(states, 10000u);
  EXPECT_GT(pages, 1);
  EXPECT_EQ(StopCleanly(*broker), "");
}

// Exactly one audit line per Join decision, malformed ones included; every byte outside
// printable ASCII escaped; a target the peer may see nothing of answered as unknown.
TEST_F(MultiUser, AuditHasOneEscapedLinePerJoinDecision) {
  auto broker = Broker::Start("socket_mode: \"0666\"\n" + Web1("\n  allow { uid: 1000 }"));
  ASSERT_OK(broker);
  std::string path = broker->socket();
  v1::Request bad_kind = JoinRequest("web1");
  bad_kind.mutable_join()->add_kinds(static_cast<v1::Kind>(99));
  EXPECT_EQ(Summary(CallOnce(path, bad_kind)), "INVALID_REQUEST: target 'web1': unknown kind 99");
  // U+2028 LINE SEPARATOR, U+202E RIGHT-TO-LEFT OVERRIDE, NEL (U+0085) and a raw 0xff.
  std::string sneaky = "x\xe2\x80\xa8y\xe2\x80\xae\xc2\x85z";
  EXPECT_EQ(Code(CallOnce(path, JoinRequest(sneaky))), "NOT_FOUND");
  // A name that is no UTF-8 cannot even be parsed: still a decision, still a line.
  {
    auto sock = Connect(path);
    ASSERT_OK(sock);
    std::string bytes;
    JoinRequest("web1").SerializeToString(&bytes);
    bytes[bytes.find("web1")] = '\xff';
    ASSERT_OK(SendDatagram(*sock, bytes));
    EXPECT_EQ(Summary(Receive(*sock)), "INVALID_REQUEST: malformed request");
  }
  std::string out = AsUser(65534, 65534, [&] {
    return Summary(CallOnce(path, JoinRequest("web1", {v1::NET}))) + "|" +
           Summary(CallOnce(path, JoinRequest("nope", {v1::NET})));
  });
  // The same answer for a target it may have nothing of as for one that does not exist.
  EXPECT_EQ(out, "NOT_FOUND: unknown target 'web1'|NOT_FOUND: unknown target 'nope'");
  EXPECT_EQ(Summary(CallOnce(path, JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  ASSERT_TRUE(broker->WaitForLog("decision=grant target=web1 kinds=uts"));
  std::string log = broker->log();
  // One line per Join: unknown kind, sneaky, unparsable, web1 and nope as 65534, uts.
  EXPECT_EQ(Count(log, "nsbroker-audit "), 6u) << log;
  EXPECT_NE(log.find("decision=deny target=? kinds= peer_pid="), std::string::npos) << log;
  EXPECT_NE(log.find("reason=\"unreadable request: malformed request\""), std::string::npos);
  EXPECT_NE(log.find("decision=deny target=web1 kinds= peer_pid="), std::string::npos) << log;
  EXPECT_NE(log.find("reason=\"target 'web1': unknown kind 99\""), std::string::npos) << log;
  EXPECT_NE(log.find("target=\"x\\xe2\\x80\\xa8y\\xe2\\x80\\xae\\xc2\\x85z\""), std::string::npos)
      << log;
  // (libprotobuf's own complaint about the unparsable name is on stderr too, without it.)
  EXPECT_TRUE(std::none_of(log.begin(), log.end(),
                           [](char ch) { return static_cast<unsigned char>(ch) >= 0x80; }));
  EXPECT_NE(log.find("decision=deny target=web1 kinds=net peer_pid="), std::string::npos);
  EXPECT_NE(log.find("peer_uid=65534 peer_gid=65534 reason=\"no allow rule matches\""),
            std::string::npos)
      << log;
  EXPECT_EQ(StopCleanly(*broker), "");
}

// audit_log is never opened through a link a user could have planted.
TEST_F(MultiUser, AuditLogThroughASymlinkIsRefused) {
  TempDir dir;
  std::string real = dir.Join("real.log");
  std::ofstream(real) << "";
  std::string link = dir.Join("audit.log");
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  auto broker = Broker::Start("audit_log: \"" + link + "\"\n" + Web1());
  ASSERT_FALSE(broker.has_value());
  EXPECT_NE(
      broker.error().message.find("audit_log " + link + ": Too many levels of symbolic links"),
      std::string::npos)
      << broker.error().message;
}

// A socket in a directory a user owns could be replaced by theirs: refused before binding.
TEST_F(MultiUser, SocketInAUsersDirectoryIsRefused) {
  TempDir dir;
  std::string users = dir.Join("user");
  ASSERT_EQ(mkdir(users.c_str(), 0755), 0);
  ASSERT_EQ(chown(users.c_str(), 65534, 65534), 0);
  auto broker = Broker::Start("socket: \"" + users + "/nsb.sock\"\n" + Web1());
  ASSERT_FALSE(broker.has_value());
  EXPECT_NE(broker.error().message.find("socket " + users + "/nsb.sock: " + users +
                                        " is owned by uid 65534, not root"),
            std::string::npos)
      << broker.error().message;
}

// Limits are checked against the descriptor budget at load: a config that cannot fit is an
// error naming the numbers.
TEST_F(MultiUser, ConfigThatCannotFitTheBudgetIsAnError) {
  auto broker = Broker::Start("max_connections: 19990\n" + Web1(), BrokerOptions{.nofile = 20000});
  ASSERT_FALSE(broker.has_value());
  EXPECT_NE(broker.error().message.find(
                "max_connections 19990 + 1 target descriptors + 1 listeners + 64 "
                "reserved = 20056 exceed the descriptor budget 20000 (RLIMIT_NOFILE)"),
            std::string::npos)
      << broker.error().message;
}

// A connection kept busy by a request now and then still ends at max_connection_age_ms.
TEST_F(MultiUser, BusyConnectionsEndAtTheirMaximumAge) {
  auto broker = Broker::Start("max_connection_age_ms: 300\n" + Web1());
  ASSERT_OK(broker);
  auto sock = Connect(broker->socket());
  ASSERT_OK(sock);
  auto start = steady_clock::now();
  int answered = 0;
  while (Code(Call(*sock, JoinRequest("web1", {v1::UTS}))) == "GRANT" &&
         steady_clock::now() - start < std::chrono::seconds(10)) {
    ++answered;
  }
  EXPECT_GT(answered, 0);
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(StopCleanly(*broker), "");
}

}  // namespace
}  // namespace nsbroker::testing
