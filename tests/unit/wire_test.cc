#include "wire.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "pass_credentials.h"
#include "test_util.h"

namespace nsbroker {
namespace {

using testing::CountOpenFds;

std::vector<UniqueFd> OpenDevNull(std::size_t n) {
  std::vector<UniqueFd> fds;
  for (std::size_t i = 0; i < n; ++i) fds.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
  return fds;
}

std::vector<int> Raw(const std::vector<UniqueFd>& fds) {
  std::vector<int> raw;
  for (const auto& fd : fds) raw.push_back(fd.get());
  return raw;
}

class WireRoundTrip : public ::testing::TestWithParam<std::size_t> {};

TEST_P(WireRoundTrip, DeliversBytesAndDescriptors) {
  std::size_t before = CountOpenFds();
  {
    auto pair = SeqpacketPair();
    ASSERT_OK(pair);
    auto fds = OpenDevNull(GetParam());
    ASSERT_OK(SendDatagram(pair->first, "hello", Raw(fds)));
    auto got = ReceiveDatagram(pair->second, kMaxFdsPerMessage);
    ASSERT_OK(got);
    EXPECT_EQ(got->bytes, "hello");
    ASSERT_EQ(got->fds.size(), GetParam());
    struct stat null_st, st;
    ASSERT_EQ(stat("/dev/null", &null_st), 0);
    for (const auto& fd : got->fds) {
      ASSERT_EQ(fstat(fd.get(), &st), 0);
      EXPECT_EQ(st.st_rdev, null_st.st_rdev);
      EXPECT_EQ(fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "MSG_CMSG_CLOEXEC";
    }
  }
  EXPECT_EQ(CountOpenFds(), before);
}

INSTANTIATE_TEST_SUITE_P(Counts, WireRoundTrip, ::testing::Values(0u, 1u, 8u, 253u));

TEST(Wire, TooSmallControlBufferIsAnErrorAndLeaksNothing) {
  std::size_t before = CountOpenFds();
  {
    auto pair = SeqpacketPair();
    ASSERT_OK(pair);
    {
      auto fds = OpenDevNull(8);
      ASSERT_OK(SendDatagram(pair->first, "x", Raw(fds)));
    }
    auto got = ReceiveDatagram(pair->second, 2);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
    EXPECT_NE(got.error().message.find("descriptors"), std::string::npos) << got.error().message;
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(Wire, MoreDescriptorsThanAllowedIsAnError) {
  std::size_t before = CountOpenFds();
  {
    auto pair = SeqpacketPair();
    ASSERT_OK(pair);
    {
      auto fds = OpenDevNull(1);
      ASSERT_OK(SendDatagram(pair->first, "x", Raw(fds)));
    }
    auto got = ReceiveDatagram(pair->second, 0);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(Wire, TooSmallDataBufferIsAnErrorAndLeaksNothing) {
  std::size_t before = CountOpenFds();
  {
    auto pair = SeqpacketPair();
    ASSERT_OK(pair);
    {
      auto fds = OpenDevNull(3);
      ASSERT_OK(SendDatagram(pair->first, std::string(100, 'a'), Raw(fds)));
    }
    auto got = ReceiveDatagram(pair->second, 8, 10);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
    EXPECT_NE(got.error().message.find("exceeds 10 bytes"), std::string::npos);
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(Wire, ForeignControlMessageIsAnError) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  ASSERT_TRUE(testing::PassCredentials(pair->second.get()));
  ASSERT_OK(SendDatagram(pair->first, "x"));
  auto got = ReceiveDatagram(pair->second, 4);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
}

TEST(Wire, OversizedMessageIsRefusedByTheSender) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  auto sent = SendDatagram(pair->first, std::string(kMaxMessageSize + 1, 'a'));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, ErrorCode::kResourceExhausted);

  v1::Request request;
  request.set_protocol_version(kProtocolVersion);
  request.mutable_join()->set_target(std::string(kMaxMessageSize, 't'));
  auto sent_message = SendMessage(pair->first, request);
  ASSERT_FALSE(sent_message);
  EXPECT_EQ(sent_message.error().code, ErrorCode::kResourceExhausted);
}

TEST(Wire, OversizedMessageIsRefusedByTheReceiver) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  int size = 256 * 1024;
  ASSERT_EQ(setsockopt(pair->first.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
  std::string big(kMaxMessageSize + 100, 'a');
  ASSERT_EQ(send(pair->first.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  auto got = ReceiveDatagram(pair->second, 0);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
}

TEST(Wire, ClosedPeerIsReported) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  pair->first.reset();
  auto got = ReceiveDatagram(pair->second, 0);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(got.error().message, "connection closed by peer");
}

TEST(Wire, SendToClosedPeerFailsWithoutSigpipe) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  pair->second.reset();
  auto sent = SendDatagram(pair->first, "x");
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().sys_errno, EPIPE);
}

TEST(Wire, GarbageDecodesToInvalidRequest) {
  auto request = DecodeRequest("\xff\xff\xff\xff garbage");
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().code, ErrorCode::kInvalidRequest);
  auto response = DecodeResponse("\x0a\xff\xff", 0);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, ErrorCode::kInvalidRequest);
}

TEST(Wire, EmptyRequestHasNoBody) {
  v1::Request request;
  request.set_protocol_version(kProtocolVersion);
  auto decoded = DecodeRequest(request.SerializeAsString());
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, ErrorCode::kInvalidRequest);
}

TEST(Wire, OtherProtocolVersionIsUnsupported) {
  v1::Request request;
  request.set_protocol_version(2);
  request.mutable_list();
  auto decoded = DecodeRequest(request.SerializeAsString());
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, ErrorCode::kUnsupportedVersion);
}

TEST(Wire, RequestRoundTrip) {
  v1::Request request;
  request.set_protocol_version(kProtocolVersion);
  request.mutable_join()->set_target("web1");
  request.mutable_join()->add_kinds(v1::NET);
  auto decoded = DecodeRequest(request.SerializeAsString());
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->join().target(), "web1");
  ASSERT_EQ(decoded->join().kinds_size(), 1);
  EXPECT_EQ(decoded->join().kinds(0), v1::NET);
}

v1::Response GrantWithIndexes(std::initializer_list<int> indexes) {
  v1::Response response;
  response.set_protocol_version(kProtocolVersion);
  for (int index : indexes) {
    auto* entry = response.mutable_grant()->add_entries();
    entry->set_kind(v1::NET);
    if (index >= 0) entry->set_fd_index(static_cast<std::uint32_t>(index));
  }
  return response;
}

TEST(Wire, GrantIndexesAreBoundsChecked) {
  EXPECT_OK(DecodeResponse(GrantWithIndexes({0, 1}).SerializeAsString(), 2));
  EXPECT_OK(DecodeResponse(GrantWithIndexes({-1}).SerializeAsString(), 0));

  auto out_of_range = DecodeResponse(GrantWithIndexes({0, 2}).SerializeAsString(), 2);
  ASSERT_FALSE(out_of_range);
  EXPECT_EQ(out_of_range.error().code, ErrorCode::kInvalidRequest);

  auto shared = DecodeResponse(GrantWithIndexes({1, 1}).SerializeAsString(), 2);
  ASSERT_FALSE(shared);
  EXPECT_EQ(shared.error().code, ErrorCode::kInvalidRequest);

  auto unreferenced = DecodeResponse(GrantWithIndexes({0}).SerializeAsString(), 2);
  ASSERT_FALSE(unreferenced);
  EXPECT_EQ(unreferenced.error().code, ErrorCode::kInvalidRequest);

  v1::Response error = ErrorResponse(Error{ErrorCode::kNotFound, 0, "no target"});
  auto with_fds = DecodeResponse(error.SerializeAsString(), 1);
  ASSERT_FALSE(with_fds) << "an error response carrying a descriptor";
}

// FreeBSD 15's SOCK_SEQPACKET, simulated over a real unix SOCK_STREAM pair (the code it runs
// on there): bytes and SCM_RIGHTS flow as on a stream, so messages merge and nothing is
// truncated, except that a record ends where its sender passed MSG_EOR, and a read stops there
// and reports MSG_EOR in msg_flags. One direction: send on one end, receive on the other.
class EorRecordKernel {
 public:
  SocketCalls calls() {
    return {
        .send_msg = [this](int fd, const msghdr* msg, int flags) { return Send(fd, msg, flags); },
        .recv_msg = [this](int fd, msghdr* msg, int flags) { return Receive(fd, msg, flags); },
        .record_ends = RecordEnds::kMsgEor};
  }

