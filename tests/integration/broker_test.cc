// The real nsbrokerd against real targets, spoken to with the wire protocol directly, as root
// and as uid 65534 (in forked children).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"
#include "raw_client.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker::testing {
namespace {

v1::Request ListRequest() {
  v1::Request r;
  r.set_protocol_version(kProtocolVersion);
  r.mutable_list();
  return r;
}

// raw_client's Summary with each target's kinds: "TARGETS web1:uts"; an empty response is "".
std::string Describe(const Result<Reply>& reply) {
  if (!reply || reply->response.has_grant() || reply->response.has_error() ||
      reply->response.has_status()) {
    return Summary(reply);
  }
  std::string out;
  if (reply->response.has_targets()) {
    out = "TARGETS";
    for (const auto& t : reply->response.targets().targets()) {
      out += " " + t.name() + ":";
      for (int i = 0; i < t.kinds_size(); ++i) {
        out += (i > 0 ? "," : "") + std::string(KindName(static_cast<NsKind>(t.kinds(i))));
      }
    }
  }
  return out;
}

// Runs `fn` in a forked child that switched to uid/gid/groups for good; returns what fn
// returned (or a description of how the child failed).
std::string AsUser(uid_t uid, gid_t gid, std::vector<gid_t> groups,
                   const std::function<std::string()>& fn) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "pipe failed";
  UniqueFd r(p[0]), w(p[1]);
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    if (setgroups(groups.size(), groups.data()) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(3);
    }
    std::string out = fn();
    if (write(w.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(4);
    _exit(0);
  }
  ChildProcess child(pid);
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  int status = child.Wait();
  if (status != 0) return "child failed with " + std::to_string(status);
  return out;
}

std::string AsNobody(const std::function<std::string()>& fn) {
  return AsUser(65534, 65534, {}, fn);
}

ino_t FdInode(const UniqueFd& fd) {
  struct stat st;
  return fstat(fd.get(), &st) == 0 ? st.st_ino : 0;
}

std::size_t CountFdsOf(pid_t pid) {
  std::size_t n = 0;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// Lets uid 65534 connect; policy, not the socket mode, is under test.
constexpr char kOpenSocket[] = "socket_mode: \"0666\"\n";

std::string TargetConfig(const std::string& name, pid_t pid, const std::string& extra = "") {
  return "target {\n  name: \"" + name + "\"\n  pid: " + std::to_string(pid) + "\n" + extra + "}\n";
}

TEST(Broker, GrantsTheTargetsOwnNamespaces) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "granted-host"});
  ASSERT_OK(target);
  auto broker = Broker::Start(TargetConfig("web1", target->pid()));
  ASSERT_OK(broker);
  // Naming only ROOT and CWD asks for every namespace too.
  auto reply = CallOnce(broker->socket(), JoinRequest("web1", {v1::ROOT, v1::CWD}));
  ASSERT_OK(reply);
  ASSERT_EQ(Describe(reply), "GRANT cgroup,ipc,mnt,net,pid,time,user,uts,root,cwd");
  const auto& grant = reply->response.grant();
  EXPECT_EQ(grant.target(), "web1");
  for (const auto& entry : grant.entries()) {
    auto kind = static_cast<NsKind>(entry.kind());
    std::string path = "/proc/" + std::to_string(target->pid()) +
                       (IsNamespaceKind(kind) ? "/ns/" : "/") + std::string(KindProcFile(kind));
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(entry.inode(), st.st_ino) << path;
    EXPECT_EQ(FdInode(reply->fds[entry.fd_index()]), st.st_ino) << path;
    if (IsNamespaceKind(kind)) {
      EXPECT_NE(entry.ns_id(), 0u) << path;
    }
  }
  // The descriptor really enters the target: its hostname is the target's.
  const UniqueFd& uts = reply->fds[grant.entries(7).fd_index()];
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char host[64] = {};
    if (setns(uts.get(), CLONE_NEWUTS) != 0 || gethostname(host, sizeof host) != 0) _exit(2);
    _exit(std::string(host) == "granted-host" ? 0 : 1);
  }
  EXPECT_EQ(ChildProcess(pid).Wait(), 0);
  EXPECT_TRUE(
      broker->WaitForLog("decision=grant target=web1 kinds=cgroup,ipc,mnt,net,pid,time,"
                         "user,uts,root,cwd peer_pid=" +
                         std::to_string(getpid()) + " peer_uid=0 peer_gid=0 reason=\"root\""))
      << broker->log();
  // An empty Join: the namespaces, without the /proc walks for ROOT and CWD.
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("web1"))),
            "GRANT cgroup,ipc,mnt,net,pid,time,user,uts");
}

