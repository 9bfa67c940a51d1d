// libnsjoin's uWSGI client against the real uwsgi binary serving --setns-socket from fresh
// namespaces: the Grant holds exactly that instance's namespaces.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "harness.h"
#include "nsbroker/uwsgi.h"
#include "test_util.h"
#include "uwsgi_instance.h"

namespace nsbroker {
namespace {

using testing::CountOpenFds;
using testing::NsInode;

TEST(UwsgiClientIntegration, GrantMatchesTheRealUwsgiInstance) {
  ASSERT_TRUE(testing::RequireRoot());
  testing::TempDir dir;
  std::string socket = dir.Join("uwsgi-ns.sock");
  auto uwsgi = testing::UwsgiInstance::Start(socket, "uwsgi-box", dir.Join("uwsgi.log"));
  ASSERT_OK(uwsgi);
  std::size_t baseline = CountOpenFds();
  {
    auto grant = ReceiveUwsgiGrant(socket);
    ASSERT_OK(grant);
    EXPECT_EQ(grant->target, socket);
    // uWSGI never sends user; pid/time and their _for_children twins are one entry each.
    std::set<NsKind> kinds;
    for (const GrantEntry& entry : grant->entries) {
      EXPECT_TRUE(kinds.insert(entry.kind).second) << KindName(entry.kind) << " twice";
      std::string name(KindName(entry.kind));
      EXPECT_EQ(entry.inode, NsInode(uwsgi->NsPath(name))) << name;
      EXPECT_NE(entry.ns_id, 0u) << name;
    }
    EXPECT_EQ(kinds, (std::set<NsKind>{NsKind::kNet, NsKind::kUts, NsKind::kIpc, NsKind::kPid,
                                       NsKind::kMnt, NsKind::kCgroup, NsKind::kTime}));
    // Fresh ones where uWSGI was unshared, so the test cannot pass against our own.
    for (const char* name : {"net", "uts", "ipc", "mnt"}) {
      EXPECT_NE(NsInode(uwsgi->NsPath(name)), NsInode(std::string("/proc/self/ns/") + name))
          << name;
    }
    // The uts descriptor really is uWSGI's: a child that enters it sees uWSGI's hostname.
    const GrantEntry* uts = nullptr;
    for (const GrantEntry& entry : grant->entries) {
      if (entry.kind == NsKind::kUts) uts = &entry;
    }
    ASSERT_NE(uts, nullptr);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      char host[256] = {};
      if (setns(uts->fd.get(), CLONE_NEWUTS) != 0) _exit(2);
      if (gethostname(host, sizeof host - 1) != 0) _exit(3);
      _exit(std::string(host) == "uwsgi-box" ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_EQ(CountOpenFds(), baseline);
  EXPECT_EQ(uwsgi->Stop(), 0) << uwsgi->log();
}

TEST(UwsgiClientIntegration, EachConnectionGetsItsOwnDescriptors) {
  ASSERT_TRUE(testing::RequireRoot());
  testing::TempDir dir;
  std::string socket = dir.Join("uwsgi-ns.sock");
  auto uwsgi = testing::UwsgiInstance::Start(socket, "uwsgi-twice", dir.Join("uwsgi.log"));
  ASSERT_OK(uwsgi);
  auto first = ReceiveUwsgiGrant(socket);
  auto second = ReceiveUwsgiGrant(socket);
  ASSERT_OK(first);
  ASSERT_OK(second);
  ASSERT_EQ(first->entries.size(), second->entries.size());
  for (std::size_t i = 0; i < first->entries.size(); ++i) {
    EXPECT_EQ(first->entries[i].inode, second->entries[i].inode);
    EXPECT_NE(first->entries[i].fd.get(), second->entries[i].fd.get());
  }
  EXPECT_EQ(uwsgi->Stop(), 0) << uwsgi->log();
}

}  // namespace
}  // namespace nsbroker
