// libevent wrappers on real sockets with the real event base [Envoy file_event_impl_test].
#include "loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "harness.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker {
namespace {

// Drives the loop without blocking until `done` holds (at most ~2 s).
template <class F>
bool RunUntil(EventLoop& loop, F done) {
  for (int i = 0; i < 2000 && !done(); ++i) {
    event_base_loop(loop.base(), EVLOOP_NONBLOCK);
    if (!done()) usleep(1000);
  }
  return done();
}

TEST(Loop, EventFiresOnReadableSocket) {
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  int fired = 0;
  Event ev(loop->base(), pair->first.get(), EV_READ, [&](short what) {
    EXPECT_TRUE(what & EV_READ);
    ++fired;
  });
  ev.Add();
  event_base_loop(loop->base(), EVLOOP_NONBLOCK);
  EXPECT_EQ(fired, 0);
  ASSERT_OK(SendDatagram(pair->second, "x"));
  EXPECT_TRUE(RunUntil(*loop, [&] { return fired == 1; }));
}

TEST(Loop, TimeoutFires) {
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  bool timed_out = false;
  Event timer(loop->base(), -1, 0, [&](short what) { timed_out = (what & EV_TIMEOUT) != 0; });
  timer.Add(std::chrono::milliseconds(5));
  EXPECT_TRUE(RunUntil(*loop, [&] { return timed_out; }));
}

TEST(Loop, DestroyedEventNeverFires) {
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  int fired = 0;
  {
    Event ev(loop->base(), pair->first.get(), EV_READ, [&](short) { ++fired; });
    ev.Add();
  }
  ASSERT_OK(SendDatagram(pair->second, "x"));
  for (int i = 0; i < 10; ++i) event_base_loop(loop->base(), EVLOOP_NONBLOCK);
  EXPECT_EQ(fired, 0);
}

UniqueFd ListenAt(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd.get(), 16), 0);
  return fd;
}

UniqueFd ConnectTo(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

TEST(Loop, ListenerAcceptsNonBlockingCloexecConnections) {
  testing::TempDir dir;
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  std::vector<UniqueFd> accepted;
  Listener listener(loop->base(), ListenAt(dir.Join("l.sock")),
                    [&](UniqueFd conn) { accepted.push_back(std::move(conn)); });
  UniqueFd a = ConnectTo(dir.Join("l.sock"));
  UniqueFd b = ConnectTo(dir.Join("l.sock"));
  ASSERT_TRUE(RunUntil(*loop, [&] { return accepted.size() == 2; }));
  EXPECT_TRUE(fcntl(accepted[0].get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(accepted[0].get(), F_GETFD) & FD_CLOEXEC);
}

TEST(Loop, ListenerPausesOnEmfileInsteadOfSpinning) {
  testing::TempDir dir;
  auto loop = EventLoop::Create();
  ASSERT_OK(loop);
  std::vector<UniqueFd> accepted;
  Listener listener(loop->base(), ListenAt(dir.Join("l.sock")),
                    [&](UniqueFd conn) { accepted.push_back(std::move(conn)); });
  UniqueFd client = ConnectTo(dir.Join("l.sock"));
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  int lowest_free = dup(0);
  close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);  // accept4 now fails with EMFILE
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  // The listener stays readable while nothing can be accepted. Spinning would make each
  // blocking loop iteration return at once; the pause makes them wait for the 100 ms resume.
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) event_base_loop(loop->base(), EVLOOP_ONCE);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_TRUE(accepted.empty());
  EXPECT_GE(elapsed, std::chrono::milliseconds(90));
  EXPECT_TRUE(RunUntil(*loop, [&] { return accepted.size() == 1; })) << "resumes after 100 ms";
}

}  // namespace
}  // namespace nsbroker