TEST(Broker, DeniesAnUnlistedUidAndAuditsIt) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  auto broker =
      Broker::Start(kOpenSocket + TargetConfig("web1", target->pid(), "  allow { uid: 1000 }\n"));
  ASSERT_OK(broker);
  std::string socket = broker->socket();
  std::string out = AsNobody([&] {
    return Describe(CallOnce(socket, JoinRequest("web1", {v1::MNT, v1::PID}))) + "|" +
           Describe(CallOnce(socket, ListRequest())) + "|" +
           Describe(CallOnce(socket, StatusRequest()));
  });
  EXPECT_EQ(out,
            "NOT_FOUND: unknown target 'web1'|TARGETS|"
            "PERMISSION_DENIED: status is for root only, not uid 65534");
  ASSERT_TRUE(broker->WaitForLog("decision=deny")) << broker->log();
  std::regex line(
      "nsbroker-audit time=\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ decision=deny target=web1 "
      "kinds=mnt,pid peer_pid=\\d+ peer_uid=65534 peer_gid=65534 "
      "reason=\"no allow rule matches\"\n");
  EXPECT_TRUE(std::regex_search(broker->log(), line)) << broker->log();
}

TEST(Broker, AllowRulesNarrowKindsForUsersAndGroups) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "narrow"});
  ASSERT_OK(target);
  auto broker = Broker::Start(
      kOpenSocket +
      TargetConfig("web1", target->pid(),
                   "  allow { user: \"nobody\" kinds: [UTS] }\n  allow { gid: 4242 }\n"));
  ASSERT_OK(broker);
  std::string socket = broker->socket();
  ino_t uts = NsInode(target->NsPath("uts"));
  std::string out = AsNobody([&] {
    auto granted = CallOnce(socket, JoinRequest("web1", {v1::UTS}));
    std::string inode_ok =
        granted && granted->fds.size() == 1 && FdInode(granted->fds[0]) == uts ? "inode ok" : "bad";
    return Describe(granted) + " " + inode_ok + "|" +
           Describe(CallOnce(socket, JoinRequest("web1", {v1::NET, v1::UTS}))) + "|" +
           Describe(CallOnce(socket, JoinRequest("web1"))) + "|" +
           Describe(CallOnce(socket, ListRequest()));
  });
  EXPECT_EQ(out,
            "GRANT uts inode ok|PERMISSION_DENIED: target 'web1': uid 65534 may not join net|"
            "GRANT uts|TARGETS web1:uts");
  std::string grouped = AsUser(4000, 4000, {4242}, [&] {
    return Describe(CallOnce(socket, JoinRequest("web1", {v1::NET, v1::MNT})));
  });
  EXPECT_EQ(grouped, "GRANT mnt,net");
  EXPECT_TRUE(broker->WaitForLog("decision=grant target=web1 kinds=mnt,net"));
  EXPECT_TRUE(broker->WaitForLog("peer_uid=4000 peer_gid=4000 reason=\"allow gid 4242\""));
}

TEST(Broker, UnknownTargetIsNotFound) {
  ASSERT_TRUE(RequireRoot());
  auto broker = Broker::Start("target { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("nope"))),
            "NOT_FOUND: unknown target 'nope'");
  EXPECT_TRUE(broker->WaitForLog("decision=deny target=nope kinds= "));
}

