// The joiner's platform-neutral jail logic (jail_enter.cc), which nsjoin and jailme share,
// driven through a fake JailOps: FreeBSD's jail_attach cannot run on Linux. The fake records
// every attach, so "refused before attaching" is checked, not assumed.
#include "jail_enter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <vector>

#include "test_util.h"

namespace nsbroker {
namespace {

class FakeOps : public JailOps {
 public:
  std::map<std::int32_t, std::string> jails;          // the host's jails: jid -> name
  std::int32_t descriptor_jid = 0;                    // what any descriptor refers to; 0: see below
  ErrorCode descriptor_error = ErrorCode::kNotFound;  // kNotFound: its jail was removed
  int attach_errno = 0;                               // what the attach calls fail with
  uid_t euid = 0;
  mutable std::vector<std::string> calls;  // "getname 3", "attach 3", "attach_jd"

  Result<std::string> NameOf(std::int32_t jid) const override {
    calls.push_back("getname " + std::to_string(jid));
    auto it = jails.find(jid);
    if (it == jails.end()) return MakeError(ErrorCode::kNotFound, "jail not found");
    return it->second;
  }
  Result<std::int32_t> JidOfDescriptor(BorrowedFd) const override {
    if (descriptor_jid == 0) return MakeError(descriptor_error, "jail_get by descriptor failed");
    return descriptor_jid;
  }
  int AttachById(std::int32_t jid) const override {
    calls.push_back("attach " + std::to_string(jid));
    return attach_errno;
  }
  int AttachByDescriptor(BorrowedFd) const override {
    calls.push_back("attach_jd");
    return attach_errno;
  }
  uid_t EffectiveUid() const override { return euid; }
};

GrantEntry JailEntry(std::int32_t jid, const std::string& name, bool descriptor = false) {
  GrantEntry entry{.kind = NsKind::kJail, .jid = jid, .jail_name = name};
  if (descriptor) entry.fd = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  return entry;
}

std::vector<std::string> Strings(std::initializer_list<const char*> list) {
  return {list.begin(), list.end()};
}

TEST(EnterJail, ChecksTheNameRightBeforeAttachingByJid) {
  FakeOps ops;
  ops.jails = {{3, "www1"}};
  auto entered = EnterJail("www1", JailEntry(3, "www1"), ops);
  ASSERT_OK(entered);
  EXPECT_EQ(entered->kinds, std::vector<NsKind>{NsKind::kJail});
  EXPECT_FALSE(entered->pid);
  EXPECT_FALSE(entered->user);
  EXPECT_EQ(ops.calls, Strings({"getname 3", "attach 3"}));
}

TEST(EnterJail, ANameMismatchAbortsBeforeAttaching) {
  FakeOps ops;
  ops.jails = {{3, "evil"}};  // www1 was removed and its jid given to another jail
  auto entered = EnterJail("www1", JailEntry(3, "www1"), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(entered.error().message,
            "jid 3 now names jail 'evil', not 'www1': not attaching (the jail was replaced since "
            "the broker named it)");
  EXPECT_EQ(ops.calls, Strings({"getname 3"})) << "never attached";
}

TEST(EnterJail, AJailThatIsGoneIsUnavailable) {
  FakeOps ops;
  auto entered = EnterJail("www1", JailEntry(3, "www1"), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(entered.error().message, "jail 'www1' (jid 3) no longer exists");
  EXPECT_EQ(ops.calls, Strings({"getname 3"}));
}

TEST(EnterJail, ADescriptorIsAttachedDirectly) {
  FakeOps ops;
  ops.descriptor_jid = 3;  // no name lookup needed: the descriptor is the jail
  auto entered = EnterJail("www1", JailEntry(3, "www1", true), ops);
  ASSERT_OK(entered);
  EXPECT_EQ(ops.calls, Strings({"attach_jd"}));
}

TEST(EnterJail, ADescriptorOfAnotherJailIsRefused) {
  FakeOps ops;
  ops.descriptor_jid = 4;
  auto entered = EnterJail("www1", JailEntry(3, "www1", true), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(entered.error().message,
            "the jail descriptor refers to jid 4, not to jail 'www1' (jid 3)");
  EXPECT_TRUE(ops.calls.empty());
}

TEST(EnterJail, EpermAsRootMeansAnOpenDirectory) {
  FakeOps ops;
  ops.jails = {{3, "www1"}};
  ops.attach_errno = EPERM;
  auto entered = EnterJail("www1", JailEntry(3, "www1"), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(entered.error().sys_errno, EPERM);
  EXPECT_EQ(entered.error().message,
            "jail_attach: the process holds an open directory descriptor (chroot(2) refuses to "
            "move it)");
  ops.descriptor_jid = 3;
  auto by_descriptor = EnterJail("www1", JailEntry(3, "www1", true), ops);
  ASSERT_FALSE(by_descriptor.has_value());
  EXPECT_EQ(by_descriptor.error().message,
            "jail_attach_jd: the process holds an open directory descriptor, or the jail "
            "descriptor was not made by root (chroot(2) refuses to move it)");
}

TEST(EnterJail, EpermForAUserMeansRootIsNeeded) {
  FakeOps ops;
  ops.jails = {{3, "www1"}};
  ops.attach_errno = EPERM;
  ops.euid = 65534;
  auto entered = EnterJail("www1", JailEntry(3, "www1"), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(entered.error().message,
            "jail_attach: needs root (effective uid 65534); users enter jails through jailme");
}

TEST(EnterJail, EinvalMeansTheJailWentAwayMeanwhile) {
  FakeOps ops;
  ops.jails = {{3, "www1"}};
  ops.attach_errno = EINVAL;
  auto entered = EnterJail("www1", JailEntry(3, "www1"), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(entered.error().message, "jail_attach: jail 'www1' (jid 3) no longer exists");
}

TEST(EnterJail, EnoentFromJailAttachJdMeansTheJailWasRemoved) {
  FakeOps ops;
  ops.descriptor_jid = 3;
  ops.attach_errno = ENOENT;  // jail(2): the descriptor's jail was removed in between
  auto entered = EnterJail("www1", JailEntry(3, "www1", true), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(entered.error().sys_errno, ENOENT);
  EXPECT_EQ(entered.error().message, "jail_attach_jd: jail 'www1' (jid 3) no longer exists");
}

TEST(EnterJail, ADescriptorWhoseJailWasRemovedIsUnavailable) {
  FakeOps ops;  // jail_get by descriptor: ENOENT, before anything is attached
  auto entered = EnterJail("www1", JailEntry(3, "www1", true), ops);
  ASSERT_FALSE(entered.has_value());
  EXPECT_EQ(entered.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(entered.error().message, "jail 'www1' (jid 3) no longer exists");
  EXPECT_TRUE(ops.calls.empty());
}

TEST(CheckJailEntry, RefusesWhatCannotBeAJail) {
  FakeOps ops;
  ops.descriptor_error = ErrorCode::kInvalidRequest;  // EBADF: not a jail descriptor at all
  EXPECT_EQ(CheckJailEntry(JailEntry(0, "www1"), ops).error().message, "the jail entry has jid 0");
  EXPECT_EQ(CheckJailEntry(JailEntry(3, ""), ops).error().message,
            "the jail entry of jid 3 has no usable name");
  EXPECT_NE(CheckJailEntry(JailEntry(3, "www1", true), ops)
                .error()
                .message.find("is not a live jail descriptor"),
            std::string::npos);
  EXPECT_OK(CheckJailEntry(JailEntry(3, "www1"), ops));
}

}  // namespace
}  // namespace nsbroker
