// The server on a real listening socket with the real event base, driven without blocking:
// admission limits, per-uid descriptor accounting through SIOCOUTQ, target watching, reload.
#include "server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "harness.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker {
namespace {

std::unique_ptr<Catalog> OpenCatalog(const std::string& text) {
  auto config = ParseConfig(text, "s.conf");
  EXPECT_TRUE(config.has_value()) << config.error().message;
  auto catalog = Catalog::Open(std::move(*config));
  EXPECT_TRUE(catalog.has_value()) << catalog.error().message;
  return std::move(*catalog);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_OK(loop);
    loop_ = std::make_unique<EventLoop>(std::move(*loop));
    auto audit = AuditLog::Open(dir_.Join("audit.log"));
    ASSERT_OK(audit);
    server_ = std::make_unique<Server>(
        loop_->base(),
        OpenCatalog("max_connections_per_uid: 2\nmax_inflight_fds_per_uid: 3\n"
                    "target { name: \"self\" self: true }\n"),
        std::move(*audit));
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr = Address();
    ASSERT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(fd.get(), 16), 0);
    server_->AddListener(std::move(fd));
  }
  void TearDown() override {
    server_.reset();  // every event goes before the base
    loop_.reset();
  }
  sockaddr_un Address() const {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, dir_.Join("s.sock").c_str(), sizeof addr.sun_path - 1);
    return addr;
  }
  UniqueFd Connect() {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr = Address();
    EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  }
  // Runs the loop until a datagram arrives on `sock`.
  Result<v1::Response> Await(BorrowedFd sock, std::size_t* fd_count = nullptr) {
    for (int i = 0; i < 2000; ++i) {
      event_base_loop(loop_->base(), EVLOOP_NONBLOCK);
      auto datagram = ReceiveDatagram(sock, kMaxFdsPerMessage);
      if (!datagram && datagram.error().sys_errno == EAGAIN) {
        usleep(500);
        continue;
      }
      if (!datagram) return std::unexpected(datagram.error());
      if (fd_count != nullptr) *fd_count = datagram->fds.size();
      return DecodeResponse(datagram->bytes, datagram->fds.size());
    }
    return MakeError(ErrorCode::kUnavailable, "no response");
  }
  static v1::Request Join(std::vector<v1::Kind> kinds) {
    v1::Request r;
    r.set_protocol_version(kProtocolVersion);
    r.mutable_join()->set_target("self");
    for (auto k : kinds) r.mutable_join()->add_kinds(k);
    return r;
  }

  testing::TempDir dir_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, AnswersAndCounts) {
  UniqueFd c = Connect();
  ASSERT_OK(SendMessage(c, Join({v1::NET})));
  std::size_t fds = 0;
  auto response = Await(c, &fds);
  ASSERT_OK(response);
  EXPECT_TRUE(response->has_grant());
  EXPECT_EQ(fds, 1u);
  EXPECT_EQ(server_->stats().grants, 1u);
  EXPECT_EQ(server_->stats().connections, 1u);
  EXPECT_EQ(server_->stats().active_connections, 1u);
}

TEST_F(ServerTest, PerUidLimitRefusesTheThirdConnection) {
  UniqueFd a = Connect(), b = Connect();
  ASSERT_OK(SendMessage(a, Join({v1::NET})));
  ASSERT_OK(Await(a));
  ASSERT_OK(SendMessage(b, Join({v1::NET})));
  ASSERT_OK(Await(b));
  UniqueFd c = Connect();
  auto refused = Await(c);
  ASSERT_OK(refused);
  EXPECT_EQ(refused->error().code(), v1::Error::RESOURCE_EXHAUSTED);
  EXPECT_EQ(server_->stats().active_connections, 2u);
  // A slot frees when a connection closes.
  a.reset();
  for (int i = 0; i < 2000 && server_->stats().active_connections != 1; ++i) {
    event_base_loop(loop_->base(), EVLOOP_NONBLOCK);
    usleep(500);
  }
  EXPECT_EQ(server_->stats().active_connections, 1u);
}

TEST_F(ServerTest, UnreadDescriptorsCountUntilRead) {
  UniqueFd a = Connect();
  ASSERT_OK(SendMessage(a, Join({v1::NET, v1::UTS})));
  for (int i = 0; i < 2000 && server_->stats().grants == 0; ++i) {
    event_base_loop(loop_->base(), EVLOOP_NONBLOCK);
    usleep(500);
  }
  EXPECT_EQ(server_->FdBudget(0), 1u) << "two of three descriptors sit unread";
  std::size_t fds = 0;
  ASSERT_OK(Await(a, &fds));
  EXPECT_EQ(fds, 2u);
  EXPECT_EQ(server_->FdBudget(0), 3u) << "SIOCOUTQ is 0 once the peer has read";
}

TEST_F(ServerTest, WatchesProcessTargetsAndSwapsCatalogs) {
  ASSERT_TRUE(testing::RequireRoot());
  auto target = testing::Target::Start();
  ASSERT_OK(target);
  server_->Swap(OpenCatalog("target { name: \"t\" pid: " + std::to_string(target->pid()) + " }"),
                nullptr);
  ASSERT_NE(server_->catalog().Find("t"), nullptr);
  EXPECT_EQ(server_->catalog().Find("self"), nullptr);
  EXPECT_TRUE(server_->catalog().Find("t")->gone.empty());
  pid_t pid = target->pid();
  target->Kill();
  for (int i = 0; i < 2000 && server_->catalog().Find("t")->gone.empty(); ++i) {
    event_base_loop(loop_->base(), EVLOOP_NONBLOCK);
    usleep(500);
  }
  EXPECT_EQ(server_->catalog().Find("t")->gone, "process " + std::to_string(pid) + " exited");
}

}  // namespace
}  // namespace nsbroker