// A pid_file target re-resolves by itself: no reload is needed to find the new process.
TEST(Broker, DeadTargetIsUnavailableUntilItsPidFileNamesAnother) {
  ASSERT_TRUE(RequireRoot());
  auto first = Target::Start({.hostname = "first"});
  ASSERT_OK(first);
  TempDir dir;
  dir.Write("web1.pid", std::to_string(first->pid()) + "\n");
  auto broker =
      Broker::Start("target { name: \"web1\" pid_file: \"" + dir.Join("web1.pid") + "\" }\n");
  ASSERT_OK(broker);
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}))), "GRANT uts");
  pid_t dead = first->pid();
  first->Kill();
  std::string reason = "process " + std::to_string(dead) + " exited";
  ASSERT_TRUE(broker->WaitForLog("target 'web1' is unavailable: " + reason)) << broker->log();
  // The pid file still names the dead process: re-reading it finds nothing new.
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS})))
                .rfind("UNAVAILABLE: target 'web1' is unavailable: " + reason, 0),
            0u);
  auto status = CallOnce(broker->socket(), StatusRequest());
  ASSERT_OK(status);
  ASSERT_EQ(status->response.status().targets_size(), 1);
  EXPECT_FALSE(status->response.status().targets(0).available());
  EXPECT_EQ(status->response.status().targets(0).reason().rfind(reason, 0), 0u);
  EXPECT_GE(status->response.status().errors(), 1u);
  EXPECT_GE(status->response.status().grants(), 1u);

  auto second = Target::Start({.hostname = "second"});
  ASSERT_OK(second);
  dir.Write("web1.pid", std::to_string(second->pid()) + "\n");
  ASSERT_TRUE(broker->WaitForLog("target 'web1' is available")) << broker->log();
  auto reply = CallOnce(broker->socket(), JoinRequest("web1", {v1::UTS}));
  ASSERT_EQ(Describe(reply), "GRANT uts");
  EXPECT_EQ(FdInode(reply->fds[0]), NsInode(second->NsPath("uts")));
}

TEST(Broker, ReloadSwapsAGoodConfigAndKeepsTheOldOneOnError) {
  ASSERT_TRUE(RequireRoot());
  auto t1 = Target::Start();
  auto t2 = Target::Start();
  ASSERT_OK(t1);
  ASSERT_OK(t2);
  auto broker = Broker::Start(TargetConfig("one", t1->pid()));
  ASSERT_OK(broker);
  std::string head = "socket: \"" + broker->socket() + "\"\n";
  auto sock = Connect(broker->socket());  // an open connection survives reloads
  ASSERT_OK(sock);
  EXPECT_EQ(Describe(Call(*sock, JoinRequest("two", {v1::NET}))),
            "NOT_FOUND: unknown target 'two'");

  std::ofstream(broker->config_path())
      << head << TargetConfig("one", t1->pid()) << TargetConfig("two", t2->pid());
  auto reloaded = broker->Reload();
  ASSERT_OK(reloaded);
  EXPECT_TRUE(reloaded->starts_with("READY=1\nSTATUS=") && !reloaded->contains("reload failed"))
      << *reloaded;
  EXPECT_TRUE(broker->WaitForLog("reloaded " + broker->config_path() + ": 2 targets"));
  EXPECT_EQ(Describe(Call(*sock, JoinRequest("two", {v1::NET}))), "GRANT net");

  // A syntax error keeps the old config; a target that cannot be opened is unavailable with
  // its reason, and the others are still served.
  std::ofstream(broker->config_path()) << head << "target { name: \"three\" pid: x }\n";
  reloaded = broker->Reload();
  ASSERT_OK(reloaded);
  EXPECT_EQ(reloaded->rfind("READY=1\nSTATUS=reload failed: " + broker->config_path() + ":2:", 0),
            0u)
      << *reloaded;
  EXPECT_TRUE(
      broker->WaitForLog("reload failed, keeping the old config: " + broker->config_path() + ":2:"))
      << broker->log();
  std::ofstream(broker->config_path())
      << head << "\ntarget { name: \"gone\" pid: 999999 }\n"
      << TargetConfig("one", t1->pid()) << TargetConfig("two", t2->pid());
  reloaded = broker->Reload();
  ASSERT_OK(reloaded);
  EXPECT_TRUE(reloaded->starts_with("READY=1\nSTATUS=") && !reloaded->contains("reload failed"))
      << *reloaded;
  EXPECT_TRUE(broker->WaitForLog(broker->config_path() + ":3:1: target 'gone': no process 999999"))
      << broker->log();
  EXPECT_TRUE(
      broker->WaitForLog("reloaded " + broker->config_path() + ": 3 targets (1 unavailable)"))
      << broker->log();
  EXPECT_EQ(Describe(Call(*sock, JoinRequest("two", {v1::NET}))), "GRANT net");
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("one", {v1::NET}))), "GRANT net");
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("gone", {v1::NET}))),
            "UNAVAILABLE: target 'gone' is unavailable: " + broker->config_path() +
                ":3:1: target 'gone': no process 999999");
}

