// jailme's identity switches, run in forked children (the test process keeps root): what
// getresuid/getresgid/getgroups/capget report after each step.
#include "jailme_privs.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "harness.h"
#include "test_util.h"

namespace nsbroker {
namespace {

constexpr uid_t kUser = 65534;
constexpr gid_t kGroup = 65534;
constexpr gid_t kExtraGroup = 65532;

// Runs fn in a child that starts as root with the caller's identity set up like a setuid
// program run by kUser (real ids the user's, effective and saved root); returns the exit
// code. fn's checks exit with a distinct code each, 0 when all held.
int InSetuidChild(const std::function<int(const Caller&)>& fn) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    gid_t groups[] = {kExtraGroup};
    if (setgroups(1, groups) != 0 || setresgid(kGroup, 0, 0) != 0 || setresuid(kUser, 0, 0) != 0) {
      _exit(100);
    }
    _exit(fn(RecordCaller()));
  }
  testing::ChildProcess child(pid);
  return child.Wait();
}

bool NoCapabilities() {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return std::all_of(std::begin(data), std::end(data),
                     [](const auto& d) { return d.effective == 0 && d.permitted == 0; });
}

TEST(JailmePrivs, RecordsTheRealIdsAndGroups) {
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(InSetuidChild([](const Caller& c) {
              if (c.uid != kUser || c.gid != kGroup) return 1;
              if (c.groups != std::vector<gid_t>{kExtraGroup}) return 2;
              return 0;
            }),
            0);
}

TEST(JailmePrivs, ActAsCallerKeepsRootSavedAndRegainRootRestoresIt) {
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(InSetuidChild([](const Caller& c) {
              if (!ActAsCaller(c)) return 1;
              uid_t r, e, s;
              gid_t rg, eg, sg;
              getresuid(&r, &e, &s);
              getresgid(&rg, &eg, &sg);
              if (r != kUser || e != kUser || s != 0) return 2;  // SO_PEERCRED sees kUser
              if (eg != kGroup) return 3;
              if (!RegainRoot() || geteuid() != 0) return 4;
              return 0;
            }),
            0);
}

TEST(JailmePrivs, DropForGoodLeavesNothingOfRoot) {
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(InSetuidChild([](const Caller& c) {
              DropForGood(c);
              uid_t r, e, s;
              gid_t rg, eg, sg;
              getresuid(&r, &e, &s);
              getresgid(&rg, &eg, &sg);
              if (r != kUser || e != kUser || s != kUser) return 1;
              if (rg != kGroup || eg != kGroup || sg != kGroup) return 2;
              gid_t groups[4];
              if (getgroups(4, groups) != 1 || groups[0] != kExtraGroup) return 3;
              if (setuid(0) == 0 || setgid(0) == 0) return 4;
              if (!NoCapabilities()) return 5;
              return 0;
            }),
            0);
}

TEST(JailmePrivs, DropForGoodWithoutRootExits125) {
  ASSERT_TRUE(testing::RequireRoot());
  EXPECT_EQ(InSetuidChild([](const Caller& c) {
              if (!ActAsCaller(c)) return 1;
              DropForGood(c);  // euid is the user's: must refuse, never half-drop
              return 2;
            }),
            125);
}

}  // namespace
}  // namespace nsbroker
