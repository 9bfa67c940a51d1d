#include "bench_client.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "nsbroker/uwsgi_format.h"

namespace nsbroker::bench {
namespace {

// A grant is a few hundred bytes; receiving into 64 KiB would zero-fill 64 KiB per call and
// make the load generator, not the server, the thing measured.
constexpr std::size_t kMaxResponseBytes = 4096;
constexpr std::size_t kMaxGrantFds = 16;

}  // namespace

Result<UniqueFd> ConnectUnix(const std::string& path, int type) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidRequest, "socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd sock(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return SysError("socket(AF_UNIX)");
  timeval timeout{.tv_sec = kIoTimeoutSeconds, .tv_usec = 0};
  if (setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0 ||
      setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0) {
    return SysError("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)");
  }
  if (connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return SysError("connect " + path);
  }
  return sock;
}

v1::Request JoinRequest(const std::string& target) {
  v1::Request request;
  request.set_protocol_version(kProtocolVersion);
  request.mutable_join()->set_target(target);
  return request;
}

Result<std::size_t> NativeJoin(BorrowedFd sock, const v1::Request& request) {
  auto sent = SendMessage(sock, request);
  if (!sent) return std::unexpected(std::move(sent.error()));
  auto datagram = ReceiveDatagram(sock, kMaxGrantFds, kMaxResponseBytes);
  if (!datagram) return std::unexpected(std::move(datagram.error()));
  auto response = DecodeResponse(datagram->bytes, datagram->fds.size());
  if (!response) return std::unexpected(std::move(response.error()));
  if (response->has_error()) {
    return MakeError(ErrorCodeFromWire(response->error().code()),
                     "server refused: " + response->error().message());
  }
  if (!response->has_grant()) {
    return MakeError(ErrorCode::kInvalidRequest, "response to Join is not a Grant");
  }
  return datagram->fds.size();
}

Result<std::size_t> UwsgiReceive(BorrowedFd sock) {
  char greeting[kUwsgiGreetingSize];
  std::size_t got = 0;
  std::vector<UniqueFd> fds;
  std::vector<char> control(CMSG_SPACE(kUwsgiMaxFds * sizeof(int)));
  // A stream may split the greeting; the descriptors ride on its first byte.
  while (got < kUwsgiGreetingSize) {
    iovec iov{greeting + got, kUwsgiGreetingSize - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = recvmsg(sock.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("recvmsg (uwsgi greeting)");
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.emplace_back(fd);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      return MakeError(ErrorCode::kInvalidRequest, "uwsgi greeting: more than 64 descriptors");
    }
    if (n == 0) {
      return MakeError(ErrorCode::kUnavailable,
                       "uwsgi greeting: connection closed after " + std::to_string(got) + " bytes");
    }
    got += static_cast<std::size_t>(n);
  }
  if (std::string_view(greeting, kUwsgiMagic.size()) != kUwsgiMagic) {
    return MakeError(ErrorCode::kInvalidRequest, "uwsgi greeting: bad magic");
  }
  int count;
  std::memcpy(&count, greeting + kUwsgiMagic.size(), sizeof(count));
  if (count < 0 || static_cast<std::size_t>(count) != fds.size()) {
    return MakeError(ErrorCode::kInvalidRequest, "uwsgi greeting announces " +
                                                     std::to_string(count) + " descriptors, " +
                                                     std::to_string(fds.size()) + " received");
  }
  return fds.size();
}

}  // namespace nsbroker::bench
