// The platform-neutral part of the targets seam: grant sets and the handles of held entries.
#include "targets.h"

#include <fcntl.h>

namespace nsbroker {

GrantSetPtr MakeGrantSet(std::vector<EntryFd> entries) {
  auto set = std::make_shared<GrantSet>();
  for (const EntryFd& e : entries) set->kinds |= KindBit(e.kind);
  set->entries = std::move(entries);
  set->fetched = std::chrono::steady_clock::now();
  return set;
}

Result<std::vector<EntryFd>> DupEntries(const std::vector<EntryFd>& held, KindSet kinds) {
  std::vector<EntryFd> out;
  for (const EntryFd& h : held) {
    if (!KindSetHas(kinds, h.kind)) continue;
    UniqueFd fd(fcntl(h.fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) return SysError("dup " + std::string(KindName(h.kind)) + " descriptor");
    out.push_back({h.kind, std::move(fd), h.inode, h.device, h.ns_id});
  }
  return out;
}

namespace {

class HeldTarget : public TargetHandle {
 public:
  explicit HeldTarget(std::vector<EntryFd> held) : held_(MakeGrantSet(std::move(held))) {}
  Result<std::vector<EntryFd>> Open(KindSet kinds) const override {
    return DupEntries(held_->entries, kinds);
  }
  GrantSetPtr held() const override { return held_; }
  int watch_fd() const override { return -1; }
  std::string GoneReason() const override { return {}; }

 private:
  GrantSetPtr held_;
};

}  // namespace

TargetHandlePtr HoldEntries(std::vector<EntryFd> entries) {
  return std::make_unique<HeldTarget>(std::move(entries));
}

}  // namespace nsbroker
