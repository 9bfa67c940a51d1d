// Owns jail targets, platform-neutrally: reading `jail: "www1"` (name or jid), resolving it
// through JailSystem, holding it and checking it is still the same jail at every grant.
// Never calls the kernel itself (JailSystem does, in targets_freebsd.cc) and never decides who
// may have a jail descriptor (the handler does).
//
//   auto target = nsbroker::OpenJailTarget(spec, system);   // system: FreeBSD's, or a fake
//   auto jail = (*target)->OpenJail(/*descriptor=*/peer.uid == 0);
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "targets.h"

namespace nsbroker {

// What `jail:` names: a jid (the text is all digits, as jail_getid(3) reads it) or a name.
struct JailRef {
  std::optional<std::int32_t> jid;
  std::string name;  // empty for a jid
};

// kInvalidRequest with the reason for anything that cannot name a jail: empty, jid 0 (the
// host), a jid beyond int32, or a name with characters outside [A-Za-z0-9._:@-] or longer
// than 255 bytes (MAXHOSTNAMELEN less its NUL).
[[nodiscard]] Result<JailRef> ParseJailRef(std::string_view text);

// "jail 'www1' (jid 3)", "jail jid 3" before its name is known.
std::string DescribeJail(std::int32_t jid, std::string_view name);

// The kernel's jail calls, as thin as they can be: the seam between this logic and FreeBSD.
// "No such jail" is kNotFound; any other failure carries its errno.
class JailSystem {
 public:
  virtual ~JailSystem() = default;
  // jail_getid(3) for a name (never a numeric string: JailRef sorted those out).
  [[nodiscard]] virtual Result<std::int32_t> FindId(const std::string& name) const = 0;
  // jail_getname(3).
  [[nodiscard]] virtual Result<std::string> FindName(std::int32_t jid) const = 0;
  // A new *non-owning* jail descriptor for `jid` (jail_get(2) "desc" with JAIL_GET_DESC; never
  // JAIL_OWN_DESC, whose close would remove the jail), close-on-exec. nullopt when this kernel
  // has no jail descriptors (before FreeBSD 15.0): detected at run time.
  [[nodiscard]] virtual Result<std::optional<UniqueFd>> NewDescriptor(std::int32_t jid) const = 0;
  // The jid of the jail a descriptor refers to (jail_get(2) with JAIL_USE_DESC); kNotFound once
  // that jail has been removed (a descriptor never refers to another jail).
  [[nodiscard]] virtual Result<std::int32_t> DescriptorJid(BorrowedFd descriptor) const = 0;
  // Whether the broker is root now (geteuid). The kernel judges jail_attach_jd by the
  // credential of the descriptor's creator, so one made after a run_as drop lets no root peer
  // attach (EPERM).
  virtual bool RunsAsRoot() const = 0;
};
using JailSystemPtr = std::shared_ptr<const JailSystem>;

// Resolves spec.file (a JailRef) to a live jail and holds it: by name, jail_getid then
// jail_getname must agree; by jid, its current name is recorded. Where the kernel has jail
// descriptors one is taken and held, so that the target stays pinned to that very jail; without
// them, or when the broker no longer runs as root (a reload after run_as), every grant
// re-checks that the jid still carries the recorded name. A missing jail is kUnavailable ("no
// jail named 'www1'"), as a missing process is.
[[nodiscard]] Result<TargetHandlePtr> OpenJailTarget(const TargetSpec& spec, JailSystemPtr system);

// The jail target of a privilege-separated server: what its root opener resolved (OpenJailTarget
// as root, so `held` carries root's credential and root peers can attach with it). Checked again
// here as far as this process may: the jid still carries `name`, and `held`, where jail_get may
// be asked about it, refers to that jid.
[[nodiscard]] Result<TargetHandlePtr> AdoptJailTarget(JailSystemPtr system, std::int32_t jid,
                                                      std::string name, UniqueFd held);

}  // namespace nsbroker
