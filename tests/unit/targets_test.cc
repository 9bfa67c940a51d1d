// The Linux targets seam on real processes and namespaces: pidfd-pinned processes with
// on-demand descriptors, held self/path targets, verification of every descriptor.
#include "targets.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>

#include "harness.h"
#include "test_util.h"

namespace nsbroker {
namespace {

using testing::NsInode;
using testing::Target;

constexpr KindSet kAllProcess =
    KindBit(NsKind::kCgroup) | KindBit(NsKind::kIpc) | KindBit(NsKind::kMnt) |
    KindBit(NsKind::kNet) | KindBit(NsKind::kPid) | KindBit(NsKind::kTime) |
    KindBit(NsKind::kUser) | KindBit(NsKind::kUts) | KindBit(NsKind::kRoot) | KindBit(NsKind::kCwd);

TargetSpec PidSpec(pid_t pid) {
  TargetSpec spec{.name = "t", .source = SourceType::kPid, .pid = pid};
  spec.expose = SourceKinds(spec) & ~kExposedWhenNamed;
  return spec;
}

void ExpectMatchesProcess(const std::vector<EntryFd>& entries, pid_t pid) {
  for (const EntryFd& e : entries) {
    std::string file = IsNamespaceKind(e.kind) ? "/ns/" : "/";
    std::string path = "/proc/" + std::to_string(pid) + file + std::string(KindProcFile(e.kind));
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(e.inode, st.st_ino) << path;
    EXPECT_EQ(e.device, st.st_dev) << path;
    struct stat fd_st;
    ASSERT_EQ(fstat(e.fd.get(), &fd_st), 0);
    EXPECT_EQ(fd_st.st_ino, st.st_ino) << path;
    if (IsNamespaceKind(e.kind)) {
      EXPECT_NE(e.ns_id, 0u) << "NS_GET_ID on 6.18: " << path;
    }
  }
}

TEST(Targets, ProcessTargetFetchesDescriptorsOnDemand) {
  ASSERT_TRUE(testing::RequireRoot());
  auto target = Target::Start({.hostname = "targets-test"});
  ASSERT_OK(target);
  std::size_t before = testing::CountOpenFds();
  auto handle = OpenTarget(PidSpec(target->pid()));
  ASSERT_OK(handle);
  EXPECT_EQ(testing::CountOpenFds(), before + 1) << "only the pidfd is held";
  auto entries = (*handle)->Open(kAllProcess);
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), 10u);
  EXPECT_EQ((*entries)[0].kind, NsKind::kCgroup);
  EXPECT_EQ((*entries)[9].kind, NsKind::kCwd);
  ExpectMatchesProcess(*entries, target->pid());
  EXPECT_NE((*entries)[3].inode, NsInode("/proc/self/ns/net"));
}

TEST(Targets, DeadProcessIsUnavailable) {
  ASSERT_TRUE(testing::RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  pid_t pid = target->pid();
  auto handle = OpenTarget(PidSpec(pid));
  ASSERT_OK(handle);
  target->Kill();
  pollfd p{(*handle)->watch_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1) << "the pidfd reports the exit";
  auto entries = (*handle)->Open(KindBit(NsKind::kNet));
  ASSERT_FALSE(entries.has_value());
  EXPECT_EQ(entries.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(entries.error().message, "process " + std::to_string(pid) + " exited");
  auto again = OpenTarget(PidSpec(pid));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::kUnavailable);
}

TEST(Targets, PidFileIsRead) {
  ASSERT_TRUE(testing::RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  testing::TempDir dir;
  dir.Write("t.pid", std::to_string(target->pid()) + "\n");
  TargetSpec spec{.name = "t", .source = SourceType::kPidFile, .file = dir.Join("t.pid")};
  spec.expose = KindBit(NsKind::kUts);
  auto handle = OpenTarget(spec);
  ASSERT_OK(handle);
  auto entries = (*handle)->Open(KindBit(NsKind::kUts));
  ASSERT_OK(entries);
  ExpectMatchesProcess(*entries, target->pid());
  dir.Write("bad.pid", "12ab\n");
  spec.file = dir.Join("bad.pid");
  auto bad = OpenTarget(spec);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message, spec.file + " does not hold a pid");
}

TEST(Targets, SelfIsHeld) {
  TargetSpec spec{.name = "self", .source = SourceType::kSelf};
  spec.expose = SourceKinds(spec) & ~kExposedWhenNamed;
  auto handle = OpenTarget(spec);
  ASSERT_OK(handle);
  EXPECT_EQ((*handle)->watch_fd(), -1);
  auto entries = (*handle)->Open(spec.expose);
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), 10u);
  ExpectMatchesProcess(*entries, getpid());
}

TEST(Targets, PathsAreVerified) {
  ASSERT_TRUE(testing::RequireRoot());
  auto target = Target::Start();
  ASSERT_OK(target);
  TargetSpec spec{.name = "p", .source = SourceType::kPaths};
  spec.paths = {{NsKind::kNet, target->NsPath("net")}, {NsKind::kUts, target->NsPath("uts")}};
  spec.expose = SourceKinds(spec);
  auto handle = OpenTarget(spec);
  ASSERT_OK(handle);
  auto entries = (*handle)->Open(spec.expose);
  ASSERT_OK(entries);
  ExpectMatchesProcess(*entries, target->pid());

  spec.paths = {{NsKind::kUts, target->NsPath("net")}};
  spec.expose = SourceKinds(spec);
  auto wrong = OpenTarget(spec);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().message, target->NsPath("net") + " is a net namespace, not uts");

  spec.paths = {{NsKind::kNet, "/etc/passwd"}};
  spec.expose = SourceKinds(spec);
  auto not_ns = OpenTarget(spec);
  ASSERT_FALSE(not_ns.has_value());
  EXPECT_EQ(not_ns.error().message, "/etc/passwd is not a namespace file");
}

TEST(Targets, MissingNetnsIsNotFound) {
  TargetSpec spec{.name = "n", .source = SourceType::kNetns, .file = "/run/netns/no-such-ns"};
  spec.expose = SourceKinds(spec);
  auto handle = OpenTarget(spec);
  ASSERT_FALSE(handle.has_value());
  EXPECT_EQ(handle.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(handle.error().message, "open /run/netns/no-such-ns: No such file or directory");
}

}  // namespace
}  // namespace nsbroker
