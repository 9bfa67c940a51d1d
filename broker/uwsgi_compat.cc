#include "uwsgi_compat.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "audit.h"
#include "catalog.h"
#include "handler.h"
#include "server.h"
#include "service.h"
#include "wire.h"

namespace nsbroker {

struct UwsgiListener::Connection {
  std::uint64_t id = 0;
  UniqueFd fd;
  PeerIdentity peer;
  std::unique_ptr<Event> readable;  // after the greeting, until the peer closes
};

KindSet UwsgiKinds() {
  KindSet set = 0;
  for (NsKind kind : kUwsgiSendOrder) set |= KindBit(kind);
  return set;
}

std::string UwsgiGreeting(int count) {
  std::string out(kUwsgiMagic);
  out.append(reinterpret_cast<const char*>(&count), sizeof count);
  return out;
}

std::vector<int> UwsgiSendList(const Decision& decision) {
  std::vector<int> out;
  if (!decision.granted()) return out;
  for (NsKind kind : kUwsgiSendOrder) {
    for (const JoinEntry& entry : decision.entries) {
      if (entry.kind != kind || entry.fd < 0) continue;
      out.push_back(entry.fd);
      break;  // each namespace once
    }
  }
  return out;
}

Result<UniqueFd> BindUwsgiSocket(const Config& config) {
  const std::string& path = config.uwsgi_socket;
  if (config.uwsgi_target.empty()) {
    return MakeError(ErrorCode::kInvalidRequest,
                     config.file + ": uwsgi_socket \"" + path + "\" needs uwsgi_target");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return MakeError(ErrorCode::kInvalidRequest, "uwsgi_socket \"" + path + "\": bad length");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return ListenUnixSocket(addr, SOCK_STREAM, config, "server");
}

UwsgiListener::UwsgiListener(Server& server, UniqueFd listen_fd)
    : server_(server),
      reap_(server.base(), -1, 0, [this](short) { graveyard_.clear(); }),
      greet_(server.base(), -1, 0, [this](short) { GreetAccepted(); }),
      listener_(server.base(), std::move(listen_fd),
                [this](UniqueFd conn) { OnAccept(std::move(conn)); }) {}

UwsgiListener::~UwsgiListener() {
  for (auto& [id, conn] : open_) server_.Leave(conn->peer, std::move(conn->fd));
}

void UwsgiListener::OnAccept(UniqueFd fd) {
  auto peer = server_.Identify(fd);
  if (!peer) return LogLine("uwsgi accept: " + peer.error().message);
  // uWSGI's format has no error message: every refusal is a close with nothing sent.
  if (auto admitted = server_.Admit(*peer); !admitted) {
    return LogLine("uwsgi: refusing pid " + std::to_string(peer->pid) + ": " +
                   admitted.error().message);
  }
  auto conn = std::make_unique<Connection>();
  Connection& c = *conn;
  c.id = next_id_++;
  c.fd = std::move(fd);
  c.peer = std::move(*peer);
  open_.emplace(c.id, std::move(conn));
  // The greeting goes out from the loop, not from here: the listener accepts until EAGAIN,
  // and a client that reads, closes and reconnects within this callback would keep it
  // accepting while no close is ever noticed, up to the per-uid connection limit. Not
  // through epoll either: a fresh socket is writable at once, so greet_ runs right after
  // this callback, in the same loop pass, with no epoll_ctl for writability.
  accepted_.push_back(c.id);
  if (!greet_.pending()) greet_.Activate();
}

void UwsgiListener::GreetAccepted() {
  greeting_.swap(accepted_);  // both keep their capacity: no allocation per pass
  for (std::uint64_t id : greeting_) {
    auto it = open_.find(id);
    if (it != open_.end()) Greet(*it->second);
  }
  greeting_.clear();
}

void UwsgiListener::Greet(Connection& conn) {
  Decision decision =
      server_.Join(conn.peer, conn.fd,
                   {.target = server_.catalog().config().uwsgi_target, .usable = UwsgiKinds()});
  // Sent once the turn's audit lines are written; the decision keeps its descriptors open.
  // One callback per batch, not a closure per connection: a Commit within Join
  // (Server::FdBudget) sends the batch decided before it, and the next decision starts
  // another.
  if (decided_.empty()) server_.AfterCommit([this] { SendDecided(); });
  decided_.push_back({conn.id, std::move(decision)});
}

void UwsgiListener::SendDecided() {
  sending_.swap(decided_);
  for (Decided& d : sending_) {
    auto it = open_.find(d.id);
    if (it != open_.end()) Send(*it->second, d.decision);
  }
  sending_.clear();
}

void UwsgiListener::Send(Connection& conn, const Decision& decision) {
  std::vector<int> send = UwsgiSendList(decision);
  if (send.empty()) return Close(conn);  // denied (audited by Join) or nothing uWSGI can use
  std::string greeting = UwsgiGreeting(static_cast<int>(send.size()));
  // One sendmsg (SendDatagram), 15 bytes into a fresh connection's empty buffer: anything
  // short is the peer's doing.
  if (auto sent = SendDatagram(conn.fd, greeting, send); !sent) {
    LogLine("uwsgi: sending to pid " + std::to_string(conn.peer.pid) + ": " + sent.error().message);
    return Close(conn);
  }
  // uWSGI's server closes here, and clients may read until EOF: they get it now. But the
  // descriptors stay charged to us until the peer reads them (unix(7)), so our end stays
  // open (SIOCOUTQ still counts what is unread) until the peer closes it or goes idle,
  // and the per-uid budget sees them, as for native responses.
  if (shutdown(conn.fd.get(), SHUT_WR) != 0) {
    LogLine(std::string("uwsgi: shutdown: ") + std::strerror(errno));
  }
  conn.readable = std::make_unique<Event>(server_.base(), conn.fd.get(), EV_READ,
                                          [this, &conn](short) { Close(conn); });
  conn.readable->Add(std::chrono::milliseconds(server_.catalog().config().idle_timeout_ms));
}

// Refused, failed, or granted and then closed by the peer (or written to, which uWSGI's
// client never does) or idle: done.
void UwsgiListener::Close(Connection& conn) {
  if (conn.readable) conn.readable->Del();
  server_.Leave(conn.peer, std::move(conn.fd));
  auto it = open_.find(conn.id);
  graveyard_.push_back(std::move(it->second));
  open_.erase(it);
  reap_.Activate();
}

}  // namespace nsbroker
