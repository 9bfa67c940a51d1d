// The broker's uWSGI compatibility: greeting bytes, send order and kinds as pure functions,
// then the listener on a real event loop and real sockets, read back by libnsjoin's parser.
#include "uwsgi_compat.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "catalog.h"
#include "handler.h"
#include "harness.h"
#include "nsbroker/uwsgi.h"
#include "server.h"
#include "test_util.h"

namespace nsbroker {
namespace {

constexpr PeerIdentity kRoot{.pid = 10, .uid = 0, .gid = 0};
constexpr PeerIdentity kNobody{.pid = 11, .uid = 65534, .gid = 65534};

TEST(UwsgiCompat, GreetingIsUwsgisFifteenBytes) {
  std::string g = UwsgiGreeting(7);
  ASSERT_EQ(g.size(), 15u);
  ASSERT_EQ(g.size(), kUwsgiGreetingSize);  // what libnsjoin's parser expects
  EXPECT_EQ(g.substr(0, 11), "uwsgi-setns");
  int count;
  std::memcpy(&count, g.data() + 11, sizeof count);
  EXPECT_EQ(count, 7);
}

TEST(UwsgiCompat, SendListPutsMntLastAndLeavesOutUserRootCwd) {
  Decision decision;
  int next = 100;  // numbers only: nothing is sent
  // In wire order, as the core builds it, with a second net that must not go out twice.
  for (NsKind kind :
       {NsKind::kCgroup, NsKind::kIpc, NsKind::kMnt, NsKind::kNet, NsKind::kPid, NsKind::kTime,
        NsKind::kUser, NsKind::kUts, NsKind::kRoot, NsKind::kCwd, NsKind::kNet}) {
    decision.entries.push_back({.kind = kind, .fd = next++});
  }
  // net(103) uts(107) ipc(101) pid(104) cgroup(100) time(105) mnt(102)
  EXPECT_EQ(UwsgiSendList(decision), (std::vector<int>{103, 107, 101, 104, 100, 105, 102}));
}

TEST(UwsgiCompat, SendListOfARefusalOrOfEntriesWithoutDescriptorsIsEmpty) {
  Decision refused;
  refused.error = Error{ErrorCode::kPermissionDenied, 0, "no"};
  refused.entries.push_back({.kind = NsKind::kNet, .fd = 3});
  EXPECT_TRUE(UwsgiSendList(refused).empty());
  Decision by_jid;
  by_jid.entries.push_back({.kind = NsKind::kNet, .fd = -1});
  EXPECT_TRUE(UwsgiSendList(by_jid).empty());
}

class UwsgiCompatCatalog : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = ParseConfig(R"(
target { name: "self" self: true
         allow { uid: 65534 kinds: [UTS, USER] } allow { gid: 4242 kinds: [USER] } }
target { name: "netonly" self: true expose: [NET] }
)",
                              "u.conf");
    ASSERT_OK(config);
    auto catalog = Catalog::Open(std::move(*config));
    ASSERT_OK(catalog);
    catalog_ = std::move(*catalog);
  }
  const TargetSpec* Spec(const char* name) { return catalog_->Find(name)->spec; }
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(UwsgiCompatCatalog, RequestIsWhatPolicyAllowsThatUwsgiCanUse) {
  EXPECT_EQ(UsableKinds(Spec("self"), kRoot, UwsgiKinds()), UwsgiKinds());  // everything but user
  EXPECT_EQ(UsableKinds(Spec("self"), kNobody, UwsgiKinds()), KindBit(NsKind::kUts));
  EXPECT_EQ(UsableKinds(Spec("netonly"), kRoot, UwsgiKinds()), KindBit(NsKind::kNet));
}

TEST_F(UwsgiCompatCatalog, RequestOfAPeerWithNothingUsableIsRefusedByPolicy) {
  PeerIdentity stranger{.pid = 12, .uid = 4000, .gid = 4000};
  PeerIdentity user_only{.pid = 13, .uid = 4001, .gid = 4242};
  for (const PeerIdentity& peer : {stranger, user_only}) {
    KindSet request = UsableKinds(Spec("self"), peer, UwsgiKinds());
    EXPECT_FALSE(KindSetHas(request, NsKind::kUser));
    JoinDecision d = DecideJoin(*Spec("self"), peer, request);
    EXPECT_FALSE(d.granted) << peer.uid;
    EXPECT_EQ(d.error.code, ErrorCode::kPermissionDenied) << d.error.message;
  }
}

