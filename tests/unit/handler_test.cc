// The request path as a pure function: bytes and a peer in, response + descriptors + audit
// record out, against a catalog of real targets.
#include "handler.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "harness.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker {
namespace {

constexpr PeerIdentity kRoot{.pid = 10, .uid = 0, .gid = 0};
constexpr uid_t kNobody = 65534;

std::string Bytes(const v1::Request& request) {
  std::string out;
  request.SerializeToString(&out);
  return out;
}

std::string Join(const std::string& target, std::vector<v1::Kind> kinds = {}) {
  v1::Request r;
  r.set_protocol_version(kProtocolVersion);
  r.mutable_join()->set_target(target);
  for (auto k : kinds) r.mutable_join()->add_kinds(k);
  return Bytes(r);
}

class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = ParseConfig(R"(
target { name: "self" self: true allow { uid: 65534 kinds: [UTS] } }
target { name: "open" self: true expose: [NET, UTS] allow { gid: 4242 } }
)",
                              "h.conf");
    ASSERT_OK(config);
    auto catalog = Catalog::Open(std::move(*config));
    ASSERT_OK(catalog);
    catalog_ = std::move(*catalog);
  }
  Outcome Handle(const PeerIdentity& peer, const std::string& bytes, std::size_t budget = 4096) {
    return HandleRequest(*catalog_, stats_, peer, bytes, budget);
  }
  std::unique_ptr<Catalog> catalog_;
  Stats stats_;
};

TEST_F(HandlerTest, RootJoinGrantsVerifiedDescriptors) {
  Outcome out = Handle(kRoot, Join("self", {v1::NET, v1::UTS}));
  ASSERT_TRUE(out.response.has_grant()) << out.response.DebugString();
  const auto& grant = out.response.grant();
  EXPECT_EQ(grant.target(), "self");
  ASSERT_EQ(grant.entries_size(), 2);
  ASSERT_EQ(out.fds.size(), 2u);
  EXPECT_EQ(grant.entries(0).kind(), v1::NET);
  EXPECT_EQ(grant.entries(0).fd_index(), 0u);
  EXPECT_EQ(grant.entries(0).inode(), testing::NsInode("/proc/self/ns/net"));
  EXPECT_NE(grant.entries(0).ns_id(), 0u);
  EXPECT_EQ(grant.entries(1).kind(), v1::UTS);
  struct stat st;
  ASSERT_EQ(fstat(out.fds[1].get(), &st), 0);
  EXPECT_EQ(st.st_ino, testing::NsInode("/proc/self/ns/uts"));
  ASSERT_TRUE(out.audit.has_value());
  EXPECT_TRUE(out.audit->granted);
  EXPECT_EQ(out.audit->reason, "root");
  EXPECT_EQ(out.audit->peer_pid, 10);
  EXPECT_EQ(out.tally, Outcome::Tally::kGrant);
  // What goes on the wire passes the client's own checks.
  std::string bytes;
  out.response.SerializeToString(&bytes);
  EXPECT_OK(DecodeResponse(bytes, out.fds.size()));
}

TEST_F(HandlerTest, EmptyKindsMeansEverythingAllowed) {
  // Every namespace; ROOT and CWD only when named.
  Outcome root = Handle(kRoot, Join("self"));
  ASSERT_TRUE(root.response.has_grant());
  EXPECT_EQ(root.response.grant().entries_size(), 8);
  for (const auto& entry : root.response.grant().entries()) {
    EXPECT_NE(entry.kind(), v1::ROOT);
    EXPECT_NE(entry.kind(), v1::CWD);
  }
  Outcome with_root = Handle(kRoot, Join("self", {v1::ROOT}));
  ASSERT_TRUE(with_root.response.has_grant());
  ASSERT_EQ(with_root.response.grant().entries_size(), 9);
  EXPECT_EQ(with_root.response.grant().entries(8).kind(), v1::ROOT);
  Outcome nobody = Handle({.pid = 5, .uid = kNobody, .gid = kNobody}, Join("self"));
  ASSERT_TRUE(nobody.response.has_grant()) << nobody.response.DebugString();
  ASSERT_EQ(nobody.response.grant().entries_size(), 1);
  EXPECT_EQ(nobody.response.grant().entries(0).kind(), v1::UTS);
}

TEST_F(HandlerTest, DenialNamesTargetUidAndKinds) {
  Outcome out =
      Handle({.pid = 5, .uid = kNobody, .gid = kNobody}, Join("self", {v1::MNT, v1::PID}));
  ASSERT_TRUE(out.response.has_error());
  EXPECT_EQ(out.response.error().code(), v1::Error::PERMISSION_DENIED);
  EXPECT_EQ(out.response.error().message(), "target 'self': uid 65534 may not join mnt,pid");
  EXPECT_TRUE(out.fds.empty());
  ASSERT_TRUE(out.audit.has_value());
  EXPECT_FALSE(out.audit->granted);
  EXPECT_EQ(KindSetString(out.audit->kinds), "mnt,pid");
  EXPECT_EQ(out.tally, Outcome::Tally::kDenial);
}

