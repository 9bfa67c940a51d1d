#include "ledger.h"

#include <sys/resource.h>

#include <algorithm>

namespace nsbroker {

const char* AccountName(Account account) {
  switch (account) {
    case Account::kReserved:
      return "reserved";
    case Account::kListeners:
      return "listeners";
    case Account::kTargets:
      return "target descriptors";
    case Account::kGrantCache:
      return "grant cache";
    case Account::kConnections:
      return "connections";
  }
  return "?";
}

std::size_t DescriptorBudget() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1u << 20;
  return static_cast<std::size_t>(limit.rlim_cur);
}

Ledger::Ledger(std::size_t budget) : budget_(budget) {
  Set(Account::kReserved, kReservedDescriptors);
}

std::size_t Ledger::total() const {
  std::size_t sum = 0;
  for (std::size_t n : held_) sum += n;
  return sum;
}

Result<void> Ledger::Fit(const Config& config, std::size_t target_fds) const {
  auto n = [](std::size_t v) { return std::to_string(v); };
  const std::string budget = "the descriptor budget " + n(budget_) + " (RLIMIT_NOFILE)";
  // The grant cache is not counted: it shrinks to what this config leaves it.
  std::size_t table =
      held(Account::kReserved) + held(Account::kListeners) + target_fds + config.max_connections;
  if (table > budget_) {
    return MakeError(ErrorCode::kResourceExhausted,
                     config.file + ": max_connections " + n(config.max_connections) + " + " +
                         n(target_fds) + " target descriptors + " + n(held(Account::kListeners)) +
                         " listeners + " + n(held(Account::kReserved)) + " reserved = " + n(table) +
                         " exceed " + budget);
  }
  if (config.root_reserve >= config.max_connections) {
    return MakeError(ErrorCode::kResourceExhausted,
                     config.file + ": root_reserve " + n(config.root_reserve) +
                         " leaves nothing of max_connections " + n(config.max_connections));
  }
  std::size_t root_inflight = std::size_t{config.root_reserve} * kMaxGrantDescriptors;
  if (config.max_inflight_fds_per_uid + root_inflight > budget_) {
    return MakeError(ErrorCode::kResourceExhausted,
                     config.file + ": max_inflight_fds_per_uid " +
                         n(config.max_inflight_fds_per_uid) + " + root's reserve " +
                         n(root_inflight) + " (root_reserve " + n(config.root_reserve) + " x " +
                         n(kMaxGrantDescriptors) + ") exceed " + budget);
  }
  return {};
}

std::size_t Ledger::CacheRoom() const {
  std::size_t others = held(Account::kReserved) + held(Account::kListeners) +
                       held(Account::kTargets) + max_connections_;
  return others >= budget_ ? 0 : budget_ - others;
}

void Ledger::Apply(const Config& config) {
  max_connections_ = config.max_connections;
  max_connections_per_uid_ = config.max_connections_per_uid;
  root_reserve_ = config.root_reserve;
  max_inflight_per_uid_ = config.max_inflight_fds_per_uid;
}

Result<void> Ledger::OpenConnection(uid_t uid) {
  std::size_t all = held(Account::kConnections);
  if (all >= max_connections_) {
    return MakeError(ErrorCode::kResourceExhausted, "too many connections (max_connections " +
                                                        std::to_string(max_connections_) + ")");
  }
  if (uid != 0 && others_connections_ + root_reserve_ >= max_connections_) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "too many connections (max_connections " + std::to_string(max_connections_) +
                         ", " + std::to_string(root_reserve_) + " of them reserved for root)");
  }
  auto it = uids_.find(uid);
  if (it != uids_.end() && it->second.connections >= max_connections_per_uid_) {
    return MakeError(ErrorCode::kResourceExhausted,
                     "uid " + std::to_string(uid) + " has too many connections " +
                         "(max_connections_per_uid " + std::to_string(max_connections_per_uid_) +
                         ")");
  }
  if (uid != 0) ++others_connections_;
  ++uids_[uid].connections;
  Set(Account::kConnections, all + 1);
  return {};
}

void Ledger::CloseConnection(uid_t uid) {
  auto it = uids_.find(uid);
  if (it == uids_.end() || it->second.connections == 0) return;
  --it->second.connections;
  if (uid != 0) --others_connections_;
  Set(Account::kConnections, held(Account::kConnections) - 1);
  Forget(uid);
}

std::size_t Ledger::Room(uid_t uid) const {
  std::size_t mine = inflight(uid);
  std::size_t room = mine >= max_inflight_per_uid_ ? 0 : max_inflight_per_uid_ - mine;
  // Everyone's share of the budget; all but root leave root's reserve untouched.
  std::size_t used =
      uid == 0 ? inflight_all_ : others_inflight_ + root_reserve_ * kMaxGrantDescriptors;
  std::size_t shared = used >= budget_ ? 0 : budget_ - used;
  return std::min(room, shared);
}

void Ledger::Ship(uid_t uid, std::size_t fds) {
  if (fds == 0) return;
  uids_[uid].inflight += fds;
  inflight_all_ += fds;
  if (uid != 0) others_inflight_ += fds;
}

void Ledger::Delivered(uid_t uid, std::size_t fds) {
  auto it = uids_.find(uid);
  if (it == uids_.end() || fds == 0) return;
  fds = std::min(fds, it->second.inflight);
  it->second.inflight -= fds;
  inflight_all_ -= fds;
  if (uid != 0) others_inflight_ -= fds;
  Forget(uid);
}

std::size_t Ledger::connections(uid_t uid) const {
  auto it = uids_.find(uid);
  return it == uids_.end() ? 0 : it->second.connections;
}

std::size_t Ledger::inflight(uid_t uid) const {
  auto it = uids_.find(uid);
  return it == uids_.end() ? 0 : it->second.inflight;
}

void Ledger::Forget(uid_t uid) {
  auto it = uids_.find(uid);
  if (it != uids_.end() && it->second.connections == 0 && it->second.inflight == 0) uids_.erase(it);
}

}  // namespace nsbroker
