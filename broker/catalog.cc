#include "catalog.h"

namespace nsbroker {

Result<std::unique_ptr<Catalog>> Catalog::Open(Config config) {
  std::unique_ptr<Catalog> catalog(new Catalog());
  catalog->config_ = std::move(config);
  const Config& c = catalog->config_;
  bool hold = c.run_as.has_value();
  catalog->entries_.reserve(c.targets.size());
  catalog->by_name_.reserve(c.targets.size());
  for (const TargetSpec& spec : c.targets) {
    auto handle = OpenTarget(spec, hold);
    if (!handle) {
      Error e = std::move(handle.error());
      e.message = WhereIn(c.file, spec.location) + "target '" + spec.name + "': " + e.message;
      return std::unexpected(std::move(e));
    }
    catalog->by_name_.emplace(spec.name, catalog->entries_.size());
    catalog->entries_.push_back({&spec, std::move(*handle), {}});
  }
  return catalog;
}

const CatalogEntry* Catalog::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

void Catalog::MarkGone(std::size_t index) {
  CatalogEntry& entry = entries_.at(index);
  if (entry.gone.empty()) entry.gone = entry.handle->GoneReason();
}

}  // namespace nsbroker
