// libnsjoin's uWSGI client against hostile greetings on a real socketpair: every error is
// clear and every descriptor received is closed again.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "harness.h"
#include "nsbroker/uwsgi.h"
#include "test_util.h"

namespace nsbroker {
namespace {

using testing::CountOpenFds;

UniqueFd OpenFile(const std::string& path) {
  return UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

std::string Greeting(int count, std::string_view magic = kUwsgiMagic) {
  std::string out(magic);
  out.append(reinterpret_cast<const char*>(&count), sizeof count);
  return out;
}

// One sendmsg of `bytes` with `fds` as SCM_RIGHTS, as uWSGI's server does.
void Send(BorrowedFd sock, std::string_view bytes, const std::vector<int>& fds = {}) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.assign(CMSG_SPACE(fds.size() * sizeof(int)), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
  }
  ASSERT_EQ(sendmsg(sock.get(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()))
      << std::strerror(errno);
}

struct StreamPair {
  UniqueFd server, client;
};
StreamPair MakePair() {
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// Sends what `feed` sends, closes the server end, reads the greeting and returns the result;
// every descriptor opened here must be closed again when it returns.
template <class Feed>
Result<Grant> Exchange(Feed feed, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  StreamPair pair = MakePair();
  feed(pair.server);
  pair.server.reset();
  return ReadUwsgiGrant(pair.client, "test.sock", timeout);
}

std::vector<int> NsFds(std::vector<UniqueFd>& keep, const std::vector<std::string>& names) {
  std::vector<int> fds;
  for (const auto& name : names) {
    keep.push_back(OpenFile("/proc/self/ns/" + name));
    EXPECT_TRUE(keep.back().valid()) << name;
    fds.push_back(keep.back().get());
  }
  return fds;
}

TEST(UwsgiClient, ReadsAUwsgiGreetingIntoAGrant) {
  std::size_t baseline = CountOpenFds();
  {
    // What uWSGI 2.0.21 sends on kernel 6.18: readdir order of /proc/self/ns, no user.
    std::vector<std::string> names = {"net",
                                      "uts",
                                      "ipc",
                                      "pid",
                                      "pid_for_children",
                                      "mnt",
                                      "cgroup",
                                      "time",
                                      "time_for_children"};
    std::vector<UniqueFd> keep;
    std::vector<int> fds = NsFds(keep, names);
    auto grant = Exchange([&](BorrowedFd s) { Send(s, Greeting(9), fds); });
    ASSERT_OK(grant);
    EXPECT_EQ(grant->target, "test.sock");
    // pid_for_children and time_for_children are the same namespaces as pid and time here.
    ASSERT_EQ(grant->entries.size(), 7u);
    for (const GrantEntry& entry : grant->entries) {
      std::string name(KindName(entry.kind));
      struct stat st;
      ASSERT_EQ(stat(("/proc/self/ns/" + name).c_str(), &st), 0);
      EXPECT_EQ(entry.inode, st.st_ino) << name;
      EXPECT_EQ(entry.device, st.st_dev) << name;
      EXPECT_NE(entry.ns_id, 0u) << name << ": NS_GET_ID exists on 6.18";
      EXPECT_TRUE(entry.fd.valid());
    }
  }
  EXPECT_EQ(CountOpenFds(), baseline);
}

TEST(UwsgiClient, AcceptsAGreetingDeliveredInPieces) {
  std::size_t baseline = CountOpenFds();
  {
    std::vector<UniqueFd> keep;
    std::vector<int> fds = NsFds(keep, {"net", "uts"});
    std::string greeting = Greeting(2);
    auto grant = Exchange([&](BorrowedFd s) {
      Send(s, greeting.substr(0, 4), fds);
      Send(s, greeting.substr(4));
    });
    ASSERT_OK(grant);
    EXPECT_EQ(grant->entries.size(), 2u);
  }
  EXPECT_EQ(CountOpenFds(), baseline);
}

// Each hostile greeting: the error code, a word of its message, no descriptor left behind.
struct Hostile {
  const char* name;
  ErrorCode code;
  const char* says;
  std::function<void(BorrowedFd)> feed;
};

class UwsgiHostile : public ::testing::TestWithParam<Hostile> {};

TEST_P(UwsgiHostile, IsAClearErrorAndClosesEveryDescriptor) {
  std::size_t baseline = CountOpenFds();
  {
    auto grant = Exchange(GetParam().feed);
    ASSERT_FALSE(grant.has_value());
    EXPECT_EQ(grant.error().code, GetParam().code) << grant.error().message;
    EXPECT_NE(grant.error().message.find(GetParam().says), std::string::npos)
        << grant.error().message;
    EXPECT_NE(grant.error().message.find("test.sock"), std::string::npos) << grant.error().message;
  }
  EXPECT_EQ(CountOpenFds(), baseline);
}

void SendNs(BorrowedFd s, std::string_view bytes, std::size_t copies) {
  UniqueFd net = OpenFile("/proc/self/ns/net");
  Send(s, bytes, std::vector<int>(copies, net.get()));
}

INSTANTIATE_TEST_SUITE_P(
    Greetings, UwsgiHostile,
    ::testing::Values(
        Hostile{"Nothing", ErrorCode::kUnavailable, "without a greeting", [](BorrowedFd) {}},
        Hostile{"Truncated", ErrorCode::kInvalidRequest, "truncated greeting: 11 of 15",
                [](BorrowedFd s) { SendNs(s, Greeting(2).substr(0, 11), 2); }},
        Hostile{"WrongMagic", ErrorCode::kInvalidRequest, "wrong magic",
                [](BorrowedFd s) { SendNs(s, Greeting(2, "uwsgi-setnx"), 2); }},
        Hostile{"CountAboveFds", ErrorCode::kInvalidRequest, "announces 3 descriptors but 2",
                [](BorrowedFd s) { SendNs(s, Greeting(3), 2); }},
        Hostile{"CountBelowFds", ErrorCode::kInvalidRequest, "announces 1 descriptors but 2",
                [](BorrowedFd s) { SendNs(s, Greeting(1), 2); }},
        Hostile{"NegativeCount", ErrorCode::kInvalidRequest, "announces -1",
                [](BorrowedFd s) { SendNs(s, Greeting(-1), 2); }},
        Hostile{"NoDescriptors", ErrorCode::kInvalidRequest, "no namespace",
                [](BorrowedFd s) { Send(s, Greeting(0)); }},
        Hostile{"SixtyFiveDescriptors", ErrorCode::kInvalidRequest, "65 descriptors, at most 64",
                [](BorrowedFd s) { SendNs(s, Greeting(65), 65); }},
        Hostile{"TwoHundredDescriptors", ErrorCode::kInvalidRequest, "control data truncated",
                [](BorrowedFd s) { SendNs(s, Greeting(200), 200); }},
        Hostile{"NotANamespace", ErrorCode::kInvalidRequest, "descriptor 2 of 2 is not a namespace",
                [](BorrowedFd s) {
                  UniqueFd net = OpenFile("/proc/self/ns/net");
                  UniqueFd null = OpenFile("/dev/null");
                  Send(s, Greeting(2), {net.get(), null.get()});
                }},
        Hostile{"MoreDescriptorsAfterTheFirstPiece", ErrorCode::kInvalidRequest,
                "65 descriptors, at most 64",
                [](BorrowedFd s) {
                  std::string g = Greeting(65);
                  SendNs(s, g.substr(0, 5), 40);
                  SendNs(s, g.substr(5), 25);
                }}),
    [](const ::testing::TestParamInfo<Hostile>& p) { return p.param.name; });

TEST(UwsgiClient, RefusesAForeignControlMessage) {
  std::size_t baseline = CountOpenFds();
  {
    StreamPair pair = MakePair();
    // With SO_PASSCRED the kernel attaches SCM_CREDENTIALS to what arrives: not SCM_RIGHTS.
    int on = 1;
    ASSERT_EQ(setsockopt(pair.client.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
    SendNs(pair.server, Greeting(1), 1);
    pair.server.reset();
    auto grant = ReadUwsgiGrant(pair.client, "test.sock");
    ASSERT_FALSE(grant.has_value());
    EXPECT_EQ(grant.error().code, ErrorCode::kInvalidRequest);
    EXPECT_NE(grant.error().message.find("unexpected control message"), std::string::npos)
        << grant.error().message;
  }
  EXPECT_EQ(CountOpenFds(), baseline);
}

TEST(UwsgiClient, TimesOutOnASilentServer) {
  StreamPair pair = MakePair();
  auto grant = ReadUwsgiGrant(pair.client, "test.sock", std::chrono::milliseconds(50));
  ASSERT_FALSE(grant.has_value());
  EXPECT_EQ(grant.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(grant.error().message.find("within 50 ms"), std::string::npos) << grant.error().message;
}

TEST(UwsgiClient, DifferentNamespacesOfOneKindKeepTheLater) {
  UniqueFd mine = OpenFile("/proc/self/ns/uts");
  auto other = testing::Target::Start({.hostname = "other"});
  ASSERT_OK(other);
  UniqueFd theirs = OpenFile(other->NsPath("uts"));
  std::vector<UniqueFd> fds;
  fds.emplace_back(dup(mine.get()));
  fds.emplace_back(dup(theirs.get()));
  auto grant = ParseUwsgiGreeting(Greeting(2), std::move(fds), "t");
  ASSERT_OK(grant);
  ASSERT_EQ(grant->entries.size(), 1u);
  EXPECT_EQ(grant->entries[0].inode, testing::NsInode(other->NsPath("uts")));
}

TEST(UwsgiClient, ReportsAMissingSocket) {
  auto grant = ReceiveUwsgiGrant("/nonexistent/uwsgi.sock");
  ASSERT_FALSE(grant.has_value());
  EXPECT_EQ(grant.error().code, ErrorCode::kNotFound);
  EXPECT_NE(grant.error().message.find("/nonexistent/uwsgi.sock"), std::string::npos);
}

// A server run by another unprivileged uid could hand root a forged mount namespace.
TEST(UwsgiClient, RefusesAServerRunByAnUntrustedUid) {
  ASSERT_TRUE(testing::RequireRoot());
  testing::TempDir dir;
  std::string path = dir.Join("fake.sock");
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // SO_PEERCRED reports who called listen(): drop to 65534 between bind and listen.
    UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(1);
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(2);
    if (listen(sock.get(), 1) != 0) _exit(3);
    if (write(ready_w.get(), "r", 1) != 1) _exit(4);
    UniqueFd conn(accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
    UniqueFd net = OpenFile("/proc/self/ns/net");
    std::string greeting = Greeting(1);
    int fd = net.get();
    iovec iov{greeting.data(), greeting.size()};
    char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    sendmsg(conn.get(), &msg, MSG_NOSIGNAL);
    _exit(0);
  }
  testing::ChildProcess server(pid);
  ready_w.reset();
  char byte;
  ASSERT_EQ(read(ready_r.get(), &byte, 1), 1);

  auto denied = ReceiveUwsgiGrant(path);
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(denied.error().message.find("served by uid 65534"), std::string::npos)
      << denied.error().message;
  EXPECT_NE(denied.error().message.find(path), std::string::npos);
}

TEST(UwsgiClient, TrustsAServerUidTheCallerNames) {
  ASSERT_TRUE(testing::RequireRoot());
  testing::TempDir dir;
  std::string path = dir.Join("ok.sock");
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(1);
    UniqueFd net = OpenFile("/proc/self/ns/net");
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(2);
    if (listen(sock.get(), 1) != 0) _exit(3);
    if (write(ready_w.get(), "r", 1) != 1) _exit(4);
    UniqueFd conn(accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
    Send(conn, Greeting(1), {net.get()});
    _exit(0);
  }
  testing::ChildProcess server(pid);
  ready_w.reset();
  char byte;
  ASSERT_EQ(read(ready_r.get(), &byte, 1), 1);
  auto grant = ReceiveUwsgiGrant(path, {.trusted_server_uids = {65534}});
  ASSERT_OK(grant);
  ASSERT_EQ(grant->entries.size(), 1u);
  EXPECT_EQ(grant->entries[0].kind, NsKind::kNet);
  EXPECT_EQ(grant->target, path);
}

}  // namespace
}  // namespace nsbroker
