// Owns the serving side: listeners, connections, limits, per-uid descriptor accounting, target
// watchers and the live catalog. Never opens a target itself and never blocks the loop.
//
//   nsbroker::Server server(loop.base(), std::move(catalog), std::move(audit));
//   server.AddListener(std::move(listen_fd));     // native protocol, SOCK_SEQPACKET
//   server.Swap(std::move(new_catalog), std::move(new_audit));  // reload
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "audit.h"
#include "catalog.h"
#include "handler.h"
#include "loop.h"
#include "policy.h"

namespace nsbroker {

class Server {
 public:
  Server(event_base* base, std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit,
         bool verbose = false);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves the native wire protocol on a listening AF_UNIX SOCK_SEQPACKET socket.
  void AddListener(UniqueFd listen_fd);

  // Replaces the catalog and audit log (a reload that already succeeded; a null audit log
  // keeps the current one). Open connections stay; their next request sees the new targets
  // and limits.
  void Swap(std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit);

  // Building blocks for another listener (e.g. uWSGI compatibility on SOCK_STREAM): admit a
  // connection under the connection limits (RESOURCE_EXHAUSTED when over; Leave() when it
  // closes), and decide + audit + count a Join under the per-uid descriptor budget.
  [[nodiscard]] Result<void> Admit(const PeerIdentity& peer);
  void Leave(const PeerIdentity& peer, BorrowedFd conn);
  Outcome Join(const PeerIdentity& peer, std::string_view target, KindSet kinds);
  // Records descriptors handed to a connection that the peer may not have read yet; they
  // count against its uid until SIOCOUTQ on `conn` reports an empty send queue.
  void NoteUnread(uid_t uid, BorrowedFd conn, std::size_t fds);
  std::size_t FdBudget(uid_t uid);

  const Catalog& catalog() const { return *catalog_; }
  const Stats& stats() const { return stats_; }
  event_base* base() const { return base_; }

 private:
  struct Connection;
  struct UidState {
    std::uint32_t connections = 0;
    // Connections whose last responses carried descriptors, keyed by socket: value = count.
    std::unordered_map<int, std::size_t> unread;
    // Duplicates of closed connections' sockets whose peers still hold those responses
    // unread: the descriptors in them stay in flight, charged to us, after the close, so the
    // socket is kept (shut down) to measure them until its queue drains. Keys as in unread.
    std::unordered_map<int, UniqueFd> closed_unread;
  };
  // Drops the unread entries of `state` whose queues are empty; returns what remains.
  std::size_t Unread(UidState& state);
  // Closes kept sockets that drained, for every uid; re-arms itself while any are left.
  void Sweep();

  void OnAccept(UniqueFd conn);
  void OnReadable(Connection& conn, short what);
  void OnWritable(Connection& conn, short what);
  void Respond(Connection& conn, Outcome outcome);
  void Close(Connection& conn, std::string_view why);
  void WatchTargets();
  void Refuse(BorrowedFd conn, const std::string& message);

  event_base* base_;
  bool verbose_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<AuditLog> audit_;
  Stats stats_;
  std::vector<std::unique_ptr<Event>> watchers_;  // pidfds of catalog_'s targets
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
  std::unordered_map<uid_t, UidState> uids_;
  // Closed connections wait here until the loop is out of their callbacks [Envoy deferred
  // deletion]; reap_ empties it.
  std::vector<std::unique_ptr<Connection>> graveyard_;
  Event reap_;
  Event sweep_;
};

}  // namespace nsbroker
