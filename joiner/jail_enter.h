// Owns entering a jail, platform-neutrally: checking a JAIL grant entry, re-checking right
// before jail_attach that the jid still names the jail the broker named, and explaining the
// kernel's refusals. Never calls the kernel itself: JailOps does (enter_freebsd.cc), or a fake.
//
//   auto entered = nsbroker::EnterJail(grant.target, *grant.Find(NsKind::kJail), FreeBsdOps());
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "nsbroker/client.h"
#include "nsbroker/error.h"
#include "nsbroker/join.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// The kernel's jail calls for a joiner, as thin as they can be. Attach calls return 0 or the
// errno they failed with, so that the logic above can explain it.
class JailOps {
 public:
  virtual ~JailOps() = default;
  // jail_getname(3); kNotFound when no jail has that jid.
  [[nodiscard]] virtual Result<std::string> NameOf(std::int32_t jid) const = 0;
  // The jid of the jail a descriptor refers to (jail_get(2) JAIL_USE_DESC); kNotFound once it
  // was removed.
  [[nodiscard]] virtual Result<std::int32_t> JidOfDescriptor(BorrowedFd descriptor) const = 0;
  virtual int AttachById(std::int32_t jid) const = 0;               // jail_attach(2)
  virtual int AttachByDescriptor(BorrowedFd descriptor) const = 0;  // jail_attach_jd(2)
  virtual uid_t EffectiveUid() const = 0;
};

// A JAIL entry as the client receives it: a positive jid, a name, and if it carries a
// descriptor, one that refers to that jid. kInvalidRequest otherwise.
[[nodiscard]] Result<void> CheckJailEntry(const GrantEntry& entry, const JailOps& ops);

// Attaches the calling process to the jail of `jail`: by its descriptor when the grant has one
// (the kernel then vouches for the jail: no race), else by jid, after checking with
// jail_getname that the jid still names jail.jail_name — a jail removed and replaced under the
// same jid is refused before anything is attached. The window that remains (the jail replaced
// between that check and jail_attach) needs root on the host to open; see docs/FREEBSD.md.
// jail_attach chroots and chdirs into the jail; credentials are unchanged.
[[nodiscard]] Result<Entered> EnterJail(std::string_view target, const GrantEntry& jail,
                                        const JailOps& ops);

}  // namespace nsbroker
