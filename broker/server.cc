#include "server.h"

#include <fcntl.h>
#include <sys/socket.h>

#include "wire.h"

namespace nsbroker {

struct Server::Connection {
  std::uint64_t id = 0;
  UniqueFd fd;
  PeerIdentity peer;
  std::unique_ptr<Event> readable;
  std::unique_ptr<Event> writable;
  // A response the peer's full receive queue could not take yet (EAGAIN).
  std::string pending_bytes;
  std::vector<UniqueFd> pending_fds;
};

Server::Server(event_base* base, std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit,
               bool verbose)
    : base_(base),
      verbose_(verbose),
      catalog_(std::move(catalog)),
      audit_(std::move(audit)),
      reap_(base, -1, 0, [this](short) { graveyard_.clear(); }),
      sweep_(base, -1, 0, [this](short) { Sweep(); }) {
  WatchTargets();
}

Server::~Server() = default;

void Server::WatchTargets() {
  watchers_.clear();
  auto& entries = catalog_->entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    int fd = entries[i].handle->watch_fd();
    if (fd < 0) continue;
    // A pidfd becomes readable once when its process exits; one shot is enough.
    watchers_.push_back(std::make_unique<Event>(base_, fd, EV_READ, [this, i](short) {
      catalog_->MarkGone(i);
      const CatalogEntry& e = catalog_->entries()[i];
      LogLine("target '" + e.spec->name + "' is unavailable: " + e.gone);
    }));
    watchers_.back()->Add();
  }
}

void Server::AddListener(UniqueFd listen_fd) {
  listeners_.push_back(std::make_unique<Listener>(
      base_, std::move(listen_fd), [this](UniqueFd conn) { OnAccept(std::move(conn)); }));
}

void Server::Swap(std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit) {
  watchers_.clear();  // they refer to the old catalog's pidfds
  catalog_ = std::move(catalog);
  if (audit) audit_ = std::move(audit);
  WatchTargets();
}

Result<void> Server::Admit(const PeerIdentity& peer) {
  const Config& c = catalog_->config();
  if (stats_.active_connections >= c.max_connections) {
    return MakeError(ErrorCode::kResourceExhausted, "too many connections (max_connections " +
                                                        std::to_string(c.max_connections) + ")");
  }
  auto it = uids_.find(peer.uid);
  if (it != uids_.end() && it->second.connections >= c.max_connections_per_uid) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "uid " + std::to_string(peer.uid) + " has too many connections " +
                         "(max_connections_per_uid " + std::to_string(c.max_connections_per_uid) +
                         ")");
  }
  ++uids_[peer.uid].connections;
  ++stats_.active_connections;
  ++stats_.connections;
  return {};
}

void Server::Leave(const PeerIdentity& peer, BorrowedFd conn) {
  --stats_.active_connections;
  auto it = uids_.find(peer.uid);
  if (it == uids_.end()) return;
  UidState& state = it->second;
  auto unread = state.unread.find(conn.get());
  if (unread != state.unread.end()) {
    std::size_t fds = unread->second;
    state.unread.erase(unread);
    if (QueuedBytes(conn) > 0) {
      // Closing our end would not take the descriptors out of the peer's queue, only out of
      // our count: waiting out idle_timeout_ms would refill a hoarder's budget. Keep a
      // duplicate, shut down (the peer still reads what is queued, then end-of-file).
      UniqueFd kept(fcntl(conn.get(), F_DUPFD_CLOEXEC, 0));
      if (kept.valid()) {
        shutdown(kept.get(), SHUT_RDWR);
        state.unread[kept.get()] = fds;
        state.closed_unread.emplace(kept.get(), std::move(kept));
        if (!sweep_.pending()) sweep_.Add(std::chrono::seconds(1));
      }
    }
  }
  if (--state.connections == 0 && state.unread.empty()) uids_.erase(it);
}

std::size_t Server::Unread(UidState& state) {
  std::size_t unread = 0;
  auto& map = state.unread;
  for (auto u = map.begin(); u != map.end();) {
    // Descriptors in a datagram stay charged to the sender until the receiver reads it
    // (unix(7) SCM_RIGHTS; past RLIMIT_NOFILE sendmsg fails with ETOOMANYREFS for every
    // peer). QueuedBytes (SIOCOUTQ) is what of ours is still queued on that connection.
    if (QueuedBytes(u->first) == 0) {
      state.closed_unread.erase(u->first);
      u = map.erase(u);
      continue;
    }
    unread += u->second;
    ++u;
  }
  return unread;
}

void Server::Sweep() {
  bool kept = false;
  for (auto it = uids_.begin(); it != uids_.end();) {
    Unread(it->second);
    kept = kept || !it->second.closed_unread.empty();
    if (it->second.connections == 0 && it->second.unread.empty()) {
      it = uids_.erase(it);
    } else {
      ++it;
    }
  }
  if (kept) sweep_.Add(std::chrono::seconds(1));
}

void Server::NoteUnread(uid_t uid, BorrowedFd conn, std::size_t fds) {
  if (fds > 0) uids_[uid].unread[conn.get()] += fds;
}

std::size_t Server::FdBudget(uid_t uid) {
  std::size_t limit = catalog_->config().max_inflight_fds_per_uid;
  auto it = uids_.find(uid);
  if (it == uids_.end()) return limit;
  std::size_t unread = Unread(it->second);
  return unread >= limit ? 0 : limit - unread;
}