TEST(UwsgiCompatBind, NeedsATarget) {
  testing::TempDir dir;
  Config config;
  config.file = "x.conf";
  config.uwsgi_socket = dir.Join("u.sock");
  auto fd = BindUwsgiSocket(config);
  ASSERT_FALSE(fd.has_value());
  EXPECT_EQ(fd.error().code, ErrorCode::kInvalidRequest);
  EXPECT_NE(fd.error().message.find("needs uwsgi_target"), std::string::npos);
}

// The listener on a real loop: a root peer gets the greeting and the descriptors, in order,
// and the connection is kept (and counted) until the peer closes it.
TEST(UwsgiListenerLoop, GrantsARootPeerAndClosesWhenThePeerDoes) {
  testing::TempDir dir;
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  std::size_t baseline = testing::CountOpenFds();
  auto config = ParseConfig("uwsgi_socket: \"" + dir.Join("u.sock") +
                                "\" uwsgi_target: \"self\" target { name: \"self\" self: true }",
                            "l.conf");
  ASSERT_OK(config);
  auto catalog = Catalog::Open(std::move(*config));
  ASSERT_OK(catalog);
  auto listen_fd = BindUwsgiSocket((*catalog)->config());
  ASSERT_OK(listen_fd);
  auto audit = AuditLog::Open(dir.Join("audit.log"));
  ASSERT_OK(audit);
  {
    Server server(loop->base(), std::move(*catalog), std::move(*audit));
    UwsgiListener listener(server, std::move(*listen_fd));

    UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, dir.Join("u.sock").c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    for (int i = 0; i < 100 && server.stats().grants == 0; ++i) {
      event_base_loop(loop->base(), EVLOOP_NONBLOCK);
    }
    ASSERT_EQ(listener.open_connections(), 1u);
    EXPECT_EQ(server.stats().active_connections, 1u);
    EXPECT_EQ(server.stats().grants, 1u);

    // Unread descriptors count against the uid's budget, as native responses do.
    EXPECT_EQ(server.FdBudget(0), 4096u - 7u);
    auto grant = ReadUwsgiGrant(client, "self");
    ASSERT_OK(grant);
    EXPECT_EQ(server.FdBudget(0), 4096u);
    std::vector<NsKind> kinds;
    for (const GrantEntry& e : grant->entries) kinds.push_back(e.kind);
    EXPECT_EQ(kinds, (std::vector<NsKind>{NsKind::kNet, NsKind::kUts, NsKind::kIpc, NsKind::kPid,
                                          NsKind::kCgroup, NsKind::kTime, NsKind::kMnt}));
    grant = MakeError(ErrorCode::kInternal, "dropped");
    client.reset();
    for (int i = 0; i < 100 && listener.open_connections() != 0; ++i) {
      event_base_loop(loop->base(), EVLOOP_NONBLOCK);
    }
    EXPECT_EQ(listener.open_connections(), 0u);
    EXPECT_EQ(server.stats().active_connections, 0u);
  }
  EXPECT_EQ(testing::CountOpenFds(), baseline);
}

TEST(UwsgiListenerLoop, ClosesAPeerThatNeverReads) {
  testing::TempDir dir;
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  auto config = ParseConfig("idle_timeout_ms: 50 uwsgi_socket: \"" + dir.Join("u.sock") +
                                "\" uwsgi_target: \"self\" target { name: \"self\" self: true }",
                            "l.conf");
  ASSERT_OK(config);
  auto catalog = Catalog::Open(std::move(*config));
  ASSERT_OK(catalog);
  auto listen_fd = BindUwsgiSocket((*catalog)->config());
  ASSERT_OK(listen_fd);
  auto audit = AuditLog::Open(dir.Join("audit.log"));
  ASSERT_OK(audit);
  Server server(loop->base(), std::move(*catalog), std::move(*audit));
  UwsgiListener listener(server, std::move(*listen_fd));
  UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, dir.Join("u.sock").c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  bool opened = false;
  while (std::chrono::steady_clock::now() < deadline) {
    event_base_loop(loop->base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (listener.open_connections() == 1) opened = true;
    if (opened && listener.open_connections() == 0) break;
    usleep(1000);
  }
  EXPECT_TRUE(opened);
  EXPECT_EQ(listener.open_connections(), 0u);
  EXPECT_EQ(server.stats().active_connections, 0u);
}

}  // namespace
}  // namespace nsbroker
