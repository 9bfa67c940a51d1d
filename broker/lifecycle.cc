#include "lifecycle.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "audit.h"

namespace nsbroker {
namespace {

using Clock = std::chrono::steady_clock;

// A pid file replaced by rename, rewritten in place, created or removed.
constexpr std::uint32_t kFileEvents =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;

}  // namespace

Lifecycle::Lifecycle(event_base* base)
    : base_(base),
      retry_(base, -1, 0, [this](short) { OnRetry(); }),
      batch_(base, -1, 0, [this](short) { OnOpenBatch(); }),
      reap_(base, -1, 0, [this](short) { finished_.clear(); }) {}

void Lifecycle::Watch(Catalog& catalog, std::function<void()> opened) {
  exits_.clear();  // they watch the previous catalog's entries
  resolutions_.clear();
  retry_.Del();
  batch_.Del();
  catalog_ = &catalog;
  opened_ = std::move(opened);
  for (std::size_t i = 0; i < catalog.opened_upto(); ++i) WatchEntry(i);
  WatchFiles();
  opening_ = true;
  // A zero timeout, not event_active: timers run after the loop has polled for I/O, so
  // clients are served between batches.
  batch_.Add(std::chrono::milliseconds(0));
}

void Lifecycle::WatchEntry(std::size_t index) {
  exits_.erase(index);
  const CatalogEntry& entry = catalog_->entries()[index];
  if (!entry.handle || !entry.gone.empty() || entry.handle->watch_fd() < 0) return;
  // A pidfd becomes readable once when its process exits; one shot is enough.
  auto event = std::make_unique<Event>(base_, entry.handle->watch_fd(), EV_READ,
                                       [this, index](short) { OnExit(index); });
  event->Add();
  exits_.emplace(index, std::move(event));
}

void Lifecycle::WatchFiles() {
  inotify_event_.reset();
  files_.clear();
  inotify_.reset();
  const auto& entries = catalog_->entries();
  std::unordered_map<std::string, int> dirs;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const TargetSpec& spec = *entries[i].spec;
    if (spec.source != SourceType::kPidFile) continue;
    if (!inotify_.valid()) {
      inotify_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
      if (!inotify_.valid()) {
        LogLine(std::string("inotify_init1: ") + std::strerror(errno) +
                "; pid files are re-read only when their process exits");
        return;
      }
    }
    std::size_t slash = spec.file.rfind('/');
    std::string dir = slash == 0 ? "/" : spec.file.substr(0, slash);
    auto [it, added] = dirs.emplace(dir, -1);
    if (added) {
      // Watching says nothing about trust: a change only makes us read the file again,
      // through every check of OpenTrusted.
      it->second = inotify_add_watch(inotify_.get(), dir.c_str(), kFileEvents | IN_ONLYDIR);
    }
    if (it->second >= 0) files_[it->second][spec.file.substr(slash + 1)].push_back(i);
  }
  if (inotify_.valid()) {
    inotify_event_ = std::make_unique<Event>(base_, inotify_.get(), EV_READ | EV_PERSIST,
                                             [this](short) { OnFileEvent(); });
    inotify_event_->Add();
  }
}

void Lifecycle::OnExit(std::size_t index) {
  exits_.erase(index);
  Release(index);
  catalog_->MarkGone(index, Clock::now());
  const CatalogEntry& e = catalog_->entries()[index];
  LogLine("target '" + e.spec->name + "' is unavailable: " + e.gone);
  ScheduleRetry();
}

void Lifecycle::Release(std::size_t index) {
  const CatalogEntry& entry = catalog_->entries()[index];
  if (release_ && entry.handle) release_(entry.handle->serial());
}

