// Owns the life of the live catalog's targets after load: a pidfd watch per process target,
// inotify on the directories of pid files, re-resolution with backoff (pid files, containers,
// cgroups; containers through a background Resolution), and opening a new catalog's targets a
// batch per loop turn. Never blocks the loop on a target.
//
//   nsbroker::Lifecycle lifecycle(base);
//   lifecycle.Watch(*catalog, [] { NotifyReady("reloaded"); });  // after a swap
#pragma once

#include <event2/event.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "catalog.h"
#include "loop.h"
#include "resolution.h"

namespace nsbroker {

// Targets opened per loop turn while a new catalog is being opened: small enough that
// grants for other targets keep flowing in between (each turn serves every ready client).
inline constexpr std::size_t kOpenBatch = 64;

// How targets that resolve in the background start resolving: StartResolve (resolution.h), or a
// privilege-separated server's opener (opener_client.h).
using Resolver =
    std::function<Result<std::unique_ptr<Resolution>>(event_base*, const TargetSpec&, ResolveDone)>;

class Lifecycle {
 public:
  explicit Lifecycle(event_base* base);
  Lifecycle(const Lifecycle&) = delete;
  Lifecycle& operator=(const Lifecycle&) = delete;

  // Starts watching `catalog` (the server's live one, which must outlive the watch or be
  // replaced by another Watch) and opens its pending targets from the loop; `opened` runs
  // once nothing is pending.
  void Watch(Catalog& catalog, std::function<void()> opened);
  bool opening() const { return opening_; }
  // Told the serial of a handle whose process exited or that is about to be re-resolved,
  // so that what is held for it goes at once.
  void set_release(std::function<void(std::uint64_t serial)> release) {
    release_ = std::move(release);
  }
  void set_resolver(Resolver resolver) { resolver_ = std::move(resolver); }

 private:
  void WatchEntry(std::size_t index);
  void WatchFiles();
  void OnExit(std::size_t index);
  void Release(std::size_t index);
  void OnFileEvent();
  void OnRetry();
  void OnOpenBatch();
  void ScheduleRetry();
  void StartResolving(std::size_t index);
  void OnResolved(std::size_t index, Result<TargetHandlePtr> handle);
  // Logs a change of entry `index` after a resolution that was `was_available` before.
  void LogChange(std::size_t index, bool was_available);

  event_base* base_;
  Catalog* catalog_ = nullptr;
  std::function<void()> opened_;
  std::function<void(std::uint64_t)> release_;
  Resolver resolver_ = StartResolve;
  bool opening_ = false;
  std::unordered_map<std::size_t, std::unique_ptr<Event>> exits_;  // entry -> its pidfd
  UniqueFd inotify_;
  std::unique_ptr<Event> inotify_event_;
  // inotify watch -> file name in that directory -> entries of pid files with that name.
  std::unordered_map<int, std::unordered_map<std::string, std::vector<std::size_t>>> files_;
  // Background resolutions in progress (entry -> its work), and finished ones, freed by
  // reap_ once the loop is out of their callbacks.
  std::unordered_map<std::size_t, std::unique_ptr<Resolution>> resolutions_;
  std::vector<std::unique_ptr<Resolution>> finished_;
  Event retry_;
  Event batch_;
  Event reap_;
};

}  // namespace nsbroker