TEST(Broker, StopsCleanlyAndUnlinksTheSocket) {
  ASSERT_TRUE(RequireRoot());
  for (int sig : {SIGTERM, SIGINT}) {
    auto broker = Broker::Start("target { name: \"self\" self: true }\n");
    ASSERT_OK(broker);
    auto idle = Connect(broker->socket());  // an open connection does not hold up the stop
    ASSERT_OK(idle);
    struct stat st;
    ASSERT_EQ(stat(broker->socket().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u) << "default socket_mode";
    EXPECT_EQ(broker->process().Stop(sig), 0) << broker->log();
    EXPECT_NE(stat(broker->socket().c_str(), &st), 0) << "socket removed after signal " << sig;
    EXPECT_NE(broker->log().find("nsbrokerd: stopped"), std::string::npos);
  }
}

TEST(Broker, ConnectionLimitsAnswerResourceExhausted) {
  ASSERT_TRUE(RequireRoot());
  auto broker = Broker::Start(
      "socket_mode: \"0666\"\nmax_connections: 4\nmax_connections_per_uid: 2\n"
      "target { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  std::vector<UniqueFd> held;
  for (int i = 0; i < 2; ++i) {
    auto sock = Connect(broker->socket());
    ASSERT_OK(sock);
    ASSERT_EQ(Describe(Call(*sock, ListRequest())),
              "TARGETS self:" + std::string("cgroup,ipc,mnt,net,pid,time,user,uts,root,cwd"));
    held.push_back(std::move(*sock));
  }
  auto third = Connect(broker->socket());
  ASSERT_OK(third);
  EXPECT_EQ(Describe(Receive(*third)),
            "RESOURCE_EXHAUSTED: uid 0 has too many connections (max_connections_per_uid 2)");
  EXPECT_EQ(Describe(Receive(*third)), "CLIENT ERROR: connection closed by peer");
  // Other uids still get in, up to the total.
  std::string socket = broker->socket();
  std::string others = AsNobody([&] {
    auto a = Connect(socket);
    auto b = Connect(socket);
    if (!a || !b) return std::string("connect failed");
    std::string out = Describe(Call(*a, ListRequest())) + "|" + Describe(Call(*b, ListRequest()));
    auto c = Connect(socket);
    if (!c) return std::string("connect failed");
    return out + "|" + Describe(Receive(*c));
  });
  EXPECT_EQ(others, "TARGETS|TARGETS|RESOURCE_EXHAUSTED: too many connections (max_connections 4)");
  held.clear();
  // The broker learns of those closes on a later loop pass (and of the uid 65534 child's at its
  // exit): once it counts no other client, a new connection is admitted.
  ASSERT_TRUE(WaitForNoOtherClients(broker->socket()));
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("self", {v1::NET}))), "GRANT net");
}

TEST(Broker, IdleConnectionsAreClosed) {
  ASSERT_TRUE(RequireRoot());
  auto broker = Broker::Start("idle_timeout_ms: 200\ntarget { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  auto sock = Connect(broker->socket());
  ASSERT_OK(sock);
  ASSERT_EQ(Describe(Call(*sock, JoinRequest("self", {v1::UTS}))), "GRANT uts");
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Describe(Receive(*sock)), "CLIENT ERROR: connection closed by peer");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(Broker, DescriptorBearingAndGarbageRequestsAreRefused) {
  ASSERT_TRUE(RequireRoot());
  auto broker = Broker::Start("target { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  auto sock = Connect(broker->socket());
  ASSERT_OK(sock);
  ASSERT_EQ(Describe(Call(*sock, ListRequest())).substr(0, 12), "TARGETS self");
  std::size_t broker_fds = CountFdsOf(broker->ServingPid());

  std::string list;
  ListRequest().SerializeToString(&list);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  int fds[2] = {pr.get(), pw.get()};
  ASSERT_OK(SendDatagram(*sock, list, fds));
  EXPECT_EQ(Describe(Receive(*sock)),
            "INVALID_REQUEST: message carries 2 descriptors, at most 0 expected");
  pw.reset();
  char byte;
  EXPECT_EQ(read(pr.get(), &byte, 1), 0) << "the broker closed the pipe's write end";

  ASSERT_OK(SendDatagram(*sock, "\x08\x01\x12\xff\xff garbage"));
  EXPECT_EQ(Describe(Receive(*sock)), "INVALID_REQUEST: malformed request");
  std::string huge(kMaxMessageSize + 10, 'x');
  ASSERT_EQ(send(sock->get(), huge.data(), huge.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(huge.size()));
  EXPECT_EQ(Describe(Receive(*sock)), "INVALID_REQUEST: message exceeds 65536 bytes");
  v1::Request future = ListRequest();
  future.set_protocol_version(7);
  ASSERT_OK(SendMessage(*sock, future));
  EXPECT_EQ(Describe(Receive(*sock)),
            "UNSUPPORTED_VERSION: protocol version 7 is not supported "
            "(this broker speaks 1)");
  // The same connection, and everyone else, is still served; nothing leaked in the broker.
  EXPECT_EQ(Describe(Call(*sock, JoinRequest("self", {v1::NET}))), "GRANT net");
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("self", {v1::IPC}))), "GRANT ipc");
  // The broker notices the one-shot connection's close asynchronously; once it counts only
  // `sock` and the asking connection, it holds what it held before.
  auto asking = Connect(broker->socket());
  ASSERT_OK(asking);
  std::size_t now = 0;
  for (int i = 0; i < 10000; ++i) {
    auto status = Call(*asking, StatusRequest());
    ASSERT_OK(status);
    if (status->response.status().active_connections() == 2) {
      now = CountFdsOf(broker->ServingPid()) - 1;
      break;
    }
  }
  EXPECT_GT(now, 0u);
  EXPECT_LE(now, broker_fds);
  asking->reset();
  // An empty SEQPACKET datagram reads like end-of-file: that connection is closed, and only it.
  ASSERT_OK(SendDatagram(*sock, ""));
  EXPECT_EQ(Describe(Receive(*sock)), "CLIENT ERROR: connection closed by peer");
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("self", {v1::IPC}))), "GRANT ipc");
}

