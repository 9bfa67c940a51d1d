// The verified privilege drop, run in a forked child so the test process keeps root.
#include "privileges.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test_util.h"

namespace nsbroker {
namespace {

TEST(Privileges, DropIsCompleteAndVerified) {
  ASSERT_TRUE(testing::RequireRoot());
  RunAs nobody{.name = "nobody", .uid = 65534, .gid = 65534, .groups = {65534, 5}};
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!DropPrivileges(nobody)) _exit(1);
    uid_t r, e, s;
    gid_t rg, eg, sg;
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    if (r != 65534 || e != 65534 || s != 65534) _exit(2);
    if (rg != 65534 || eg != 65534 || sg != 65534) _exit(3);
    gid_t groups[8];
    if (getgroups(8, groups) != 2) _exit(4);
    if (setuid(0) == 0) _exit(5);
    _exit(0);
  }
  testing::ChildProcess child(pid);
  EXPECT_EQ(child.Wait(), 0);
}

TEST(Privileges, DropWithoutPrivilegeFailsLoudly) {
  ASSERT_TRUE(testing::RequireRoot());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (setresuid(65534, 65534, 65534) != 0) _exit(9);
    auto r = DropPrivileges({.name = "daemon", .uid = 1, .gid = 1, .groups = {1}});
    if (r) _exit(1);
    _exit(r.error().message.find("run_as daemon (uid 1, gid 1): setgroups") == 0 ? 0 : 2);
  }
  testing::ChildProcess child(pid);
  EXPECT_EQ(child.Wait(), 0);
}

TEST(Privileges, RaiseFdLimitReachesTheHardLimit) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  ASSERT_OK(RaiseFdLimit());
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, saved.rlim_max);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

}  // namespace
}  // namespace nsbroker
