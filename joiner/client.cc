#include "nsbroker/client.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "client_decode.h"
#include "enter.h"
#include "nsbroker/kind_set.h"
#include "unix_address.h"
#include "unix_peer.h"
#include "wire.h"

namespace nsbroker {
namespace {

// A grant holds at most one descriptor per kind.
constexpr std::size_t kMaxGrantFds = kAllKinds.size();

std::string Quoted(NsKind kind) { return "'" + std::string(KindName(kind)) + "'"; }

Result<void> SetTimeouts(BorrowedFd sock, std::chrono::milliseconds timeout) {
  auto ms = timeout.count();
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  if (setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
    return SysError(ErrorCode::kInternal, "setsockopt SO_RCVTIMEO");
  }
  return {};
}

// One request, one datagram back (not yet decoded).
Result<Datagram> Exchange(BorrowedFd sock, const v1::Request& request, std::size_t max_fds) {
  if (auto sent = SendMessage(sock, request); !sent) {
    sent.error().message = "send to the broker: " + sent.error().message;
    return std::unexpected(std::move(sent.error()));
  }
  auto datagram = ReceiveDatagram(sock, max_fds);
  if (!datagram) {
    Error& error = datagram.error();
    if (error.sys_errno == EAGAIN || error.sys_errno == EWOULDBLOCK) {
      error.message = "the broker did not answer in time";
    } else {
      error.message = "receive from the broker: " + error.message;
    }
    return std::unexpected(std::move(error));
  }
  return datagram;
}

// The broker's answer, checked by DecodeResponse; its Error becomes ours with its code and
// message.
Result<v1::Response> DecodeAnswer(const Datagram& datagram) {
  auto response = DecodeResponse(datagram.bytes, datagram.fds.size());
  if (!response) {
    response.error().message = "bad response from the broker: " + response.error().message;
    return std::unexpected(std::move(response.error()));
  }
  if (response->has_error()) {
    // Callers print "target 'NAME': " and this message; it must never be empty.
    const std::string& message = response->error().message();
    return std::unexpected(
        Error{ErrorCodeFromWire(response->error().code()), 0,
              message.empty() ? "the broker refused without a reason" : message});
  }
  return response;
}

v1::Request NewRequest() {
  v1::Request request;
  request.set_protocol_version(kProtocolVersion);
  return request;
}

}  // namespace

const GrantEntry* Grant::Find(NsKind kind) const {
  for (const GrantEntry& entry : entries) {
    if (entry.kind == kind) return &entry;
  }
  return nullptr;
}

Result<Client> Client::Connect(const std::string& socket_path, const ClientOptions& options) {
  auto addr = UnixAddress(socket_path);
  if (!addr) return std::unexpected(std::move(addr.error()));
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return SysError(ErrorCode::kResourceExhausted, "socket(AF_UNIX)");
  if (auto r = SetTimeouts(sock, options.timeout); !r) return std::unexpected(std::move(r.error()));
  int rc;
  do {
    rc = connect(sock.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    ErrorCode code = (errno == EACCES || errno == EPERM) ? ErrorCode::kPermissionDenied
                                                         : ErrorCode::kUnavailable;
    return SysError(code, "connect to the broker at " + socket_path);
  }
  // The kernel's word on who listens there: a socket anyone could create must not be able
  // to hand us (or jailme) namespaces of its choosing.
  // (What it recorded at listen(2); the groups are not needed.)
  auto server = ReadPeerIdentity(sock, false);
  if (!server) {
    server.error().message += " of " + socket_path;
    return std::unexpected(std::move(server.error()));
  }
  const auto& trusted = options.trusted_server_uids;
  if (server->uid != 0 && std::find(trusted.begin(), trusted.end(), server->uid) == trusted.end()) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "the socket " + socket_path + " is served by uid " +
                         std::to_string(server->uid) +
                         ", which is not root nor a trusted broker uid");
  }
  return Client(std::move(sock), server->uid);
}

