// ReadPeerIdentity on real sockets: a socketpair (the credentials of its creator), and, as
// root, a listener made by another uid, which is what the joiners check of the broker.
#include "unix_peer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "harness.h"
#include "nsbroker/unique_fd.h"
#include "test_util.h"

namespace nsbroker {
namespace {

TEST(UnixPeer, ASocketpairNamesThisProcess) {
  int ends[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends), 0);
  UniqueFd a(ends[0]), b(ends[1]);
  auto peer = ReadPeerIdentity(a);
  ASSERT_OK(peer);
  EXPECT_EQ(peer->pid, getpid());
  EXPECT_EQ(peer->uid, geteuid());
  EXPECT_EQ(peer->gid, getegid());
  EXPECT_FALSE(peer->groups_unread);
  std::vector<gid_t> groups(static_cast<std::size_t>(getgroups(0, nullptr)));
  ASSERT_EQ(getgroups(static_cast<int>(groups.size()), groups.data()),
            static_cast<int>(groups.size()));
  std::sort(groups.begin(), groups.end());
  std::sort(peer->groups.begin(), peer->groups.end());
  EXPECT_EQ(peer->groups, groups);
}

TEST(UnixPeer, WithoutGroupsOnlyTheIdsAreRead) {
  int ends[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  UniqueFd a(ends[0]), b(ends[1]);
  auto peer = ReadPeerIdentity(b, false);
  ASSERT_OK(peer);
  EXPECT_EQ(peer->uid, geteuid());
  EXPECT_TRUE(peer->groups_unread);
  EXPECT_TRUE(peer->groups.empty());
}

TEST(UnixPeer, AClientSeesWhoCalledListen) {
  ASSERT_TRUE(testing::RequireRoot());
  constexpr uid_t kUser = 65534;
  // An abstract address: nothing on disk, gone with the socket.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string name = "nsb-unix-peer-test-" + std::to_string(getpid());
  std::copy(name.begin(), name.end(), addr.sun_path + 1);
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ready_read.reset();
    UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock.valid() || bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) _exit(1);
    if (setresgid(kUser, kUser, kUser) != 0 || setresuid(kUser, kUser, kUser) != 0) _exit(2);
    if (listen(sock.get(), 1) != 0) _exit(3);
    if (write(ready_write.get(), "r", 1) != 1) _exit(4);
    for (;;) pause();
  }
  testing::ChildProcess listener(pid);
  ready_write.reset();
  char byte;
  ASSERT_EQ(read(ready_read.get(), &byte, 1), 1);
  UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  auto peer = ReadPeerIdentity(sock, false);
  ASSERT_OK(peer);
  EXPECT_EQ(peer->uid, kUser);
  EXPECT_EQ(peer->gid, kUser);
  EXPECT_EQ(peer->pid, pid);
}

}  // namespace
}  // namespace nsbroker
