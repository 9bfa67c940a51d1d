// Owns the serving side: listeners, connections and their admission, the sockets kept for
// unread grants, the live catalog and its target lifecycle, all charged to one Ledger.
// Never opens a target itself and never blocks the loop.
//
//   nsbroker::Server server(loop.base(), std::move(catalog), std::move(audit));
//   server.AddListener(std::move(listen_fd));     // native protocol, SOCK_SEQPACKET
//   server.Swap(std::move(next), nullptr, [] { NotifyReady("reloaded"); });  // reload
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "audit.h"
#include "catalog.h"
#include "grant_cache.h"
#include "handler.h"
#include "ledger.h"
#include "lifecycle.h"
#include "loop.h"
#include "policy.h"

namespace nsbroker {

// Refused connections that wait (at most kRefusalLingerMs) for their request before they are
// closed: closing a socket with an unread request makes the peer's next read ECONNRESET, and
// the peer would never see why it was refused. Beyond this many, refusals close at once.
inline constexpr std::size_t kMaxRefusing = 32;
inline constexpr int kRefusalLingerMs = 1000;
// Audit lines for refused connections per second; the rest are counted in one line.
inline constexpr int kRefusalLinesPerSecond = 10;

class Server {
 public:
  // `budget`: the descriptor budget (RLIMIT_NOFILE at start).
  Server(event_base* base, std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit,
         bool verbose = false, std::size_t budget = DescriptorBudget());
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves the native wire protocol on a listening AF_UNIX SOCK_SEQPACKET socket.
  void AddListener(UniqueFd listen_fd);
  // Charges a listener served elsewhere (the uWSGI one) to the ledger.
  void ChargeListener() { ledger_.Set(Account::kListeners, ledger_.held(Account::kListeners) + 1); }

  // How targets that resolve in the background (oci) are resolved (lifecycle.h).
  void set_resolver(Resolver resolver) { lifecycle_.set_resolver(std::move(resolver)); }

  // Whether `config` fits the descriptor budget beside what is held now (at load and reload).
  [[nodiscard]] Result<void> Fits(const Config& config) const;

  // Replaces the catalog (built from the current one, so unchanged targets kept their
  // handles) and the audit log (null keeps the current one). Open connections stay; their
  // next request sees the new targets and limits. New targets open from the loop, a batch
  // per turn; `opened` runs when none is pending.
  void Swap(std::unique_ptr<Catalog> catalog, std::unique_ptr<AuditLog> audit,
            std::function<void()> opened = {});

  // Swap with a catalog of `config` built from the current one: unchanged targets keep their
  // handles (no second copy of their descriptors), the others open from the loop.
  void Reload(Config config, std::unique_ptr<AuditLog> audit, std::function<void()> opened);

  // Building blocks for another listener (e.g. uWSGI compatibility on SOCK_STREAM): admit a
  // connection under the ledger (RESOURCE_EXHAUSTED when over, audited; Leave() when it
  // closes, handing the socket back: it is kept while the peer has grants unread), and
  // the core's Join (catalog, grant cache, policy, ledger, staged audit line, counters),
  // whose Decision the listener encodes and sends from AfterCommit.
  [[nodiscard]] Result<void> Admit(const PeerIdentity& peer);
  void Leave(const PeerIdentity& peer, UniqueFd conn);
  Decision Join(PeerIdentity& peer, BorrowedFd conn, const JoinAsk& ask);
  // Runs `send` in this loop turn after the audit lines staged in it are written (group
  // commit): every response goes out through here.
  void AfterCommit(std::function<void()> send);
  // The accept-time identity of a connection: SO_PEERGROUPS only when an allow rule names a
  // group (read later, by Join, if a reload adds one).
  [[nodiscard]] Result<PeerIdentity> Identify(BorrowedFd conn) const;
  // Records descriptors handed to a connection that the peer may not have read yet (Join
  // does, when it decides); they count against its uid until its send queue is seen empty
  // (SIOCOUTQ, looked at only when the count says the uid is short of room, when the
  // connection closes, or on a kept socket: counting, not a probe per request).
  void NoteUnread(uid_t uid, BorrowedFd conn, std::size_t fds);
  // How many more descriptors `uid` may have in unread responses (after looking again).
  std::size_t FdBudget(uid_t uid);

