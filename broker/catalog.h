// Owns one loaded configuration with its targets and their availability: a target is either
// available (an open handle) or unavailable with its reason. Never touches a socket, and
// nothing about one target stops the others from being served.
//
//   auto next = nsbroker::Catalog::Build(std::move(config), current.get());  // keeps handles
//   while (next->OpenPending(256) > 0) { /* serve a little in between */ }
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "target_table.h"
#include "targets.h"

namespace nsbroker {

struct CatalogEntry {
  const TargetSpec* spec = nullptr;
  TargetHandlePtr handle;  // null while unavailable
  std::string gone;        // why it is unavailable; empty while it is available
  std::string exited;      // "process N exited", kept while a target re-resolves (Reresolves)
  bool pending = false;    // not opened yet (start-up or reload in progress)
  bool resolving = false;  // waiting for the lifecycle's background resolution (oci)
  std::chrono::system_clock::time_point since{};  // when `gone` last changed to or from ""
  std::uint64_t restarts = 0;                     // new processes served after one exited
  // Re-resolved targets: the next attempt and the wait after a failure.
  std::chrono::steady_clock::time_point retry_at = std::chrono::steady_clock::time_point::max();
  std::chrono::milliseconds backoff{0};
};

// The reason given for a target not opened yet.
inline constexpr char kOpening[] = "opening (start-up or reload in progress)";
// The reason given for an oci target while its runtime is asked for the first time.
inline constexpr char kResolving[] = "resolving";

class Catalog {
 public:
  // The catalog of `config`. Targets whose source did not change keep their handle, moved
  // out of `previous` (which must then be discarded); every other target is pending.
  static std::unique_ptr<Catalog> Build(Config config, Catalog* previous = nullptr,
                                        TargetOpener opener = OpenTarget);
  // Build, then open every pending target. Never fails: a target that cannot be opened is
  // unavailable with "FILE:LINE:COL: target 'NAME': reason".
  [[nodiscard]] static Result<std::unique_ptr<Catalog>> Open(
      Config config, const TargetOpener& opener = OpenTarget);

  // Opens up to `limit` pending targets, in order; returns how many are still pending.
  std::size_t OpenPending(std::size_t limit);
  // Entries before this index are no longer pending.
  std::size_t opened_upto() const { return next_pending_; }
  // Opens entry `index` again (a pid_file target whose process exited or whose file
  // changed). A failure schedules the next attempt with backoff (100 ms doubling to 10 s).
  // True when the entry's handle changed.
  bool Resolve(std::size_t index, std::chrono::steady_clock::time_point now);
  // Records how the background resolution of entry `index` ended (oci targets, which Open
  // and Resolve leave `resolving`), with the same backoff; true when the handle changed.
  bool Settle(std::size_t index, Result<TargetHandlePtr> handle,
              std::chrono::steady_clock::time_point now);
  // Resolves every `resolving` entry now, blocking (--check-config, and the privilege-separated
  // server's start-up, through its opener).
  void ResolveAllNow();

  const Config& config() const { return config_; }
  // How this catalog opens targets; a reload's catalog opens them the same way.
  const TargetOpener& opener() const { return opener_; }
  std::vector<CatalogEntry>& entries() { return entries_; }
  const std::vector<CatalogEntry>& entries() const { return entries_; }
  const CatalogEntry* Find(std::string_view name) const;
  // Marks entry `index` unavailable (its process exited); pid_file targets retry at once.
  void MarkGone(std::size_t index, std::chrono::steady_clock::time_point now);
  std::size_t unavailable() const;

  // Descriptors a target of `spec` holds once open (its pidfd, or its namespace files).
  static std::size_t Cost(const TargetSpec& spec);
  // The sum over this config's targets: what the ledger charges to its targets account.
  std::size_t cost() const { return cost_; }

 private:
  Catalog() = default;
  // Opens entry `index` now (or marks it `resolving`); records the reason when it cannot.
  void OpenEntry(std::size_t index, std::chrono::steady_clock::time_point now);
  void Record(std::size_t index, Result<TargetHandlePtr> handle,
              std::chrono::steady_clock::time_point now);

  Config config_;
  TargetOpener opener_;
  std::vector<CatalogEntry> entries_;
  std::unordered_map<std::string_view, std::size_t> by_name_;
  std::size_t next_pending_ = 0;
  std::size_t cost_ = 0;
};

}  // namespace nsbroker
