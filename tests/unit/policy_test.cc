// The policy table: uid, gid, supplementary group, kinds narrowing, root, deny by default.
#include "policy.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_util.h"
#include "wire.h"

namespace nsbroker {
namespace {

constexpr KindSet kNet = KindBit(NsKind::kNet);
constexpr KindSet kUts = KindBit(NsKind::kUts);
constexpr KindSet kMnt = KindBit(NsKind::kMnt);
constexpr KindSet kPid = KindBit(NsKind::kPid);

TargetSpec Web() {
  TargetSpec spec{.name = "web1", .source = SourceType::kPid, .pid = 1};
  spec.expose = kNet | kUts | kMnt | kPid;
  spec.rules = {{Rule::Who::kUid, 1000, "uid 1000", kNet | kUts | kMnt | kPid},
                {Rule::Who::kGid, 50, "gid 50", kNet},
                {Rule::Who::kGid, 60, "group ops", kUts}};
  return spec;
}

PeerIdentity Peer(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  return {.pid = 42, .uid = uid, .gid = gid, .groups = std::move(groups)};
}

struct Row {
  const char* name;
  PeerIdentity peer;
  KindSet requested;
  bool granted;
  KindSet kinds;
  ErrorCode code;
  const char* message;
};

TEST(Policy, Table) {
  const Row rows[] = {
      {"root gets all", Peer(0, 0), 0, true, kNet | kUts | kMnt | kPid, {}, ""},
      {"root any subset", Peer(0, 0), kMnt, true, kMnt, {}, ""},
      {"uid rule, all", Peer(1000, 1000), 0, true, kNet | kUts | kMnt | kPid, {}, ""},
      {"primary gid", Peer(7, 50), 0, true, kNet, {}, ""},
      {"primary gid asks net", Peer(7, 50), kNet, true, kNet, {}, ""},
      {"primary gid narrowed", Peer(7, 50), kNet | kMnt | kPid, false, kMnt | kPid,
       ErrorCode::kPermissionDenied, "target 'web1': uid 7 may not join mnt,pid"},
      {"supplementary group", Peer(8, 8, {3, 60}), kUts, true, kUts, {}, ""},
      {"two groups add up", Peer(8, 8, {50, 60}), 0, true, kNet | kUts, {}, ""},
      {"unknown uid denied", Peer(65534, 65534), 0, false, kNet | kUts | kMnt | kPid,
       ErrorCode::kPermissionDenied, "target 'web1': uid 65534 may not join mnt,net,pid,uts"},
      {"unknown uid, one kind", Peer(65534, 65534), kMnt | kPid, false, kMnt | kPid,
       ErrorCode::kPermissionDenied, "target 'web1': uid 65534 may not join mnt,pid"},
      {"stranger asks unexposed", Peer(65534, 65534), KindBit(NsKind::kTime), false,
       KindBit(NsKind::kTime), ErrorCode::kPermissionDenied,
       "target 'web1': uid 65534 may not join time"},
      {"allowed asks unexposed", Peer(1000, 1000), kNet | KindBit(NsKind::kTime), false,
       KindBit(NsKind::kTime), ErrorCode::kNotFound, "target 'web1': does not expose time"},
  };
  TargetSpec web = Web();
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    JoinDecision d = DecideJoin(web, row.peer, row.requested);
    EXPECT_EQ(d.granted, row.granted);
    EXPECT_EQ(KindSetString(d.kinds), KindSetString(row.kinds));
    if (!row.granted) {
      EXPECT_EQ(d.error.code, row.code);
      EXPECT_EQ(d.error.message, row.message);
    }
  }
}

TEST(Policy, RootAndCwdOnlyWhenNamed) {
  const KindSet dirs = KindBit(NsKind::kRoot) | KindBit(NsKind::kCwd);
  TargetSpec web = Web();
  web.expose |= dirs;
  web.rules.push_back({Rule::Who::kUid, 2000, "uid 2000", kNet | KindBit(NsKind::kRoot)});
  EXPECT_EQ(KindSetString(DecideJoin(web, Peer(0, 0), 0).kinds), "mnt,net,pid,uts");
  EXPECT_EQ(KindSetString(DecideJoin(web, Peer(0, 0), KindBit(NsKind::kRoot)).kinds),
            "mnt,net,pid,uts,root");
  EXPECT_EQ(KindSetString(DecideJoin(web, Peer(0, 0), kNet | KindBit(NsKind::kCwd)).kinds),
            "net,cwd");
  EXPECT_EQ(KindSetString(DecideJoin(web, Peer(2000, 2000), KindBit(NsKind::kRoot)).kinds),
            "net,root");
  JoinDecision refused = DecideJoin(web, Peer(2000, 2000), KindBit(NsKind::kCwd));
  EXPECT_FALSE(refused.granted);
  EXPECT_EQ(refused.error.message, "target 'web1': uid 2000 may not join cwd");
  // A target of directories only still answers an empty Join.
  web.expose = dirs;
  EXPECT_EQ(KindSetString(DecideJoin(web, Peer(0, 0), 0).kinds), "root,cwd");
}

TEST(Policy, ReasonNamesTheRules) {
  TargetSpec web = Web();
  EXPECT_EQ(DecideJoin(web, Peer(0, 0), 0).reason, "root");
  EXPECT_EQ(DecideJoin(web, Peer(8, 8, {50, 60}), 0).reason, "allow gid 50, allow group ops");
  EXPECT_EQ(DecideJoin(web, Peer(65534, 65534), 0).reason, "no allow rule matches");
}

TEST(Policy, AllowedKindsIsEmptyForStrangers) {
  EXPECT_EQ(AllowedKinds(Web(), Peer(65534, 65534)).kinds, 0u);
  EXPECT_EQ(AllowedKinds(Web(), Peer(0, 0)).kinds, kNet | kUts | kMnt | kPid);
}

TEST(Peer, IdentityComesFromTheKernel) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  auto peer = ReadPeerIdentity(pair->first);
  ASSERT_OK(peer);
  EXPECT_EQ(peer->pid, getpid());
  EXPECT_EQ(peer->uid, getuid());
  EXPECT_EQ(peer->gid, getgid());
  int n = getgroups(0, nullptr);
  EXPECT_EQ(peer->groups.size(), static_cast<std::size_t>(n));
}

}  // namespace
}  // namespace nsbroker