Result<Grant> DecodeGrant(Datagram datagram, std::string_view target,
                          std::span<const NsKind> kinds) {
  auto response = DecodeAnswer(datagram);
  if (!response) return std::unexpected(std::move(response.error()));
  std::vector<UniqueFd>& fds = datagram.fds;
  if (!response->has_grant()) {
    return MakeError(ErrorCode::kInternal, "the broker answered a join with no grant");
  }
  const v1::Grant& wire = response->grant();
  if (wire.target() != target) {
    return MakeError(ErrorCode::kInternal,
                     "the broker granted target '" + wire.target() + "' instead");
  }
  // A request naming no namespace kind (only ROOT/CWD, or nothing) gets every namespace the
  // peer may have; an empty one, from an older broker, ROOT and CWD too.
  auto directory = [](NsKind k) { return IsDirectoryKind(k); };
  bool any_namespace = std::all_of(kinds.begin(), kinds.end(), directory);
  KindSet named = KindSetOf(kinds);
  Grant grant;
  grant.target = wire.target();
  for (const auto& in : wire.entries()) {
    NsKind kind = *KindFromWire(in.kind());  // DecodeResponse checked every kind
    if (grant.Find(kind) != nullptr) {
      return MakeError(ErrorCode::kInvalidRequest, "the grant names " + Quoted(kind) + " twice");
    }
    bool asked = kinds.empty() || (any_namespace && !directory(kind)) || KindSetHas(named, kind);
    if (!asked) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "the broker granted " + Quoted(kind) + ", which was not asked for");
    }
    GrantEntry entry{.kind = kind,
                     .inode = in.inode(),
                     .device = in.device(),
                     .ns_id = in.ns_id(),
                     .jid = in.jid(),
                     .jail_name = in.jail_name()};
    // DecodeResponse checked that the index is in range and used once.
    if (in.has_fd_index()) entry.fd = std::move(fds[in.fd_index()]);
    if (auto r = platform::CheckEntry(entry); !r) {
      r.error().message = "refusing the grant: " + r.error().message;
      return std::unexpected(std::move(r.error()));
    }
    grant.entries.push_back(std::move(entry));
  }
  return grant;
}

Result<TargetPage> DecodeTargetList(const Datagram& datagram) {
  auto response = DecodeAnswer(datagram);
  if (!response) return std::unexpected(std::move(response.error()));
  if (!response->has_targets()) {
    return MakeError(ErrorCode::kInternal, "the broker answered a list with no target list");
  }
  const v1::TargetList& page = response->targets();
  TargetPage out{.next_start = page.next_start()};
  for (const auto& target : page.targets()) {
    TargetInfo info{
        .name = target.name(), .available = !target.unavailable(), .reason = target.reason()};
    for (int wire_kind : target.kinds()) {
      auto kind = KindFromWire(wire_kind);
      if (!kind) {
        return MakeError(
            ErrorCode::kInvalidRequest,
            "target '" + target.name() + "' lists an unknown kind " + std::to_string(wire_kind));
      }
      info.kinds.push_back(*kind);
    }
    out.targets.push_back(std::move(info));
  }
  return out;
}

Result<Grant> Client::Join(std::string_view target, std::span<const NsKind> kinds) {
  v1::Request request = NewRequest();
  auto* join = request.mutable_join();
  join->set_target(std::string(target));
  for (NsKind kind : kinds) join->add_kinds(static_cast<v1::Kind>(KindToWire(kind)));
  auto datagram = Exchange(sock_, request, kMaxGrantFds);
  if (!datagram) return std::unexpected(std::move(datagram.error()));
  return DecodeGrant(std::move(*datagram), target, kinds);
}

// A long list comes in pages (start / next_start) that each fit one datagram.
Result<std::vector<TargetInfo>> Client::List() {
  std::vector<TargetInfo> out;
  std::uint32_t start = 0;
  do {
    v1::Request request = NewRequest();
    request.mutable_list()->set_start(start);
    auto datagram = Exchange(sock_, request, 0);
    if (!datagram) return std::unexpected(std::move(datagram.error()));
    auto page = DecodeTargetList(*datagram);
    if (!page) return std::unexpected(std::move(page.error()));
    // Pages move forward, or a broken broker could keep us asking for ever.
    if (page->next_start != 0 && page->next_start <= start) {
      return MakeError(ErrorCode::kInternal, "the broker's list pages do not move forward");
    }
    start = page->next_start;
    std::move(page->targets.begin(), page->targets.end(), std::back_inserter(out));
  } while (start != 0);
  return out;
}

// Status comes in pages like List (start / next_start); the counters are the first page's.
Result<BrokerStatus> Client::Status() {
  BrokerStatus out;
  std::uint32_t start = 0;
  do {
    v1::Request request = NewRequest();
    request.mutable_status()->set_start(start);
    auto datagram = Exchange(sock_, request, 0);
    if (!datagram) return std::unexpected(std::move(datagram.error()));
    auto response = DecodeAnswer(*datagram);
    if (!response) return std::unexpected(std::move(response.error()));
    if (!response->has_status()) {
      return MakeError(ErrorCode::kInternal, "the broker answered a status request with no status");
    }
    const v1::Status& wire = response->status();
    if (start == 0) {
      out.uptime_ms = wire.uptime_ms();
      out.grants = wire.grants();
      out.denials = wire.denials();
      out.errors = wire.errors();
      out.connections = wire.connections();
      out.active_connections = wire.active_connections();
    }
    for (const auto& t : wire.targets()) {
      out.targets.push_back({.name = t.name(), .available = t.available(), .reason = t.reason()});
    }
    // A page must bring targets and move forward, or a broken broker could loop us forever.
    if (wire.next_start() != 0 && (wire.next_start() <= start || wire.targets().empty())) {
      return MakeError(ErrorCode::kInternal, "the broker's status pages do not move forward");
    }
    start = wire.next_start();
  } while (start != 0);
  return out;
}

}  // namespace nsbroker
