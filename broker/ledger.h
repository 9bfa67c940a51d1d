// Owns the broker's one descriptor budget (RLIMIT_NOFILE at start): what each account may hold,
// per uid and in all, with a reserve for root. Never makes a system call, never opens or closes.
//
//   nsbroker::Ledger ledger(DescriptorBudget());
//   if (auto fit = ledger.Fit(config, target_fds); !fit) return fit;   // at load and reload
//   if (auto ok = ledger.OpenConnection(peer.uid); !ok) Refuse(ok.error().message);
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <string>
#include <unordered_map>

#include "config.h"
#include "nsbroker/error.h"

namespace nsbroker {

// The accounts of the descriptor table. kConnections covers live connections and the sockets
// kept for unread grants alike; kGrantCache is for the grant cache's held sets, which take
// what the others leave (CacheRoom) and yield to them at every reload.
enum class Account { kReserved, kListeners, kTargets, kGrantCache, kConnections };
inline constexpr std::size_t kAccounts = 5;
const char* AccountName(Account account);

// Descriptors the broker needs beside its accounts: stdio, the event base and its signal pipe,
// the audit file, the inotify descriptor, one grant's fresh descriptors while it is built, a
// pid or config file being read, and the refused connections waiting for their request
// (Server's kMaxRefusing).
inline constexpr std::size_t kReservedDescriptors = 64;
// The most descriptors one grant carries: every namespace kind plus ROOT and CWD.
inline constexpr std::size_t kMaxGrantDescriptors = 10;

// The soft RLIMIT_NOFILE of this process (after RaiseFdLimit).
std::size_t DescriptorBudget();

class Ledger {
 public:
  explicit Ledger(std::size_t budget);

  // Whether `config`'s limits fit beside `target_fds` target descriptors and the listeners and
  // cache held now; the error names every number ("max_connections 1024 + ... > budget").
  [[nodiscard]] Result<void> Fit(const Config& config, std::size_t target_fds) const;
  // Takes the config's limits (after Fit said they fit).
  void Apply(const Config& config);

  void Set(Account account, std::size_t n) { held_[Index(account)] = n; }
  std::size_t held(Account account) const { return held_[Index(account)]; }
  std::size_t total() const;
  std::size_t budget() const { return budget_; }
  // What the grant cache may hold: the budget less the reserve, the listeners, the targets
  // and max_connections (so that the cache never costs a connection).
  std::size_t CacheRoom() const;
  // One more descriptor (an accept) fits beside everything the accounts may hold.
  bool RoomToAccept() const { return total() < budget_; }

  // A live connection or a kept socket of `uid`: RESOURCE_EXHAUSTED with the message the
  // peer gets when over max_connections_per_uid, or over max_connections less the root
  // reserve (root alone may use the reserve).
  [[nodiscard]] Result<void> OpenConnection(uid_t uid);
  void CloseConnection(uid_t uid);

  // Descriptors sent in responses the peer has not read yet: the kernel charges them to our
  // user until they are read (unix(7); ETOOMANYREFS past RLIMIT_NOFILE), so they have a
  // per-uid cap, a global cap of the budget, and a reserve for root like connections.
  // Room: how many more `uid` may have in flight now.
  std::size_t Room(uid_t uid) const;
  void Ship(uid_t uid, std::size_t fds);
  void Delivered(uid_t uid, std::size_t fds);

  std::size_t connections(uid_t uid) const;
  std::size_t inflight(uid_t uid) const;
  std::size_t inflight_total() const { return inflight_all_; }
  std::size_t root_reserve() const { return root_reserve_; }

 private:
  static constexpr std::size_t Index(Account a) { return static_cast<std::size_t>(a); }
  struct Uid {
    std::size_t connections = 0;
    std::size_t inflight = 0;
  };
  void Forget(uid_t uid);

  std::size_t budget_;
  std::array<std::size_t, kAccounts> held_{};
  std::size_t max_connections_ = 1024;
  std::size_t max_connections_per_uid_ = 64;
  std::size_t root_reserve_ = 16;
  std::size_t max_inflight_per_uid_ = 4096;
  std::size_t others_connections_ = 0;  // live + kept of every uid but root
  std::size_t others_inflight_ = 0;
  std::size_t inflight_all_ = 0;
  std::unordered_map<uid_t, Uid> uids_;
};

}  // namespace nsbroker