  const Catalog& catalog() const { return *catalog_; }
  const Stats& stats() const { return stats_; }
  const Ledger& ledger() const { return ledger_; }
  const GrantCache& cache() const { return cache_; }
  event_base* base() const { return base_; }

 private:
  struct Connection;
  struct Kept;
  struct Refusing;

  // Whether everything sent on `fd` was read; if so its descriptors leave the ledger.
  bool Drained(uid_t uid, int fd);
  void Refresh(uid_t uid);
  void Sweep();
  void Keep(uid_t uid, UniqueFd fd);
  void DropKept(int fd);

  void OnAccept(UniqueFd conn);
  void OnReadable(Connection& conn, short what);
  void OnWritable(Connection& conn, short what);
  void Respond(Connection& conn, Outcome outcome);
  void Send(Connection& conn, Outcome outcome);
  // Before and after every decision, whichever listener asked: the peer's room under the
  // ledger, then the cache's account, the staged audit line and the counters.
  std::size_t Prepare(PeerIdentity& peer, BorrowedFd conn);
  void Settle(uid_t uid, BorrowedFd conn, std::size_t fds, Tally tally,
              const std::optional<AuditRecord>& audit);
  void Commit();
  void UpdateStats();
  // Makes `peer` carry its groups when the policy has group rules (after a reload).
  void NeedGroups(PeerIdentity& peer, BorrowedFd conn) const;
  void Close(Connection& conn, std::string_view why);
  void Refuse(UniqueFd conn, const PeerIdentity& peer, const std::string& message);
  void AuditRefusal(const PeerIdentity& peer, const std::string& message);
  void FlushRefusals();
  void Charge();

  event_base* base_;
  bool verbose_;
  Ledger ledger_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<AuditLog> audit_;
  Stats stats_;
  GrantCache cache_;
  bool group_rules_ = false;  // some allow rule names a group: peers' groups are read
  Lifecycle lifecycle_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
  // Per uid: sockets (live or kept) whose responses carried descriptors -> how many.
  std::unordered_map<uid_t, std::unordered_map<int, std::size_t>> unread_;
  // Sockets of closed connections whose peers still hold grants unread: the descriptors in
  // them stay charged to us after the close (unix(7)), so the socket is kept, shut for
  // writing, to see when its queue drains. Each counts as a connection of its uid.
  std::unordered_map<int, std::unique_ptr<Kept>> kept_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Refusing>> refusing_;
  std::chrono::steady_clock::time_point refusal_second_{};
  int refusal_lines_ = 0;
  std::uint64_t refusals_unlogged_ = 0;
  // Closed connections wait here until the loop is out of their callbacks [Envoy deferred
  // deletion]; reap_ empties it.
  std::vector<std::unique_ptr<Connection>> graveyard_;
  std::vector<std::unique_ptr<Refusing>> refused_graveyard_;
  Event reap_;
  Event sweep_;
  Event refusal_flush_;  // writes the count of unlogged refusals when their second ends
  // This turn's responses, sent after its audit lines are written (flush_): native ones as
  // they are (no shared_ptr and std::function per response), the others' as callbacks.
  struct Reply {
    std::uint64_t id = 0;  // the connection's
    Outcome outcome;
  };
  std::vector<Reply> replies_;
  std::vector<Reply> replying_;
  std::vector<std::function<void()>> outbox_;
  std::vector<std::function<void()>> sending_;
  // Send's buffers, reused: no allocation per response once they have grown.
  std::string send_bytes_;
  std::vector<int> send_fds_;
  Event flush_;
};

}  // namespace nsbroker
