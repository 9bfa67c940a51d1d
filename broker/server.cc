#include "server.h"

#include <fcntl.h>
#include <sys/socket.h>

#include "wire.h"

namespace nsbroker {

using Clock = std::chrono::steady_clock;

struct Server::Connection {
  std::uint64_t id = 0;
  UniqueFd fd;
  PeerIdentity peer;
  std::unique_ptr<Event> readable;
  std::unique_ptr<Event> writable;
  std::unique_ptr<Event> expire;  // max_connection_age_ms after accept
  // A response the peer's full receive queue could not take yet (EAGAIN), with what keeps
  // its descriptors open.
  std::string pending_bytes;
  Outcome pending;
};

struct Server::Kept {
  UniqueFd fd;
  uid_t uid = 0;
};

struct Server::Refusing {
  std::uint64_t id = 0;
  UniqueFd fd;
  std::unique_ptr<Event> readable;
};

Server::Server(event_base* base, std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit,
               bool verbose, std::size_t budget)
    : base_(base),
      verbose_(verbose),
      ledger_(budget),
      catalog_(std::move(catalog)),
      audit_(std::move(audit)),
      cache_([](const std::string& line) { LogLine(line); }),
      lifecycle_(base),
      reap_(base, -1, 0,
            [this](short) {
              graveyard_.clear();
              refused_graveyard_.clear();
            }),
      sweep_(base, -1, 0, [this](short) { Sweep(); }),
      refusal_flush_(base, -1, 0, [this](short) { FlushRefusals(); }),
      flush_(base, -1, 0, [this](short) { Commit(); }) {
  Charge();
  // A target's exit or re-resolution releases its held set at once.
  lifecycle_.set_release([this](std::uint64_t serial) { cache_.Forget(serial); });
  lifecycle_.Watch(*catalog_, {});
}

Server::~Server() = default;

void Server::Charge() {
  ledger_.Apply(catalog_->config());
  ledger_.Set(Account::kTargets, catalog_->cost());
  group_rules_ = false;
  std::vector<std::uint64_t> live;
  for (const CatalogEntry& entry : catalog_->entries()) {
    for (const Rule& rule : entry.spec->rules) group_rules_ |= rule.who == Rule::Who::kGid;
    if (entry.handle) live.push_back(entry.handle->serial());
  }
  cache_.Retain(live);  // sets of targets that a reload dropped or reopened
  cache_.SetCapacity(ledger_.CacheRoom());
  ledger_.Set(Account::kGrantCache, cache_.held());
}

Result<PeerIdentity> Server::Identify(BorrowedFd conn) const {
  return ReadPeerIdentity(conn, group_rules_);
}

void Server::NeedGroups(PeerIdentity& peer, BorrowedFd conn) const {
  if (!group_rules_ || !peer.groups_unread) return;
  // A reload added a group rule after this peer connected. Unreadable groups stay empty:
  // a group rule then refuses, never grants, more.
  if (auto full = ReadPeerIdentity(conn, true)) peer.groups = std::move(full->groups);
  peer.groups_unread = false;
}

void Server::AfterCommit(std::function<void()> send) {
  outbox_.push_back(std::move(send));
  if (!flush_.pending()) flush_.Activate();
}

void Server::Commit() {
  // Every line staged in this turn, in one write, before any of its responses.
  audit_->Commit();
  replying_.swap(replies_);
  sending_.swap(outbox_);
  for (Reply& reply : replying_) {
    // A connection closed in between (idle, age) has its grant audited and never sent.
    auto it = connections_.find(reply.id);
    if (it != connections_.end()) Send(*it->second, std::move(reply.outcome));
  }
  replying_.clear();
  for (auto& send : sending_) send();
  sending_.clear();
}

void Server::UpdateStats() {
  stats_.descriptor_budget = ledger_.budget();
  stats_.descriptors_held = ledger_.total();
  stats_.descriptors_in_flight = ledger_.inflight_total();
  stats_.cache_descriptors = cache_.held();
  stats_.cache_hits = cache_.stats().hits;
  stats_.cache_misses = cache_.stats().misses + cache_.stats().refreshes;
}

void Server::AddListener(UniqueFd listen_fd) {
  ChargeListener();
  listeners_.push_back(std::make_unique<Listener>(
      base_, std::move(listen_fd), [this](UniqueFd conn) { OnAccept(std::move(conn)); },
      [this] { return ledger_.RoomToAccept(); }));
}

Result<void> Server::Fits(const Config& config) const {
  std::size_t cost = 0;
  for (const TargetSpec& spec : config.targets) {
    cost += Catalog::Cost(spec);
  }
  return ledger_.Fit(config, cost);
}

void Server::Swap(std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit,
                  std::function<void()> opened) {
  // The lifecycle watches the old catalog's entries: point it at the new one first.
  lifecycle_.Watch(*catalog, std::move(opened));
  catalog_ = std::move(catalog);
  if (audit) audit_ = std::move(audit);
  Charge();
}

void Server::Reload(Config config, std::unique_ptr<AuditLog> audit, std::function<void()> opened) {
  Swap(Catalog::Build(std::move(config), catalog_.get(), catalog_->opener()), std::move(audit),
       std::move(opened));
}

Result<void> Server::Admit(const PeerIdentity& peer) {
  if (auto opened = ledger_.OpenConnection(peer.uid); !opened) {
    ++stats_.errors;
    AuditRefusal(peer, opened.error().message);
    return opened;
  }
  ++stats_.active_connections;
  ++stats_.connections;
  return {};
}

void Server::Leave(const PeerIdentity& peer, UniqueFd conn) {
  --stats_.active_connections;
  if (conn.valid() && !Drained(peer.uid, conn.get())) {
    // Closing our end would not take the descriptors out of the peer's queue, only out of
    // our count. Keep the socket (still a connection of its uid) until the queue drains.
    return Keep(peer.uid, std::move(conn));
  }
  ledger_.CloseConnection(peer.uid);
}

bool Server::Drained(uid_t uid, int fd) {
  auto by_uid = unread_.find(uid);
  if (by_uid == unread_.end()) return true;
  auto it = by_uid->second.find(fd);
  if (it == by_uid->second.end()) return true;
  // Descriptors in a datagram stay charged to the sender until the receiver reads it
  // (unix(7) SCM_RIGHTS). QueuedBytes (SIOCOUTQ) is what of ours is still queued there.
  if (QueuedBytes(fd) > 0) return false;
  ledger_.Delivered(uid, it->second);
  by_uid->second.erase(it);
  if (by_uid->second.empty()) unread_.erase(by_uid);
  return true;
}

void Server::Refresh(uid_t uid) {
  auto by_uid = unread_.find(uid);
  if (by_uid == unread_.end()) return;
  std::vector<int> fds;
  for (const auto& [fd, n] : by_uid->second) fds.push_back(fd);
  // At most max_connections_per_uid sockets: live and kept ones share that cap.
  for (int fd : fds) {
    if (Drained(uid, fd) && kept_.contains(fd)) DropKept(fd);
  }
}

void Server::Keep(uid_t uid, UniqueFd fd) {
  // Shut both ways: the peer reads what is queued, then end-of-file, and whatever it sends
  // now fails (EPIPE) instead of piling up here. The sweep watches the queue drain.
  shutdown(fd.get(), SHUT_RDWR);
  auto kept = std::make_unique<Kept>();
  kept->uid = uid;
  int number = fd.get();
  kept->fd = std::move(fd);
  kept_.emplace(number, std::move(kept));
  if (!sweep_.pending()) sweep_.Add(std::chrono::seconds(1));
}

void Server::DropKept(int fd) {
  auto it = kept_.find(fd);
  if (it == kept_.end()) return;
  uid_t uid = it->second->uid;
  auto by_uid = unread_.find(uid);
  if (by_uid != unread_.end()) {
    auto u = by_uid->second.find(fd);
    if (u != by_uid->second.end()) {
      ledger_.Delivered(uid, u->second);
      by_uid->second.erase(u);
      if (by_uid->second.empty()) unread_.erase(by_uid);
    }
  }
  kept_.erase(it);
  ledger_.CloseConnection(uid);
}

void Server::Sweep() {
  // One SIOCOUTQ per kept socket per second, bounded by max_connections: a peer that read
  // its grants without closing frees its uid's capacity within a second.
  std::vector<std::pair<int, uid_t>> kept;
  for (const auto& [fd, k] : kept_) kept.emplace_back(fd, k->uid);
  for (const auto& [fd, uid] : kept) {
    if (Drained(uid, fd)) DropKept(fd);
  }
  if (!kept_.empty()) sweep_.Add(std::chrono::seconds(1));
}

void Server::NoteUnread(uid_t uid, BorrowedFd conn, std::size_t fds) {
  if (fds == 0) return;
  unread_[uid][conn.get()] += fds;
  ledger_.Ship(uid, fds);
}

std::size_t Server::FdBudget(uid_t uid) {
  // Responses decided but not sent yet are charged and not in any queue: send them first,
  // so that the queues looked at say what is unread.
  if (!replies_.empty() || !outbox_.empty()) Commit();
  Refresh(uid);
  return ledger_.Room(uid);
}

std::size_t Server::Prepare(PeerIdentity& peer, BorrowedFd conn) {
  NeedGroups(peer, conn);
  // Counted, not probed: unread descriptors are looked for (SIOCOUTQ on this uid's
  // sockets) only when the count says the uid is short of room.
  std::size_t room = ledger_.Room(peer.uid);
  if (room < kMaxGrantDescriptors) room = FdBudget(peer.uid);
  cache_.SetCapacity(ledger_.CacheRoom());  // listeners may have been added since
  return room;
}

void Server::Settle(uid_t uid, BorrowedFd conn, std::size_t fds, Tally tally,
                    const std::optional<AuditRecord>& audit) {
  // Charged when decided, not when sent: the decisions of one turn are sent together after
  // it, and each must see the room the ones before it took.
  NoteUnread(uid, conn, fds);
  ledger_.Set(Account::kGrantCache, cache_.held());
  if (audit) audit_->Stage(*audit);
  Count(stats_, tally);
}

Decision Server::Join(PeerIdentity& peer, BorrowedFd conn, const JoinAsk& ask) {
  std::size_t room = Prepare(peer, conn);
  Decision d = nsbroker::Join(*catalog_, &cache_, peer, ask, room);
  std::size_t fds = 0;
  for (const JoinEntry& e : d.entries) fds += e.fd >= 0;
  Settle(peer.uid, conn, fds, d.tally, d.audit);
  return d;
}

void Server::FlushRefusals() {
  if (refusals_unlogged_ > 0) {
    audit_->Write({.refused = true,
                   .target = "-",
                   .reason = std::to_string(refusals_unlogged_) +
                             " more connections refused, not logged one by one"});
  }
  refusals_unlogged_ = 0;
}

void Server::AuditRefusal(const PeerIdentity& peer, const std::string& message) {
  // A flood of refused connections must not flood the log: kRefusalLinesPerSecond lines a
  // second, then one line with the count of the rest when that second ends.
  auto now = Clock::now();
  if (now - refusal_second_ >= std::chrono::seconds(1)) {
    refusal_flush_.Del();
    FlushRefusals();
    refusal_second_ = now;
    refusal_lines_ = 0;
  }
  if (refusal_lines_ >= kRefusalLinesPerSecond) {
    if (refusals_unlogged_++ == 0) {
      refusal_flush_.Add(std::chrono::duration_cast<std::chrono::milliseconds>(
          refusal_second_ + std::chrono::seconds(1) - now));
    }
    return;
  }
  ++refusal_lines_;
  audit_->Write({.refused = true,
                 .target = "-",
                 .peer_pid = peer.pid,
                 .peer_uid = peer.uid,
                 .peer_gid = peer.gid,
                 .reason = message});
}

void Server::Refuse(UniqueFd fd, const PeerIdentity& peer, const std::string& message) {
  if (verbose_) LogLine("refusing pid " + std::to_string(peer.pid) + ": " + message);
  // A fresh socket's queue is empty, so this fits. Then the peer reads it and end-of-file.
  (void)SendMessage(fd, ErrorResponse({ErrorCode::kResourceExhausted, 0, message}));
  shutdown(fd.get(), SHUT_WR);
  auto drain = [](int number) {
    char buf[512];
    while (recv(number, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
  };
  if (refusing_.size() >= kMaxRefusing) {
    drain(fd.get());
    return;
  }
  // Wait for the request the peer is about to send, so that closing leaves nothing unread.
  auto r = std::make_unique<Refusing>();
  Refusing& ref = *r;
  ref.id = next_id_++;
  ref.fd = std::move(fd);
  ref.readable = std::make_unique<Event>(base_, ref.fd.get(), EV_READ, [this, &ref, drain](short) {
    drain(ref.fd.get());
    auto it = refusing_.find(ref.id);
    refused_graveyard_.push_back(std::move(it->second));
    refusing_.erase(it);
    reap_.Activate();
  });
  ref.readable->Add(std::chrono::milliseconds(kRefusalLingerMs));
  refusing_.emplace(ref.id, std::move(r));
}

void Server::OnAccept(UniqueFd fd) {
  auto peer = Identify(fd);
  if (!peer) {
    LogLine("accept: " + peer.error().message);
    return;
  }
  if (auto admitted = Admit(*peer); !admitted) {
    return Refuse(std::move(fd), *peer, admitted.error().message);
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
  c.expire = std::make_unique<Event>(
      base_, -1, 0, [this, &c](short) { Close(c, "max_connection_age_ms reached"); });
  const Config& config = catalog_->config();
  c.readable->Add(std::chrono::milliseconds(config.idle_timeout_ms));
  c.expire->Add(std::chrono::milliseconds(config.max_connection_age_ms));
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
  std::size_t room = Prepare(conn.peer, conn.fd);
  UpdateStats();
  Outcome out = HandleRequest(*catalog_, stats_, conn.peer, datagram->bytes, room, &cache_);
  Settle(conn.peer.uid, conn.fd, out.fds.size(), out.tally, out.audit);
  Respond(conn, std::move(out));
}

void Server::Respond(Connection& conn, Outcome outcome) {
  replies_.push_back({conn.id, std::move(outcome)});
  if (!flush_.pending()) flush_.Activate();
}

void Server::Send(Connection& conn, Outcome outcome) {
  if (!outcome.response.SerializeToString(&send_bytes_)) return Close(conn, "cannot serialize");
  send_fds_.clear();
  for (BorrowedFd fd : outcome.fds) send_fds_.push_back(fd.get());
  auto sent = SendDatagram(conn.fd, send_bytes_, send_fds_);
  if (sent) {
    return;
  }
  const Error& e = sent.error();
  if (e.sys_errno == EAGAIN) {
    // The peer is not reading: stop reading its requests until this response is gone, and
    // give it request_timeout_ms to make room.
    conn.pending_bytes = send_bytes_;
    conn.pending = std::move(outcome);
    conn.readable->Del();
    conn.writable->Add(std::chrono::milliseconds(catalog_->config().request_timeout_ms));
    return;
  }
  if (e.sys_errno == ETOOMANYREFS && !outcome.fds.empty()) {
    LogLine("sendmsg: too many descriptors in flight (ETOOMANYREFS); answering without them");
    Outcome retry;
    retry.response = ErrorResponse(
        {ErrorCode::kResourceExhausted, 0, "the broker has too many descriptors in flight"});
    return Send(conn, std::move(retry));
  }
  Close(conn, e.message);
}

void Server::OnWritable(Connection& conn, short what) {
  if (what & EV_TIMEOUT) return Close(conn, "response not read within request_timeout_ms");
  auto sent = SendDatagram(conn.fd, conn.pending_bytes, FdNumbers(conn.pending.fds));
  if (!sent && sent.error().sys_errno == EAGAIN) {
    conn.writable->Add(std::chrono::milliseconds(catalog_->config().request_timeout_ms));
    return;
  }
  if (!sent) return Close(conn, sent.error().message);
  conn.pending_bytes.clear();
  conn.pending = {};
  conn.readable->Add(std::chrono::milliseconds(catalog_->config().idle_timeout_ms));
}

void Server::Close(Connection& conn, std::string_view why) {
  if (verbose_) LogLine("connection " + std::to_string(conn.id) + " closed: " + std::string(why));
  auto it = connections_.find(conn.id);
  if (it == connections_.end()) return;
  conn.readable->Del();
  conn.writable->Del();
  conn.expire->Del();
  Leave(conn.peer, std::move(conn.fd));
  // The connection's events go when the graveyard is reaped, after this callback returned.
  graveyard_.push_back(std::move(it->second));
  connections_.erase(it);
  reap_.Activate();
}

}  // namespace nsbroker