TEST_F(HandlerTest, SupplementaryGroupIsHonoured) {
  PeerIdentity peer{.pid = 5, .uid = 1234, .gid = 1234, .groups = {4242}};
  Outcome out = Handle(peer, Join("open"));
  ASSERT_TRUE(out.response.has_grant()) << out.response.DebugString();
  EXPECT_EQ(out.response.grant().entries_size(), 2);
  EXPECT_EQ(out.audit->reason, "allow gid 4242");
}

TEST_F(HandlerTest, UnknownTargetIsNotFoundAndAudited) {
  Outcome out = Handle(kRoot, Join("nope"));
  EXPECT_EQ(out.response.error().code(), v1::Error::NOT_FOUND);
  EXPECT_EQ(out.response.error().message(), "unknown target 'nope'");
  ASSERT_TRUE(out.audit.has_value());
  EXPECT_EQ(out.audit->target, "nope");
}

TEST_F(HandlerTest, GarbageAndBadVersionsAreRefused) {
  Outcome garbage = Handle(kRoot, "\xff\xff\xff garbage");
  EXPECT_EQ(garbage.response.error().code(), v1::Error::INVALID_REQUEST);
  // It might have been a Join: audited, naming nothing of what the peer sent.
  ASSERT_TRUE(garbage.audit.has_value());
  EXPECT_EQ(garbage.audit->target, "?");
  EXPECT_EQ(garbage.audit->reason, "unreadable request: malformed request");
  v1::Request old;
  old.set_protocol_version(2);
  old.mutable_list();
  EXPECT_EQ(Handle(kRoot, Bytes(old)).response.error().code(), v1::Error::UNSUPPORTED_VERSION);
  v1::Request empty;
  empty.set_protocol_version(kProtocolVersion);
  EXPECT_EQ(Handle(kRoot, Bytes(empty)).response.error().code(), v1::Error::INVALID_REQUEST);
  std::string unknown_kind = Join("self", {static_cast<v1::Kind>(99)});
  Outcome k = Handle(kRoot, unknown_kind);
  EXPECT_EQ(k.response.error().code(), v1::Error::INVALID_REQUEST);
  EXPECT_EQ(k.response.error().message(), "target 'self': unknown kind 99");
  Outcome huge = Handle(kRoot, Join(std::string(1000, 'x')));
  EXPECT_EQ(huge.response.error().message(), "unknown target (name of 1000 bytes)");
}

TEST_F(HandlerTest, DescriptorBudgetIsEnforced) {
  Outcome out = Handle(kRoot, Join("self", {v1::NET, v1::UTS}), /*budget=*/1);
  EXPECT_EQ(out.response.error().code(), v1::Error::RESOURCE_EXHAUSTED);
  EXPECT_EQ(out.response.error().message(),
            "target 'self': uid 0 has too many descriptors in unread responses");
  EXPECT_TRUE(Handle(kRoot, Join("self", {v1::NET, v1::UTS}), 2).response.has_grant());
}

TEST_F(HandlerTest, GoneTargetIsUnavailable) {
  catalog_->entries()[0].gone = "process 77 exited";
  Outcome out = Handle(kRoot, Join("self"));
  EXPECT_EQ(out.response.error().code(), v1::Error::UNAVAILABLE);
  EXPECT_EQ(out.response.error().message(), "target 'self' is unavailable: process 77 exited");
  // A stranger learns nothing about availability, nor that the target exists.
  Outcome stranger = Handle({.uid = 999, .gid = 999}, Join("self", {v1::NET}));
  EXPECT_EQ(stranger.response.error().code(), v1::Error::NOT_FOUND);
  EXPECT_EQ(stranger.response.error().message(), "unknown target 'self'");
}

TEST_F(HandlerTest, ListShowsWhatThePeerMayJoin) {
  v1::Request list;
  list.set_protocol_version(kProtocolVersion);
  list.mutable_list();
  Outcome nobody = Handle({.uid = kNobody, .gid = kNobody}, Bytes(list));
  ASSERT_TRUE(nobody.response.has_targets());
  ASSERT_EQ(nobody.response.targets().targets_size(), 1);
  EXPECT_EQ(nobody.response.targets().targets(0).name(), "self");
  ASSERT_EQ(nobody.response.targets().targets(0).kinds_size(), 1);
  EXPECT_EQ(nobody.response.targets().targets(0).kinds(0), v1::UTS);
  Outcome root = Handle(kRoot, Bytes(list));
  EXPECT_EQ(root.response.targets().targets_size(), 2);
}

TEST_F(HandlerTest, StatusIsForRootOnly) {
  v1::Request status;
  status.set_protocol_version(kProtocolVersion);
  status.mutable_status();
  stats_.grants = 3;
  Outcome root = Handle(kRoot, Bytes(status));
  ASSERT_TRUE(root.response.has_status());
  EXPECT_EQ(root.response.status().grants(), 3u);
  EXPECT_EQ(root.response.status().targets_size(), 2);
  EXPECT_TRUE(root.response.status().targets(0).available());
  Outcome nobody = Handle({.uid = kNobody, .gid = kNobody}, Bytes(status));
  EXPECT_EQ(nobody.response.error().code(), v1::Error::PERMISSION_DENIED);
  EXPECT_EQ(nobody.response.error().message(), "status is for root only, not uid 65534");
}

}  // namespace
}  // namespace nsbroker
