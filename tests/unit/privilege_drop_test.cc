// The verified drop shared by nsbrokerd's run_as and jailme, on the real kernel as root in
// forked children (the test process keeps root).
#include "privilege_drop.h"

#include <gtest/gtest.h>
#include <unistd.h>

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

}  // namespace
}  // namespace nsbroker
