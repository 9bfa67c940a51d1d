#include "catalog.h"

#include "resolution.h"

namespace nsbroker {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{10000};

}  // namespace

std::size_t Catalog::Cost(const TargetSpec& spec) {
  auto kinds = static_cast<std::size_t>(KindSetSize(spec.expose));
  switch (spec.source) {
    case SourceType::kPid:
    case SourceType::kPidFile:
    case SourceType::kOci:
    case SourceType::kCgroup:
      return 1;  // the pidfd: its namespaces are opened per fetch, held by the grant cache
    case SourceType::kJail:
      return 1;
    case SourceType::kSelf:
    case SourceType::kNetns:
    case SourceType::kPaths:
      return kinds;
  }
  return kinds;
}

std::unique_ptr<Catalog> Catalog::Build(Config config, Catalog* previous, TargetOpener opener) {
  std::unique_ptr<Catalog> catalog(new Catalog());
  catalog->config_ = std::move(config);
  catalog->opener_ = std::move(opener);
  const Config& c = catalog->config_;
  catalog->entries_.reserve(c.targets.size());
  catalog->by_name_.reserve(c.targets.size());
  for (const TargetSpec& spec : c.targets) {
    CatalogEntry entry{.spec = &spec};
    const CatalogEntry* old = previous != nullptr ? previous->Find(spec.name) : nullptr;
    if (old != nullptr && !old->pending && SameSource(*old->spec, spec)) {
      auto& moved = previous->entries_[previous->by_name_.at(spec.name)];
      entry.handle = std::move(moved.handle);
      entry.gone = moved.gone;
      entry.exited = moved.exited;
      entry.resolving = moved.resolving;
      entry.since = moved.since;
      entry.restarts = moved.restarts;
      entry.retry_at = moved.retry_at;
      entry.backoff = moved.backoff;
      moved.pending = true;  // its handle is ours now
      // A resolution of the previous catalog's entry ends with it: ask again.
      if (entry.resolving) entry.retry_at = Clock::now();
    } else {
      entry.pending = true;
      entry.gone = kOpening;
    }
    catalog->cost_ += Cost(spec);
    catalog->by_name_.emplace(spec.name, catalog->entries_.size());
    catalog->entries_.push_back(std::move(entry));
  }
  return catalog;
}

Result<std::unique_ptr<Catalog>> Catalog::Open(Config config, const TargetOpener& opener) {
  auto catalog = Build(std::move(config), nullptr, opener);
  catalog->OpenPending(catalog->entries_.size());
  return catalog;
}

void Catalog::OpenEntry(std::size_t index, Clock::time_point now) {
  CatalogEntry& entry = entries_[index];
  entry.pending = false;
  if (ResolvesInBackground(entry.spec->source)) {
    // The lifecycle asks the runtime from the loop and Settles; keep the last reason.
    entry.handle.reset();
    if (entry.gone.empty() || entry.gone == kOpening) {
      entry.gone = WhereIn(config_.file, entry.spec->location) + "target '" + entry.spec->name +
                   "': " + kResolving + " container " + entry.spec->oci.id;
      entry.since = std::chrono::system_clock::now();
    }
    entry.resolving = true;
    entry.retry_at = now;
    return;
  }
  Record(index, opener_(*entry.spec), now);
}

void Catalog::Record(std::size_t index, Result<TargetHandlePtr> handle, Clock::time_point now) {
  CatalogEntry& entry = entries_[index];
  entry.resolving = false;
  bool was_available = entry.gone.empty();
  if (handle) {
    if (!entry.exited.empty()) ++entry.restarts;
    entry.handle = std::move(*handle);
    entry.gone.clear();
    entry.exited.clear();
    entry.backoff = std::chrono::milliseconds(0);
    entry.retry_at = Clock::time_point::max();
    entry.since = std::chrono::system_clock::now();
    return;
  }
  entry.handle.reset();
  entry.gone = (entry.exited.empty() ? "" : entry.exited + "; ") +
               WhereIn(config_.file, entry.spec->location) + "target '" + entry.spec->name +
               "': " + handle.error().message;
  if (was_available) entry.since = std::chrono::system_clock::now();
  // A pid file may be written later, a container or a group's process started; a fixed pid,
  // a path or a netns that is wrong now stays wrong until the config changes (or, for
  // netns, a reload).
  if (Reresolves(entry.spec->source)) {
    entry.backoff =
        entry.backoff.count() == 0 ? kFirstBackoff : std::min(entry.backoff * 2, kMaxBackoff);
    entry.retry_at = now + entry.backoff;
  }
}

std::size_t Catalog::OpenPending(std::size_t limit) {
  auto now = Clock::now();
  for (; next_pending_ < entries_.size() && limit > 0; ++next_pending_) {
    if (!entries_[next_pending_].pending) continue;
    OpenEntry(next_pending_, now);
    --limit;
  }
  std::size_t left = 0;
  for (std::size_t i = next_pending_; i < entries_.size(); ++i) left += entries_[i].pending;
  return left;
}

bool Catalog::Settle(std::size_t index, Result<TargetHandlePtr> handle, Clock::time_point now) {
  CatalogEntry& entry = entries_.at(index);
  if (entry.pending) return false;
  const TargetHandle* before = entry.handle.get();
  std::string reason = entry.gone;
  Record(index, std::move(handle), now);
  return entry.handle.get() != before || entry.gone != reason;
}

void Catalog::ResolveAllNow() {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    // OpenTarget resolves a container now (ResolveNow); a privilege-separated server's
    // opener asks the root opener.
    if (entries_[i].resolving) Settle(i, opener_(*entries_[i].spec), Clock::now());
  }
}

bool Catalog::Resolve(std::size_t index, Clock::time_point now) {
  CatalogEntry& entry = entries_.at(index);
  if (entry.pending) return false;
  const TargetHandle* before = entry.handle.get();
  std::string reason = entry.gone;
  OpenEntry(index, now);
  return entry.handle.get() != before || entry.gone != reason;
}

const CatalogEntry* Catalog::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

void Catalog::MarkGone(std::size_t index, Clock::time_point now) {
  CatalogEntry& entry = entries_.at(index);
  if (!entry.handle) return;
  if (entry.gone.empty()) {
    entry.gone = entry.handle->GoneReason();
    entry.since = std::chrono::system_clock::now();
  }
  if (Reresolves(entry.spec->source)) {
    entry.exited = entry.gone;
    entry.retry_at = now;
  }
}

std::size_t Catalog::unavailable() const {
  std::size_t n = 0;
  for (const CatalogEntry& e : entries_) {
    if (!e.gone.empty()) ++n;
  }
  return n;
}

}  // namespace nsbroker
