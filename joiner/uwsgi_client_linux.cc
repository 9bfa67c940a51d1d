// Implements include/nsbroker/uwsgi.h: the uWSGI setns-socket client of libnsjoin. uWSGI's
// setns-socket is a Linux feature (nsfs descriptors), so a FreeBSD build leaves this file out.
#include <linux/nsfs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>

#include "nsbroker/ns_kind.h"
#include "nsbroker/uwsgi.h"
#include "unix_address.h"
#include "unix_peer.h"
#include "wire.h"

namespace nsbroker {
namespace {

// NS_GET_ID (Linux 6.18 uapi linux/nsfs.h, newer than Debian 12's headers): the namespace's
// unique, never reused 64-bit id. Older kernels answer ENOTTY and we fall back to st_ino.
constexpr unsigned long kNsGetId = _IOR(NSIO, 13, std::uint64_t);

std::unexpected<Error> Fail(ErrorCode code, const std::string& target, const std::string& why) {
  return MakeError(code, "uwsgi " + target + ": " + why);
}

// Only root, the listed uids, or the caller itself (when not running set-uid) may serve.
bool TrustedServer(uid_t server, const UwsgiClientOptions& options) {
  if (server == 0) return true;
  if (std::find(options.trusted_server_uids.begin(), options.trusted_server_uids.end(), server) !=
      options.trusted_server_uids.end()) {
    return true;
  }
  uid_t ruid, euid, suid;
  if (getresuid(&ruid, &euid, &suid) != 0) return false;
  return ruid == euid && euid == suid && server == ruid;
}

Result<GrantEntry> Identify(UniqueFd fd, std::size_t index, std::size_t count,
                            const std::string& target) {
  std::string which = "descriptor " + std::to_string(index + 1) + " of " + std::to_string(count);
  int nstype = ioctl(fd.get(), NS_GET_NSTYPE);
  if (nstype < 0) {
    return Fail(ErrorCode::kInvalidRequest, target,
                which + " is not a namespace (NS_GET_NSTYPE: " + std::strerror(errno) + ")");
  }
  std::optional<NsKind> kind = KindFromNsType(nstype);
  if (!kind) {
    return Fail(ErrorCode::kInvalidRequest, target,
                which + " is a namespace of unknown type " + std::to_string(nstype));
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return Fail(ErrorCode::kInternal, target, which + ": fstat: " + std::strerror(errno));
  }
  GrantEntry entry{.kind = *kind, .fd = std::move(fd), .inode = st.st_ino, .device = st.st_dev};
  std::uint64_t id = 0;
  if (ioctl(entry.fd.get(), kNsGetId, &id) == 0) entry.ns_id = id;
  return entry;
}

bool SameNamespace(const GrantEntry& a, const GrantEntry& b) {
  if (a.ns_id != 0 && b.ns_id != 0) return a.ns_id == b.ns_id;
  return a.device == b.device && a.inode == b.inode;
}

}  // namespace

Result<Grant> ParseUwsgiGreeting(std::string_view bytes, std::vector<UniqueFd> fds,
                                 const std::string& target) {
  if (fds.size() > kUwsgiMaxFds) {
    return Fail(ErrorCode::kInvalidRequest, target,
                "greeting carries " + std::to_string(fds.size()) + " descriptors, at most " +
                    std::to_string(kUwsgiMaxFds) + " allowed");
  }
  if (bytes.size() != kUwsgiGreetingSize) {
    return Fail(ErrorCode::kInvalidRequest, target,
                "greeting of " + std::to_string(bytes.size()) + " bytes, expected " +
                    std::to_string(kUwsgiGreetingSize) + " (not a uWSGI setns-socket?)");
  }
  if (bytes.substr(0, kUwsgiMagic.size()) != kUwsgiMagic) {
    return Fail(ErrorCode::kInvalidRequest, target,
                "wrong magic, expected \"uwsgi-setns\" (not a uWSGI setns-socket?)");
  }
  int count;
  std::memcpy(&count, bytes.data() + kUwsgiMagic.size(), sizeof count);
  if (count < 0 || static_cast<std::size_t>(count) != fds.size()) {
    return Fail(ErrorCode::kInvalidRequest, target,
                "greeting announces " + std::to_string(count) + " descriptors but " +
                    std::to_string(fds.size()) + " arrived");
  }
  if (fds.empty()) {
    return Fail(ErrorCode::kInvalidRequest, target, "greeting carries no namespace");
  }
  Grant grant{.target = target};
  std::size_t n = fds.size();
  for (std::size_t i = 0; i < n; ++i) {
    auto entry = Identify(std::move(fds[i]), i, n, target);
    if (!entry) return std::unexpected(std::move(entry.error()));
    auto same_kind = std::find_if(grant.entries.begin(), grant.entries.end(),
                                  [&](const GrantEntry& e) { return e.kind == entry->kind; });
    if (same_kind == grant.entries.end()) {
      grant.entries.push_back(std::move(*entry));
    } else if (!SameNamespace(*same_kind, *entry)) {
      *same_kind = std::move(*entry);  // the later wins, as uWSGI's sequence of setns does
    }
  }
  return grant;
}

Result<Grant> ReadUwsgiGrant(BorrowedFd sock, const std::string& target,
                             std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string bytes(kUwsgiGreetingSize, '\0');
  std::size_t got = 0;
  std::vector<UniqueFd> fds;
  // Room for one descriptor more than allowed, so that 65 shows as "too many" rather than
  // only as MSG_CTRUNC; beyond that the kernel closes what does not fit and sets MSG_CTRUNC.
  std::vector<char> control(CMSG_SPACE((kUwsgiMaxFds + 1) * sizeof(int)));
  // uWSGI sends everything in one sendmsg, but a stream may still deliver it in pieces:
  // read exactly the greeting, never past it, until it is complete or the server closes.
  while (got < kUwsgiGreetingSize) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{.fd = sock.get(), .events = POLLIN};
    int ready = left.count() > 0 ? poll(&pfd, 1, static_cast<int>(left.count())) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0)
      return Fail(ErrorCode::kInternal, target, std::string("poll: ") + std::strerror(errno));
    if (ready == 0) {
      return Fail(ErrorCode::kUnavailable, target,
                  "no complete greeting within " + std::to_string(timeout.count()) + " ms");
    }
    iovec iov{bytes.data() + got, kUwsgiGreetingSize - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n;
    do {
      n = recvmsg(sock.get(), &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      return Fail(CodeForErrno(errno), target, std::string("recvmsg: ") + std::strerror(errno));
    }
    bool only_rights = TakeRightsFds(msg, fds);
    if (msg.msg_flags & MSG_CTRUNC) {
      return Fail(ErrorCode::kInvalidRequest, target,
                  "greeting carries more than " + std::to_string(kUwsgiMaxFds) +
                      " descriptors (control data truncated)");
    }
    if (!only_rights) {
      return Fail(ErrorCode::kInvalidRequest, target, "unexpected control message");
    }
    if (fds.size() > kUwsgiMaxFds) {
      return Fail(ErrorCode::kInvalidRequest, target,
                  "greeting carries " + std::to_string(fds.size()) + " descriptors, at most " +
                      std::to_string(kUwsgiMaxFds) + " allowed");
    }
    if (n == 0) {
      if (got == 0 && fds.empty()) {
        return Fail(ErrorCode::kUnavailable, target,
                    "server closed the connection without a greeting (nsbrokerd does this when "
                    "its policy denies this peer)");
      }
      return Fail(ErrorCode::kInvalidRequest, target,
                  "truncated greeting: " + std::to_string(got) + " of " +
                      std::to_string(kUwsgiGreetingSize) + " bytes before the server closed");
    }
    got += static_cast<std::size_t>(n);
  }
  return ParseUwsgiGreeting(bytes, std::move(fds), target);
}

Result<Grant> ReceiveUwsgiGrant(const std::string& socket_path, const UwsgiClientOptions& options) {
  auto addr = UnixAddress(socket_path);
  if (!addr) return std::unexpected(std::move(addr.error()));
  UniqueFd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) {
    return Fail(CodeForErrno(errno), socket_path, std::string("socket: ") + std::strerror(errno));
  }
  int r;
  do {
    r = connect(sock.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    int err = errno;
    ErrorCode code = err == ECONNREFUSED ? ErrorCode::kUnavailable : CodeForErrno(err);
    return Fail(code, socket_path, std::string("connect: ") + std::strerror(err));
  }
  // The kernel's record of who called listen(), not anything the server could claim.
  auto server = ReadPeerIdentity(sock, false);
  if (!server) return Fail(ErrorCode::kInternal, socket_path, server.error().message);
  if (!TrustedServer(server->uid, options)) {
    return Fail(ErrorCode::kPermissionDenied, socket_path,
                "served by uid " + std::to_string(server->uid) + " (pid " +
                    std::to_string(server->pid) + "), which is neither root nor a trusted uid");
  }
  return ReadUwsgiGrant(sock, socket_path, options.timeout);
}

}  // namespace nsbroker
