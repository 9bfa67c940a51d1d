// The verified drop shared by nsbrokerd's run_as and jailme: the real one as root in forked
// children (the test process keeps root), and the verification against a fake kernel that
// half-drops or lets root back in, which no real unprivileged process can show.
#include "privilege_drop.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"

namespace nsbroker {
namespace {

constexpr uid_t kUser = 65534;
constexpr gid_t kGroup = 65534;

TEST(PrivilegeDrop, RootDropsToAUserAndCannotComeBack) {
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(testing::ExitCodeInChild([] {
              if (!DropPrivilegesTo({.uid = kUser, .gid = kGroup, .groups = {kGroup, 5}})) {
                return 1;
              }
              uid_t r, e, s;
              gid_t rg, eg, sg;
              getresuid(&r, &e, &s);
              getresgid(&rg, &eg, &sg);
              if (r != kUser || e != kUser || s != kUser) return 2;
              if (rg != kGroup || eg != kGroup || sg != kGroup) return 3;
              gid_t groups[8];
              if (getgroups(8, groups) != 2) return 4;
              if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || setegid(0) == 0) return 5;
              return 0;
            }),
            0);
}

TEST(PrivilegeDrop, RootMayStayRoot) {  // jailme run by root gets root back
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(testing::ExitCodeInChild(
                [] { return DropPrivilegesTo({.uid = 0, .gid = 0, .groups = {}}) ? 0 : 1; }),
            0);
}

TEST(PrivilegeDrop, WithoutRootSetgroupsFailsAndNothingChanges) {
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(testing::ExitCodeInChild([] {
              if (setresuid(kUser, kUser, kUser) != 0) return 9;
              auto r = DropPrivilegesTo({.uid = 1, .gid = 1, .groups = {1}});
              if (r) return 1;
              if (r.error().message.find("setgroups: ") != 0) return 2;
              return getegid() == 0 ? 0 : 3;
            }),
            0);
}

// A fake kernel: records the calls, and does what the test tells it to get wrong.
struct FakeKernel {
  std::vector<std::string> calls;
  std::vector<gid_t> groups;
  uid_t uids[3] = {0, 0, 0};
  gid_t gids[3] = {0, 0, 0};
  bool keep_saved_uid = false;  // setresuid "succeeds" but leaves the saved uid 0
  bool keep_extra_group = false;
  bool allow_seteuid_0 = false;
  bool allow_setegid_0 = false;
};
FakeKernel* g_fake = nullptr;

const IdCalls kFake{
    .setgroups =
        [](std::size_t n, const gid_t* list) {
          g_fake->calls.push_back("setgroups");
          g_fake->groups.assign(list, list + n);
          if (g_fake->keep_extra_group) g_fake->groups.push_back(0);
          return 0;
        },
    .setresgid =
        [](gid_t r, gid_t e, gid_t s) {
          g_fake->calls.push_back("setresgid");
          g_fake->gids[0] = r, g_fake->gids[1] = e, g_fake->gids[2] = s;
          return 0;
        },
    .setresuid =
        [](uid_t r, uid_t e, uid_t s) {
          g_fake->calls.push_back("setresuid");
          g_fake->uids[0] = r, g_fake->uids[1] = e,
          g_fake->uids[2] = g_fake->keep_saved_uid ? 0 : s;
          return 0;
        },
    .getresuid =
        [](uid_t* r, uid_t* e, uid_t* s) {
          *r = g_fake->uids[0], *e = g_fake->uids[1], *s = g_fake->uids[2];
          return 0;
        },
    .getresgid =
        [](gid_t* r, gid_t* e, gid_t* s) {
          *r = g_fake->gids[0], *e = g_fake->gids[1], *s = g_fake->gids[2];
          return 0;
        },
    .getgroups =
        [](int size, gid_t* list) {
          int n = static_cast<int>(g_fake->groups.size());
          if (n > size) return -1;
          std::copy(g_fake->groups.begin(), g_fake->groups.end(), list);
          return n;
        },
    .setuid = [](uid_t) { return -1; },
    .seteuid = [](uid_t) { return g_fake->allow_seteuid_0 ? 0 : -1; },
    .setgid = [](gid_t) { return -1; },
    .setegid = [](gid_t) { return g_fake->allow_setegid_0 ? 0 : -1; },
};

Result<void> DropWith(FakeKernel& fake) {
  g_fake = &fake;
  return DropPrivilegesTo({.uid = kUser, .gid = kGroup, .groups = {kGroup}}, kFake);
}

TEST(PrivilegeDrop, GroupsThenGidsThenUids) {
  FakeKernel fake;
  ASSERT_TRUE(DropWith(fake));
  EXPECT_EQ(fake.calls, (std::vector<std::string>{"setgroups", "setresgid", "setresuid"}));
}

TEST(PrivilegeDrop, ASavedRootUidIsCaught) {
  FakeKernel fake{.keep_saved_uid = true};
  auto r = DropWith(fake);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "the drop did not take: uids are 65534/65534/0, expected 65534");
}

TEST(PrivilegeDrop, AGroupLeftBehindIsCaught) {
  FakeKernel fake{.keep_extra_group = true};
  auto r = DropWith(fake);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("supplementary groups"), std::string::npos);
}

TEST(PrivilegeDrop, AnEffectiveUidThatCanGoBackToRootIsCaught) {
  FakeKernel fake{.allow_seteuid_0 = true};
  auto r = DropWith(fake);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "setuid(0) still succeeds after the drop to uid 65534");
}

TEST(PrivilegeDrop, AnEffectiveGidThatCanGoBackToRootIsCaught) {
  FakeKernel fake{.allow_setegid_0 = true};
  auto r = DropWith(fake);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "setgid(0) still succeeds after the drop to gid 65534");
}

}  // namespace
}  // namespace nsbroker