Outcome Server::Join(const PeerIdentity& peer, std::string_view target, KindSet kinds) {
  Outcome out = HandleJoin(*catalog_, peer, target, kinds, FdBudget(peer.uid));
  if (out.audit) audit_->Write(*out.audit);
  Count(stats_, out);
  return out;
}

void Server::Refuse(BorrowedFd conn, const std::string& message) {
  // Best effort on a fresh socket whose queue is empty; the connection closes either way.
  (void)SendMessage(conn, ErrorResponse({ErrorCode::kResourceExhausted, 0, message}));
}

void Server::OnAccept(UniqueFd fd) {
  auto peer = ReadPeerIdentity(fd);
  if (!peer) {
    LogLine("accept: " + peer.error().message);
    return;
  }
  if (auto admitted = Admit(*peer); !admitted) {
    ++stats_.errors;
    if (verbose_) {
      LogLine("refusing pid " + std::to_string(peer->pid) + ": " + admitted.error().message);
    }
    Refuse(fd, admitted.error().message);
    return;
  }
  auto conn = std::make_unique<Connection>();
  Connection& c = *conn;
  c.id = next_id_++;
  c.fd = std::move(fd);
  c.peer = std::move(*peer);
  c.readable = std::make_unique<Event>(base_, c.fd.get(), EV_READ | EV_PERSIST,
                                       [this, &c](short what) { OnReadable(c, what); });
  c.writable = std::make_unique<Event>(base_, c.fd.get(), EV_WRITE,
                                       [this, &c](short what) { OnWritable(c, what); });
  c.readable->Add(std::chrono::milliseconds(catalog_->config().idle_timeout_ms));
  if (verbose_) {
    LogLine("connection " + std::to_string(c.id) + " from pid " + std::to_string(c.peer.pid) +
            " uid " + std::to_string(c.peer.uid));
  }
  connections_.emplace(c.id, std::move(conn));
}

void Server::OnReadable(Connection& conn, short what) {
  if (what & EV_TIMEOUT) return Close(conn, "idle");
  // No request carries descriptors: any that arrive are closed by ReceiveDatagram and the
  // request is answered INVALID_REQUEST.
  auto datagram = ReceiveDatagram(conn.fd, 0);
  if (!datagram) {
    const Error& e = datagram.error();
    if (e.sys_errno == EAGAIN) return;
    if (e.code == ErrorCode::kInvalidRequest) {
      ++stats_.errors;
      Outcome out;
      out.response = ErrorResponse(e);
      return Respond(conn, std::move(out));
    }
    return Close(conn, e.message);
  }
  Outcome out =
      HandleRequest(*catalog_, stats_, conn.peer, datagram->bytes, FdBudget(conn.peer.uid));
  if (out.audit) audit_->Write(*out.audit);
  Count(stats_, out);
  Respond(conn, std::move(out));
}

void Server::Respond(Connection& conn, Outcome outcome) {
  std::string bytes;
  if (!outcome.response.SerializeToString(&bytes)) return Close(conn, "cannot serialize");
  auto sent = SendDatagram(conn.fd, bytes, FdNumbers(outcome.fds));
  if (sent) {
    NoteUnread(conn.peer.uid, conn.fd, outcome.fds.size());
    return;
  }
  const Error& e = sent.error();
  if (e.sys_errno == EAGAIN) {
    // The peer is not reading: stop reading its requests until this response is gone, and
    // give it request_timeout_ms to make room.
    conn.pending_bytes = std::move(bytes);
    conn.pending_fds = std::move(outcome.fds);
    conn.readable->Del();
    conn.writable->Add(std::chrono::milliseconds(catalog_->config().request_timeout_ms));
    return;
  }
  if (e.sys_errno == ETOOMANYREFS && !outcome.fds.empty()) {
    LogLine("sendmsg: too many descriptors in flight (ETOOMANYREFS); answering without them");
    Outcome retry;
    retry.response = ErrorResponse(
        {ErrorCode::kResourceExhausted, 0, "the broker has too many descriptors in flight"});
    return Respond(conn, std::move(retry));
  }
  Close(conn, e.message);
}

void Server::OnWritable(Connection& conn, short what) {
  if (what & EV_TIMEOUT) return Close(conn, "response not read within request_timeout_ms");
  auto sent = SendDatagram(conn.fd, conn.pending_bytes, FdNumbers(conn.pending_fds));
  if (!sent && sent.error().sys_errno == EAGAIN) {
    conn.writable->Add(std::chrono::milliseconds(catalog_->config().request_timeout_ms));
    return;
  }
  if (!sent) return Close(conn, sent.error().message);
  NoteUnread(conn.peer.uid, conn.fd, conn.pending_fds.size());
  conn.pending_bytes.clear();
  conn.pending_fds.clear();
  conn.readable->Add(std::chrono::milliseconds(catalog_->config().idle_timeout_ms));
}

void Server::Close(Connection& conn, std::string_view why) {
  if (verbose_) LogLine("connection " + std::to_string(conn.id) + " closed: " + std::string(why));
  auto it = connections_.find(conn.id);
  if (it == connections_.end()) return;
  conn.readable->Del();
  conn.writable->Del();
  Leave(conn.peer, conn.fd);
  // The descriptor closes when the graveyard is reaped, after this callback has returned.
  graveyard_.push_back(std::move(it->second));
  connections_.erase(it);
  reap_.Activate();
}

}  // namespace nsbroker