void Lifecycle::OnFileEvent() {
  alignas(inotify_event) char buf[16384];
  auto now = Clock::now();
  bool changed = false;
  for (;;) {
    ssize_t n = read(inotify_.get(), buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t at = 0; at < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      auto dir = files_.find(ev->wd);
      if (dir == files_.end() || ev->len == 0) continue;
      auto file = dir->second.find(ev->name);
      if (file == dir->second.end()) continue;
      for (std::size_t index : file->second) {
        CatalogEntry& entry = catalog_->entries()[index];
        if (entry.pending) continue;
        // Not sooner than the backoff of a failing target allows: a user who can touch the
        // directory (as in /tmp) must not make us re-read the file in a loop.
        entry.retry_at = std::min(entry.retry_at, now + entry.backoff);
        changed = true;
      }
    }
  }
  if (changed) ScheduleRetry();
}

void Lifecycle::ScheduleRetry() {
  auto next = Clock::time_point::max();
  for (const CatalogEntry& e : catalog_->entries()) {
    if (!e.pending) next = std::min(next, e.retry_at);
  }
  retry_.Del();
  if (next == Clock::time_point::max()) return;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
  retry_.Add(std::max(wait, std::chrono::milliseconds(0)));
}

void Lifecycle::OnRetry() {
  auto now = Clock::now();
  auto& entries = catalog_->entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].pending || entries[i].retry_at > now) continue;
    if (ResolvesInBackground(entries[i].spec->source)) {
      StartResolving(i);
      continue;
    }
    bool was_available = entries[i].gone.empty();
    Release(i);
    if (!catalog_->Resolve(i, now)) continue;
    WatchEntry(i);
    LogChange(i, was_available);
  }
  ScheduleRetry();
}

void Lifecycle::LogChange(std::size_t index, bool was_available) {
  const CatalogEntry& e = catalog_->entries()[index];
  if (e.gone.empty()) {
    std::string found = e.handle->Resolved();
    LogLine("target '" + e.spec->name +
            "' is available: " + (found.empty() ? e.spec->file + " re-read" : found));
  } else if (was_available || e.backoff.count() <= 100) {
    LogLine("target '" + e.spec->name + "' is unavailable: " + e.gone);
  }
}

void Lifecycle::StartResolving(std::size_t index) {
  CatalogEntry& entry = catalog_->entries()[index];
  entry.retry_at = Clock::time_point::max();  // until this resolution ends
  if (resolutions_.contains(index)) return;
  auto work = resolver_(base_, *entry.spec, [this, index](Result<TargetHandlePtr> handle) {
    OnResolved(index, std::move(handle));
  });
  if (work) {
    resolutions_.emplace(index, std::move(*work));
    return;
  }
  bool was_available = entry.gone.empty();
  catalog_->Settle(index, std::unexpected(std::move(work.error())), Clock::now());
  LogChange(index, was_available);
}

void Lifecycle::OnResolved(std::size_t index, Result<TargetHandlePtr> handle) {
  auto it = resolutions_.find(index);
  if (it != resolutions_.end()) {
    finished_.push_back(std::move(it->second));
    resolutions_.erase(it);
    reap_.Add(std::chrono::milliseconds(0));
  }
  bool was_available = catalog_->entries()[index].gone.empty();
  catalog_->Settle(index, std::move(handle), Clock::now());
  WatchEntry(index);
  LogChange(index, was_available);
  ScheduleRetry();
}

void Lifecycle::OnOpenBatch() {
  std::size_t from = catalog_->opened_upto();
  std::size_t left = catalog_->OpenPending(kOpenBatch);
  for (std::size_t i = from; i < catalog_->opened_upto(); ++i) {
    WatchEntry(i);
    const CatalogEntry& e = catalog_->entries()[i];
    // A target still asking its runtime (oci) logs when the answer comes.
    if (!e.gone.empty() && !e.resolving) {
      LogLine("target '" + e.spec->name + "' is unavailable: " + e.gone);
    }
  }
  if (left > 0) return batch_.Add(std::chrono::milliseconds(0));
  opening_ = false;
  ScheduleRetry();
  if (opened_) opened_();
}

}  // namespace nsbroker
