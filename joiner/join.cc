// Enter's platform-neutral half: which entries of a grant to enter, in which order. The
// entering itself is the platform seam (enter.h).
#include "nsbroker/join.h"

#include <array>
#include <string>

#include "enter.h"
#include "nsbroker/kind_set.h"

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
    if (!IsNamespaceKind(kind) && kind != NsKind::kJail) {
      return MakeError(ErrorCode::kInvalidRequest,
                       Quoted(kind) + " is not a namespace kind (ROOT and CWD have options)");
    }
    if (auto entry = Required(grant, kind); !entry) return std::unexpected(entry.error());
  }
  KindSet named = KindSetOf(options.kinds);
  auto wanted = [&](NsKind kind) { return options.kinds.empty() || KindSetHas(named, kind); };
  platform::EnterPlan plan{.target = grant.target};
  for (NsKind kind : kEnterOrder) {
    const GrantEntry* entry = grant.Find(kind);
    if (wanted(kind) && entry != nullptr) plan.namespaces.push_back(entry);
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
  const GrantEntry* jail = grant.Find(NsKind::kJail);
  bool want_jail = jail != nullptr && wanted(NsKind::kJail);
  if (want_jail) {
    // jail_attach changes root and cwd itself, and a jail has no namespaces to add to it.
    if (!plan.namespaces.empty() || plan.root != nullptr || plan.cwd != nullptr) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "a jail cannot be entered together with namespaces, root or cwd");
    }
    return platform::EnterJail(grant.target, *jail);
  }
  return platform::EnterPlanned(plan);
}

}  // namespace nsbroker