TEST(Broker, ASlowReaderIsCutOffWhileOthersAreServed) {
  ASSERT_TRUE(RequireRoot());
  auto broker =
      Broker::Start("request_timeout_ms: 300\ntarget { name: \"self\" self: true }\n", {"-v"});
  ASSERT_OK(broker);
  auto slow = Connect(broker->socket());
  ASSERT_OK(slow);
  ASSERT_EQ(fcntl(slow->get(), F_SETFL, O_NONBLOCK), 0);
  std::string list;
  ListRequest().SerializeToString(&list);
  // Requests without ever reading: our receive queue fills, the broker stops reading us, and
  // our own sends finally block.
  int sent = 0;
  for (int quiet = 0; quiet < 5 && sent < 1000000;) {
    if (send(slow->get(), list.data(), list.size(), MSG_NOSIGNAL) > 0) {
      ++sent;
      quiet = 0;
      continue;
    }
    ASSERT_EQ(errno, EAGAIN);
    ++quiet;  // the broker may still be catching up; once it stops reading us, it stays stopped
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("self", {v1::NET}))), "GRANT net");
  ASSERT_TRUE(broker->WaitForLog("closed: response not read within request_timeout_ms"))
      << broker->log();
  ASSERT_EQ(fcntl(slow->get(), F_SETFL, 0), 0);
  int answered = 0;
  std::string last;
  for (;;) {
    auto reply = Receive(*slow);
    if (!reply) {
      last = reply.error().message;
      break;
    }
    ++answered;
  }
  // Closing with our requests unread makes the kernel reset the connection (unix(7)).
  EXPECT_EQ(last, "recvmsg: Connection reset by peer") << "answered " << answered;
  EXPECT_TRUE(broker->WaitForLog("closed: response not read within request_timeout_ms"))
      << broker->log();
  EXPECT_LT(answered, sent);
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("self", {v1::UTS}))), "GRANT uts");
}

