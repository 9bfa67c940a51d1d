// Owns the pre-opened grant sets of process targets: namespace descriptors fetched from a
// target's pidfd once and sent as they are (SCM_RIGHTS duplicates them into the receiver),
// re-fetched at most every refresh_ms, least recently granted evicted first, within a
// capacity the ledger gives its grant cache account. Never decides who may have them.
//
//   auto set = cache.Get(*entry.handle, spec, kinds, now);   // a hit costs no system call
//   SendDatagram(conn, bytes, set->Numbers(kinds));           // while `set` is alive
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "targets.h"

namespace nsbroker {

// What the cache did, for Status and the benchmarks.
struct CacheStats {
  std::uint64_t hits = 0;       // served from a held set
  std::uint64_t misses = 0;     // no set held (first grant, evicted, new kinds)
  std::uint64_t refreshes = 0;  // a held set older than refresh_ms fetched again
  std::uint64_t changes = 0;    // a refresh found another namespace than the one held
  std::uint64_t evictions = 0;
};

class GrantCache {
 public:
  // `log` is told when a refresh finds a namespace changed ("target 'web1': net namespace
  // changed, inode 4026531840 -> 4026532301").
  explicit GrantCache(std::function<void(const std::string&)> log) : log_(std::move(log)) {}

  // The set of `handle` (target `spec`) with at least `kinds`: held and fresh, or fetched now
  // (the union of `kinds` and what was held) and, when it fits the capacity, kept. Fetch
  // errors are the handle's (kUnavailable when the process is gone).
  [[nodiscard]] Result<GrantSetPtr> Get(const TargetHandle& handle, const TargetSpec& spec,
                                        KindSet kinds, std::chrono::milliseconds refresh,
                                        std::chrono::steady_clock::time_point now);
  // Drops the set of the handle with this serial (its process exited, or it was replaced).
  void Forget(std::uint64_t serial);
  // Drops every set whose handle is not in `live` (after a reload).
  void Retain(const std::vector<std::uint64_t>& live);
  // How many descriptors the held sets may take; evicts down to it at once.
  void SetCapacity(std::size_t descriptors);

  std::size_t held() const { return held_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t sets() const { return sets_.size(); }
  const CacheStats& stats() const { return stats_; }

 private:
  struct Slot {
    GrantSetPtr set;
    std::list<std::uint64_t>::iterator lru;  // position in lru_, most recent first
  };
  void Drop(std::unordered_map<std::uint64_t, Slot>::iterator it);
  void Evict(std::size_t room);
  void LogChanges(const TargetSpec& spec, const GrantSet& before, const GrantSet& after);

  std::function<void(const std::string&)> log_;
  std::unordered_map<std::uint64_t, Slot> sets_;  // handle serial -> its set
  std::list<std::uint64_t> lru_;
  std::size_t held_ = 0;
  std::size_t capacity_ = 0;
  CacheStats stats_;
};

}  // namespace nsbroker
