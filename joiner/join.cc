// Enter's platform-neutral half: which entries of a grant to enter, in which order. The
// entering itself is the platform seam (enter.h).
#include "nsbroker/join.h"

#include <algorithm>
#include <array>
#include <string>

#include "enter.h"

namespace nsbroker {
namespace {

// nsenter's order. The user namespace leads; the platform moves it last when the caller
// already holds the capabilities the others need. mnt comes late because entering it
// changes the root and working directory under us.
constexpr std::array<NsKind, 8> kEnterOrder = {NsKind::kUser, NsKind::kCgroup, NsKind::kIpc,
                                               NsKind::kUts,  NsKind::kNet,    NsKind::kPid,
                                               NsKind::kMnt,  NsKind::kTime};

std::string Quoted(NsKind kind) { return "'" + std::string(KindName(kind)) + "'"; }

Result<const GrantEntry*> Required(const Grant& grant, NsKind kind) {
  const GrantEntry* entry = grant.Find(kind);
  if (entry == nullptr) {
    return MakeError(ErrorCode::kNotFound, "the grant has no " + Quoted(kind) + " entry");
  }
  return entry;
}

}  // namespace

Result<Entered> Enter(const Grant& grant, const EnterOptions& options) {
  for (NsKind kind : options.kinds) {
    if (!IsNamespaceKind(kind)) {
      return MakeError(ErrorCode::kInvalidRequest,
                       Quoted(kind) + " is not a namespace kind (ROOT and CWD have options)");
    }
    if (auto entry = Required(grant, kind); !entry) return std::unexpected(entry.error());
  }
  platform::EnterPlan plan{.target = grant.target};
  for (NsKind kind : kEnterOrder) {
    bool wanted = options.kinds.empty() || std::find(options.kinds.begin(), options.kinds.end(),
                                                     kind) != options.kinds.end();
    const GrantEntry* entry = grant.Find(kind);
    if (wanted && entry != nullptr) plan.namespaces.push_back(entry);
  }
  if (options.chroot_to_root) {
    auto root = Required(grant, NsKind::kRoot);
    if (!root) return std::unexpected(std::move(root.error()));
    plan.root = *root;
  }
  if (options.chdir_to_cwd) {
    auto cwd = Required(grant, NsKind::kCwd);
    if (!cwd) return std::unexpected(std::move(cwd.error()));
    plan.cwd = *cwd;
  }
  return platform::EnterPlanned(plan);
}

}  // namespace nsbroker