TEST(Broker, UnreadDescriptorsAreBoundedPerUid) {
  ASSERT_TRUE(RequireRoot());
  auto broker =
      Broker::Start("max_inflight_fds_per_uid: 12\ntarget { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  auto a = Connect(broker->socket());
  auto b = Connect(broker->socket());
  ASSERT_OK(a);
  ASSERT_OK(b);
  // Eight descriptors each, never read: the second request would pass 12 unread.
  ASSERT_OK(SendMessage(*a, JoinRequest("self")));
  pollfd answered{a->get(), POLLIN, 0};  // a's grant is sent (and sits unread)
  ASSERT_EQ(poll(&answered, 1, 5000), 1);
  ASSERT_OK(SendMessage(*b, JoinRequest("self")));
  EXPECT_EQ(Describe(Receive(*b)),
            "RESOURCE_EXHAUSTED: target 'self': uid 0 has too many descriptors in unread "
            "responses");
  EXPECT_EQ(Describe(Call(*b, JoinRequest("self", {v1::NET, v1::UTS}))), "GRANT net,uts");
  EXPECT_EQ(Describe(Receive(*a)), "GRANT cgroup,ipc,mnt,net,pid,time,user,uts");
  // Read now: the budget is back.
  EXPECT_EQ(Describe(Call(*b, JoinRequest("self"))), "GRANT cgroup,ipc,mnt,net,pid,time,user,uts");
}

TEST(Broker, EmfileOnAcceptDoesNotStopTheBroker) {
  ASSERT_TRUE(RequireRoot());
  auto broker = Broker::Start("target { name: \"self\" self: true }\n");
  ASSERT_OK(broker);
  rlimit saved{};
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, nullptr, &saved), 0);
  rlimit tight = saved;
  tight.rlim_cur = CountFdsOf(broker->pid()) + 1;
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, &tight, nullptr), 0);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 4; ++i) {
    auto c = Connect(broker->socket());
    ASSERT_OK(c);
    clients.push_back(std::move(*c));
  }
  ASSERT_TRUE(broker->WaitForLog("accept: Too many open files; pausing accepts")) << broker->log();
  clients.clear();
  ASSERT_EQ(prlimit(broker->pid(), RLIMIT_NOFILE, &saved, nullptr), 0);
  EXPECT_EQ(Describe(CallOnce(broker->socket(), JoinRequest("self", {v1::NET}))), "GRANT net");
  EXPECT_TRUE(broker->process().running());
}

TEST(Broker, RunAsDropsPrivilegesAfterOpeningTargets) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "held"});
  ASSERT_OK(target);
  auto broker =
      Broker::Start(kOpenSocket + TargetConfig("web1", target->pid(), "  allow { uid: 65534 }\n") +
                    "run_as: \"nobody\"\n");
  ASSERT_OK(broker);
  // The socket accepts as soon as it listens, before the drop; "serving" is logged after it.
  ASSERT_TRUE(broker->WaitForLog("serving ")) << broker->log();
  // The server, forked by the root opener (docs/PRIVSEP.md), is the one that dropped.
  auto server = broker->ServerPid();
  ASSERT_OK(server);
  std::ifstream status("/proc/" + std::to_string(*server) + "/status");
  std::string line, uids, groups;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) uids = line;
    if (line.rfind("Groups:", 0) == 0) groups = line;
  }
  EXPECT_EQ(uids, "Uid:\t65534\t65534\t65534\t65534");
  EXPECT_EQ(groups, "Groups:\t65534 ");
  std::string socket = broker->socket();
  ino_t net = NsInode(target->NsPath("net"));
  EXPECT_EQ(AsNobody([&] {
              auto r = CallOnce(socket, JoinRequest("web1", {v1::NET}));
              return Describe(r) + (r && FdInode(r->fds[0]) == net ? " same" : " other");
            }),
            "GRANT net same");
}

TEST(Broker, CheckConfigExitCodes) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  dir.Write("good.conf", "target { name: \"self\" self: true }\n");
  dir.Write("bad.conf", "\ntarget { name: \"self\" self: true allow { user: \"no-such\" } }\n");
  auto good = RunCommand({BrokerBinary(), "-c", dir.Join("good.conf"), "--check-config"});
  EXPECT_EQ(good.status, 0) << good.err;
  EXPECT_EQ(good.out, dir.Join("good.conf") + ": OK, 1 targets\n");
  auto bad = RunCommand({BrokerBinary(), "-c", dir.Join("bad.conf"), "--check-config"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err, dir.Join("bad.conf") + ":2:42: target 'self': unknown user 'no-such'\n");
  auto missing = RunCommand({BrokerBinary(), "-c", dir.Join("none.conf"), "--check-config"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, dir.Join("none.conf") + ": No such file or directory\n");
  EXPECT_EQ(RunCommand({BrokerBinary(), "--bogus"}).status, 2);
  EXPECT_EQ(RunCommand({BrokerBinary(), "--self", "-c", dir.Join("good.conf")}).status, 2);
}

// Starts nsbrokerd with `args`, extra environment, and optionally `listen_fd` as fd 3.
ChildProcess StartRaw(const std::vector<std::string>& args, const std::string& log,
                      std::vector<std::string> env = {}, int listen_fd = -1) {
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out, 1);
    dup2(out, 2);
    if (listen_fd >= 0) {
      // dup2 clears close-on-exec on the new descriptor, but dup2(3, 3) does nothing.
      if (listen_fd == 3) {
        fcntl(3, F_SETFD, 0);
      } else {
        dup2(listen_fd, 3);
      }
      env.push_back("LISTEN_PID=" + std::to_string(getpid()));
      env.push_back("LISTEN_FDS=1");
    }
    for (auto& e : env) putenv(e.data());
    std::vector<char*> argv;
    std::string binary = BrokerBinary();
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return ChildProcess(pid);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Broker, SelfIsTheEmbeddedDefault) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  std::string socket = dir.Join("self.sock");
  ChildProcess broker = StartRaw({"--socket", socket, "--self"}, dir.Join("log"));
  ASSERT_TRUE(WaitForSocket(socket)) << ReadFile(dir.Join("log"));
  auto reply = CallOnce(socket, JoinRequest("self", {v1::NET, v1::MNT}));
  ASSERT_EQ(Describe(reply), "GRANT mnt,net");
  EXPECT_EQ(FdInode(reply->fds[1]), NsInode("/proc/" + std::to_string(broker.pid()) + "/ns/net"));
  struct stat st;
  ASSERT_EQ(stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "root only";
  EXPECT_EQ(broker.Stop(SIGTERM), 0);
  EXPECT_NE(stat(socket.c_str(), &st), 0);
}

