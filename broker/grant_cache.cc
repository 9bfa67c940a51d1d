#include "grant_cache.h"

#include <algorithm>

namespace nsbroker {

Result<GrantSetPtr> GrantCache::Get(const TargetHandle& handle, const TargetSpec& spec,
                                    KindSet kinds, std::chrono::milliseconds refresh,
                                    std::chrono::steady_clock::time_point now) {
  auto it = sets_.find(handle.serial());
  KindSet want = kinds;
  if (it != sets_.end()) {
    const GrantSet& held = *it->second.set;
    bool fresh = refresh.count() > 0 && now - held.fetched < refresh;
    if (fresh && (held.kinds & kinds) == kinds) {
      ++stats_.hits;
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return it->second.set;
    }
    if ((held.kinds & kinds) == kinds) {
      ++stats_.refreshes;
    } else {
      ++stats_.misses;
    }
    want |= held.kinds;
  } else {
    ++stats_.misses;
  }
  auto entries = handle.Open(want);
  if (!entries) {
    if (it != sets_.end()) Drop(it);
    return std::unexpected(std::move(entries.error()));
  }
  auto set = std::make_shared<GrantSet>();
  set->entries = std::move(*entries);
  set->kinds = want;
  set->fetched = now;
  if (it != sets_.end()) {
    LogChanges(spec, *it->second.set, *set);
    Drop(it);
  }
  std::size_t cost = set->entries.size();
  // refresh_ms 0 asks for a fetch per grant: nothing worth holding.
  if (refresh.count() == 0 || cost > capacity_) return GrantSetPtr(std::move(set));
  Evict(cost);
  lru_.push_front(handle.serial());
  sets_.emplace(handle.serial(), Slot{set, lru_.begin()});
  held_ += cost;
  return GrantSetPtr(std::move(set));
}

void GrantCache::LogChanges(const TargetSpec& spec, const GrantSet& before, const GrantSet& after) {
  for (const EntryFd& now : after.entries) {
    for (const EntryFd& was : before.entries) {
      if (was.kind != now.kind) continue;
      if (was.inode != now.inode || was.device != now.device || was.ns_id != now.ns_id) {
        ++stats_.changes;
        if (log_) {
          log_("target '" + spec.name + "': " + std::string(KindName(now.kind)) +
               (IsNamespaceKind(now.kind) ? " namespace" : "") + " changed, inode " +
               std::to_string(was.inode) + " -> " + std::to_string(now.inode));
        }
      }
      break;
    }
  }
}

void GrantCache::Drop(std::unordered_map<std::uint64_t, Slot>::iterator it) {
  held_ -= it->second.set->entries.size();
  lru_.erase(it->second.lru);
  sets_.erase(it);
}

void GrantCache::Evict(std::size_t room) {
  while (!lru_.empty() && held_ + room > capacity_) {
    ++stats_.evictions;
    Drop(sets_.find(lru_.back()));
  }
}

void GrantCache::Forget(std::uint64_t serial) {
  auto it = sets_.find(serial);
  if (it != sets_.end()) Drop(it);
}

void GrantCache::Retain(const std::vector<std::uint64_t>& live) {
  std::vector<std::uint64_t> keep = live;
  std::sort(keep.begin(), keep.end());
  for (auto it = sets_.begin(); it != sets_.end();) {
    auto next = std::next(it);
    if (!std::binary_search(keep.begin(), keep.end(), it->first)) Drop(it);
    it = next;
  }
}

void GrantCache::SetCapacity(std::size_t descriptors) {
  capacity_ = descriptors;
  Evict(0);
}

}  // namespace nsbroker