  // One sendmsg of `bytes` with `flags`, as a client that is not ours might send it.
  ssize_t SendRaw(int fd, std::string bytes, int flags) {
    iovec iov{bytes.data(), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    return Send(fd, &msg, flags);
  }

 private:
  ssize_t Send(int fd, const msghdr* msg, int flags) {
    ssize_t n = sendmsg(fd, msg, flags & ~MSG_EOR);
    if (n > 0) {
      sent_ += static_cast<std::size_t>(n);
      if (flags & MSG_EOR) ends_.push_back(sent_);
    }
    return n;
  }
  ssize_t Receive(int fd, msghdr* msg, int flags) {
    iovec iov = msg->msg_iov[0];  // the codec reads into one buffer
    if (!ends_.empty()) iov.iov_len = std::min(iov.iov_len, ends_.front() - received_);
    msghdr clipped = *msg;
    clipped.msg_iov = &iov;
    clipped.msg_iovlen = 1;
    ssize_t n = recvmsg(fd, &clipped, flags);
    msg->msg_controllen = clipped.msg_controllen;
    msg->msg_flags = clipped.msg_flags;
    if (n > 0) {
      received_ += static_cast<std::size_t>(n);
      if (!ends_.empty() && received_ == ends_.front()) {
        ends_.pop_front();
        msg->msg_flags |= MSG_EOR;
      }
    }
    return n;
  }

  std::size_t sent_ = 0;
  std::size_t received_ = 0;
  std::deque<std::size_t> ends_;  // stream offsets where records end
};

Result<std::pair<UniqueFd, UniqueFd>> StreamPair() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return SysError("socketpair");
  return std::pair<UniqueFd, UniqueFd>(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

TEST(EorRecords, EachMessageIsARecordOfItsOwn) {
  EorRecordKernel freebsd;
  SocketCalls kernel = freebsd.calls();
  auto pair = StreamPair();
  ASSERT_OK(pair);
  std::size_t before = CountOpenFds();
  {
    auto fds = OpenDevNull(2);
    ASSERT_OK(SendDatagram(kernel, pair->first, "first"));
    ASSERT_OK(SendDatagram(kernel, pair->first, "second", Raw(fds)));
    auto first = ReceiveDatagram(kernel, pair->second, 2);
    ASSERT_OK(first);
    EXPECT_EQ(first->bytes, "first") << "sent without MSG_EOR, the two would come back merged";
    EXPECT_TRUE(first->fds.empty());
    auto second = ReceiveDatagram(kernel, pair->second, 2);
    ASSERT_OK(second);
    EXPECT_EQ(second->bytes, "second");
    EXPECT_EQ(second->fds.size(), 2u);
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(EorRecords, OversizedRecordIsRefusedAndItsTailNeverParsed) {
  EorRecordKernel freebsd;
  SocketCalls kernel = freebsd.calls();
  auto pair = StreamPair();
  ASSERT_OK(pair);
  // 70 KiB in one record: no MSG_TRUNC ever comes, the read simply stops at 64 KiB.
  std::string big(70 * 1024, 'x');
  ASSERT_EQ(freebsd.SendRaw(pair->first.get(), big, MSG_EOR), static_cast<ssize_t>(big.size()));
  ASSERT_OK(SendDatagram(kernel, pair->first, "next"));
  auto got = ReceiveDatagram(kernel, pair->second, 0);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(got.error().message, "message exceeds 65536 bytes");
  auto next = ReceiveDatagram(kernel, pair->second, 0);
  ASSERT_OK(next);
  EXPECT_EQ(next->bytes, "next") << "the oversized record's tail was read as a message";
}

TEST(EorRecords, RecordWithoutEndIsRefused) {
  EorRecordKernel freebsd;
  SocketCalls kernel = freebsd.calls();
  auto pair = StreamPair();
  ASSERT_OK(pair);
  ASSERT_EQ(freebsd.SendRaw(pair->first.get(), "no end", 0), 6);
  auto got = ReceiveDatagram(kernel, pair->second, 0);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(got.error().message,
            "message of 6 bytes does not end its record (the sender must pass MSG_EOR)");
}

TEST(Wire, ErrorCodesRoundTrip) {
  for (ErrorCode code :
       {ErrorCode::kNotFound, ErrorCode::kPermissionDenied, ErrorCode::kInvalidRequest,
        ErrorCode::kUnavailable, ErrorCode::kResourceExhausted, ErrorCode::kUnsupportedVersion,
        ErrorCode::kInternal}) {
    EXPECT_EQ(ErrorCodeFromWire(ErrorCodeToWire(code)), code);
    EXPECT_EQ(v1::Error::Code_Name(ErrorCodeToWire(code)), ErrorCodeName(code));
  }
}

}  // namespace
}  // namespace nsbroker
