// Owns one loaded configuration with its opened targets and their availability. Never
// touches a socket; a new catalog is built completely before it replaces the old one.
//
//   auto catalog = nsbroker::Catalog::Open(std::move(config));   // opens every target
//   const nsbroker::CatalogEntry* web = (*catalog)->Find("web1");
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "targets.h"

namespace nsbroker {

struct CatalogEntry {
  const TargetSpec* spec = nullptr;
  TargetHandlePtr handle;
  std::string gone;  // why it is unavailable; empty while it is available
};

class Catalog {
 public:
  // Opens every target of `config` (holding all descriptors when run_as is set, since the
  // broker cannot reach other processes once it has dropped root). The first failure names
  // the target and its FILE:LINE:COL.
  [[nodiscard]] static Result<std::unique_ptr<Catalog>> Open(Config config);

  const Config& config() const { return config_; }
  std::vector<CatalogEntry>& entries() { return entries_; }
  const std::vector<CatalogEntry>& entries() const { return entries_; }
  const CatalogEntry* Find(std::string_view name) const;
  // Marks entry `index` unavailable (its process exited) until a reload finds it again.
  void MarkGone(std::size_t index);

 private:
  Catalog() = default;
  Config config_;
  std::vector<CatalogEntry> entries_;
  std::unordered_map<std::string_view, std::size_t> by_name_;
};

}  // namespace nsbroker