TEST(Broker, SocketActivationAndReadiness) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  std::string path = dir.Join("activated.sock");
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener.get(), 16), 0);
  std::string notify_path = dir.Join("notify");
  UniqueFd notify(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un naddr{};
  naddr.sun_family = AF_UNIX;
  std::strncpy(naddr.sun_path, notify_path.c_str(), sizeof naddr.sun_path - 1);
  ASSERT_EQ(bind(notify.get(), reinterpret_cast<sockaddr*>(&naddr), sizeof naddr), 0);
  timeval tv{5, 0};
  setsockopt(notify.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  dir.Write("c.conf",
            "socket: \"" + dir.Join("unused.sock") + "\"\ntarget { name: \"self\" self: true }\n");

  ChildProcess broker = StartRaw({"-c", dir.Join("c.conf")}, dir.Join("log"),
                                 {"NOTIFY_SOCKET=" + notify_path}, listener.get());
  char buf[64] = {};
  ssize_t n = recv(notify.get(), buf, sizeof buf - 1, 0);
  ASSERT_GT(n, 0) << ReadFile(dir.Join("log"));
  EXPECT_TRUE(std::string(buf, static_cast<std::size_t>(n)).starts_with("READY=1\nSTATUS="))
      << buf;  // systemd_test checks the rest of the protocol
  EXPECT_EQ(Describe(CallOnce(path, JoinRequest("self", {v1::UTS}))), "GRANT uts");
  struct stat st;
  EXPECT_NE(stat(dir.Join("unused.sock").c_str(), &st), 0) << "nothing bound";
  EXPECT_EQ(broker.Stop(SIGTERM), 0);
  EXPECT_EQ(stat(path.c_str(), &st), 0) << "systemd's socket is not ours to remove";
}

TEST(Broker, StaleSocketIsReplacedAndOtherFilesRefused) {
  ASSERT_TRUE(RequireRoot());
  TempDir dir;
  std::string path = dir.Join("nsbroker.sock");
  {
    UniqueFd stale(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  std::string config = "socket: \"" + path + "\"\ntarget { name: \"self\" self: true }\n";
  auto broker = Broker::Start(config);
  ASSERT_OK(broker) << "a stale socket file is replaced";
  auto second = RunCommand({BrokerBinary(), "-c", broker->config_path()});
  EXPECT_EQ(second.status, 1);
  EXPECT_EQ(second.err, "nsbrokerd: " + path + ": another broker is serving it\n");
  EXPECT_EQ(Describe(CallOnce(path, JoinRequest("self", {v1::NET}))), "GRANT net");

  dir.Write("plain", "not a socket");
  dir.Write("c.conf", "socket: \"" + dir.Join("plain") + "\"\n");
  auto refused = RunCommand({BrokerBinary(), "-c", dir.Join("c.conf")});
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.err, "nsbrokerd: " + dir.Join("plain") + " exists and is not a socket\n");
  EXPECT_EQ(ReadFile(dir.Join("plain")), "not a socket");
}

}  // namespace
}  // namespace nsbroker::testing
