// The harness itself: targets really are in their own namespaces, Run really switches uid.
#include "harness.h"

#include <unistd.h>

#include "test_util.h"

namespace nsbroker::testing {
namespace {

TEST(Harness, TargetHasItsOwnNamespacesAndHostname) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "harness-host"});
  ASSERT_OK(target);
  for (const char* kind : {"uts", "ipc", "net", "mnt", "pid", "cgroup"}) {
    EXPECT_NE(NsInode(target->NsPath(kind)), NsInode(std::string("/proc/self/ns/") + kind)) << kind;
  }
  auto r = RunCommand({"nsenter", "-t", std::to_string(target->pid()), "-u", "hostname"});
  EXPECT_EQ(r.out, "harness-host\n");
  pid_t pid = target->pid();
  target->Kill();
  EXPECT_NE(kill(pid, 0), 0) << "killed target is gone";
}

TEST(Harness, RootlessTargetIsOwnedByItsUser) {
  ASSERT_TRUE(RequireRoot());
  auto target = Target::Start({.hostname = "rootless", .user_owner_uid = 65534});
  ASSERT_OK(target);
  EXPECT_NE(NsInode(target->NsPath("user")), NsInode("/proc/self/ns/user"));
  auto r = RunCommand({"nsenter", "-t", std::to_string(target->pid()), "-U", "-u", "hostname"});
  EXPECT_EQ(r.out, "rootless\n") << r.err;
}

TEST(Harness, RunSwitchesUidAndMapsExitStatus) {
  ASSERT_TRUE(RequireRoot());
  auto r = RunCommand({"/usr/bin/id", "-u"}, {.uid = 65534});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "65534\n");
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", "exit 7"}).status, 7);
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", "kill -TERM $$"}).status, 128 + SIGTERM);
  EXPECT_EQ(RunCommand({"/bin/cat"}, {.stdin_data = "abc"}).out, "abc");
}

}  // namespace
}  // namespace nsbroker::testing
