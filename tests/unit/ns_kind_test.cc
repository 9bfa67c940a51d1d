#include "nsbroker/ns_kind.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <string>

#include "nsbroker.pb.h"
#include "nsbroker/unique_fd.h"
#include "nsbroker_config.pb.h"
#include "test_util.h"

namespace nsbroker {
namespace {

TEST(NsKind, CloneFlagsMatchTheKernelHeaders) {
  EXPECT_EQ(KindCloneFlag(NsKind::kCgroup), CLONE_NEWCGROUP);
  EXPECT_EQ(KindCloneFlag(NsKind::kIpc), CLONE_NEWIPC);
  EXPECT_EQ(KindCloneFlag(NsKind::kMnt), CLONE_NEWNS);
  EXPECT_EQ(KindCloneFlag(NsKind::kNet), CLONE_NEWNET);
  EXPECT_EQ(KindCloneFlag(NsKind::kPid), CLONE_NEWPID);
  EXPECT_EQ(KindCloneFlag(NsKind::kTime), CLONE_NEWTIME);
  EXPECT_EQ(KindCloneFlag(NsKind::kUser), CLONE_NEWUSER);
  EXPECT_EQ(KindCloneFlag(NsKind::kUts), CLONE_NEWUTS);
  EXPECT_EQ(KindCloneFlag(NsKind::kRoot), 0);
}

TEST(NsKind, NsGetNstypeOfProcSelfNsAgreesWithEveryKind) {
  for (NsKind kind : kNamespaceKinds) {
    std::string path = "/proc/self/ns/" + std::string(KindProcFile(kind));
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid()) << path;
    int nstype = ioctl(fd.get(), NS_GET_NSTYPE);
    ASSERT_GE(nstype, 0) << path;
    EXPECT_EQ(KindFromNsType(nstype), kind) << path;
  }
}

TEST(NsKind, NamesRoundTripInBothCases) {
  for (NsKind kind : kAllKinds) {
    EXPECT_EQ(KindFromName(KindName(kind)), kind);
    std::string upper(KindName(kind));
    for (char& c : upper) c = static_cast<char>(c - 'a' + 'A');
    EXPECT_EQ(KindFromName(upper), kind);
  }
  EXPECT_FALSE(KindFromName("network"));
  EXPECT_FALSE(KindFromName(""));
}

TEST(NsKind, WireValuesMatchTheProtoEnum) {
  for (NsKind kind : kAllKinds) {
    std::string upper(KindName(kind));
    for (char& c : upper) c = static_cast<char>(c - 'a' + 'A');
    EXPECT_EQ(v1::Kind_Name(static_cast<v1::Kind>(KindToWire(kind))), upper);
    EXPECT_EQ(KindFromWire(KindToWire(kind)), kind);
  }
  EXPECT_FALSE(KindFromWire(v1::KIND_UNSPECIFIED));
  EXPECT_FALSE(KindFromWire(13));
  EXPECT_FALSE(KindFromWire(-1));
}

// The config schema repeats the wire Kind (a full-runtime file cannot import a lite one).
TEST(NsKind, ConfigKindEqualsTheWireKind) {
  const auto* config = v1::Config::Kind_descriptor();
  ASSERT_EQ(config->value_count(), static_cast<int>(kAllKinds.size()) + 1);
  for (int i = 0; i < config->value_count(); ++i) {
    const auto* value = config->value(i);
    EXPECT_EQ(v1::Kind_Name(static_cast<v1::Kind>(value->number())), value->name());
  }
}

TEST(NsKind, OnlyNamespacesHaveProcNsFilesAndCloneFlags) {
  EXPECT_TRUE(IsNamespaceKind(NsKind::kUts));
  EXPECT_FALSE(IsNamespaceKind(NsKind::kRoot));
  EXPECT_FALSE(IsNamespaceKind(NsKind::kJail));
  EXPECT_EQ(KindProcFile(NsKind::kMnt), "mnt");
  EXPECT_EQ(KindProcFile(NsKind::kJail), "");
  EXPECT_FALSE(KindFromNsType(0));
}

}  // namespace
}  // namespace nsbroker
