// Owns the one platform seam of the broker: "open and hold an entry for a target" (Linux:
// namespace descriptors and pidfds, in targets_linux.cc; FreeBSD: jails, in targets_freebsd.cc
// over jail_target.h). Never decides who may enter, nor who gets a jail descriptor.
//
//   auto handle = nsbroker::OpenTarget(spec);
//   auto entries = (*handle)->Open(KindBit(NsKind::kNet) | KindBit(NsKind::kUts));
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "nsbroker/error.h"
#include "nsbroker/ns_kind.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// One entry of a grant, with its own descriptor and what identifies it.
struct EntryFd {
  NsKind kind = NsKind::kNet;
  UniqueFd fd;  // may be invalid for a JAIL entry granted by jid only
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  std::uint64_t ns_id = 0;  // 0 where the kernel has no namespace id
  std::int32_t jid = 0;     // JAIL only
  std::string jail_name;    // JAIL only
};

// A held set of entries, shared by whoever holds it (a handle, the grant cache) and every
// response naming its descriptors until that response is sent: replacing a handle or
// evicting a set never closes a descriptor that a queued response still names.
struct GrantSet {
  std::vector<EntryFd> entries;  // wire order
  KindSet kinds = 0;
  std::chrono::steady_clock::time_point fetched{};
};
using GrantSetPtr = std::shared_ptr<const GrantSet>;

// The entry of a jail target (FreeBSD): what identifies the jail, and a non-owning jail
// descriptor only when the caller asked for one and the kernel has them (FreeBSD 15+).
struct JailEntry {
  std::int32_t jid = 0;
  std::string name;
  UniqueFd descriptor;  // invalid: attach by jid
};

// A held set of `entries` (their kinds and the time now).
GrantSetPtr MakeGrantSet(std::vector<EntryFd> entries);
// Duplicates (close-on-exec) the entries of `held` whose kind is in `kinds`.
[[nodiscard]] Result<std::vector<EntryFd>> DupEntries(const std::vector<EntryFd>& held,
                                                      KindSet kinds);

class TargetHandle;
// A target whose descriptors are all opened once and held (self, netns and path targets).
std::unique_ptr<TargetHandle> HoldEntries(std::vector<EntryFd> entries);

// An opened target. Implementations are platform code; everything else sees only this.
class TargetHandle {
 public:
  virtual ~TargetHandle() = default;
  // A number no other handle of this process ever has (the grant cache's key: an address
  // could be reused by the next handle).
  std::uint64_t serial() const { return serial_; }
  // The entries this handle holds for its whole life (self, netns and path targets), sent as
  // they are; null when they are fetched per grant (Open, through the grant cache).
  virtual GrantSetPtr held() const { return nullptr; }
  // Fresh descriptors (the caller owns them) for `kinds`, in wire order, each verified.
  // kUnavailable with the reason when the target is gone ("process 1234 exited").
  [[nodiscard]] virtual Result<std::vector<EntryFd>> Open(KindSet kinds) const = 0;
  // A descriptor that becomes readable when the target goes away (a pidfd); -1 if none.
  virtual int watch_fd() const = 0;
  // Why the target is gone, once watch_fd() became readable: "process 1234 exited".
  virtual std::string GoneReason() const = 0;
  // The process served, for Status; 0 for targets that are not a process.
  virtual pid_t pid() const { return 0; }
  // What a name was resolved to, for audit lines: "pid 1234 of container web1"; empty for
  // targets whose config names the process or files themselves.
  virtual std::string Resolved() const { return {}; }
  // The jail of a jail target, checked to still be the jail that was resolved. With
  // `descriptor`, a jail descriptor comes along where the kernel has them; whether a peer may
  // have one is the handler's decision, never the platform's. Other targets have no jail.
  [[nodiscard]] virtual Result<JailEntry> OpenJail(bool /*descriptor*/) const {
    return MakeError(ErrorCode::kInternal, "not a jail target");
  }

 private:
  static std::uint64_t NextSerial() {
    static std::uint64_t last = 0;  // the broker opens targets from its one thread
    return ++last;
  }
  std::uint64_t serial_ = NextSerial();
};
using TargetHandlePtr = std::unique_ptr<TargetHandle>;

// Opens `spec` and checks it exists. A process is pinned (pidfd) and its descriptors are
// fetched per grant; the other sources' descriptors are opened and kept now.
[[nodiscard]] Result<TargetHandlePtr> OpenTarget(const TargetSpec& spec);
// How a target is opened, by the catalog and by the privilege-separated opener: the
// platform's OpenTarget, or (in tests of platform-neutral logic that the kernel here cannot
// run, such as FreeBSD jails) a fake of that seam.
using TargetOpener = std::function<Result<TargetHandlePtr>(const TargetSpec&)>;

// An oci target, resolved now: the runtime asked (oci_state.h, blocking at most its
// timeout_ms), then its pid pinned and checked (--check-config, the privilege-separated
// opener; the loop resolves in the background instead, resolution.h).
[[nodiscard]] Result<TargetHandlePtr> ResolveNow(const TargetSpec& spec);
// The same from what the runtime answered (Linux): the pid it named, pinned by a pidfd and
// checked to be the process it saw (started no later than it was asked).
struct OciState;
[[nodiscard]] Result<TargetHandlePtr> OpenContainer(const TargetSpec& spec, const OciState& state);

// What the privilege-separated server checks of every descriptor its opener hands it (and the
// opener before it does): `fd` is what `kind` promises (an nsfs file of that namespace type,
// or a directory for ROOT, CWD and CGROUPDIR), with inode, device and namespace id filled in
// from the kernel. kInvalidRequest naming `what` otherwise.
[[nodiscard]] Result<EntryFd> VerifyEntry(NsKind kind, UniqueFd fd, const std::string& what);
// The process a pidfd refers to, as the kernel says (kInvalidRequest: not a pidfd).
[[nodiscard]] Result<pid_t> VerifyPidfd(BorrowedFd fd);
// A jail target made of what the opener resolved as root: its jid, name and the jail
// descriptor it made (carrying root's credential; invalid where the kernel has none). The
// descriptor must refer to that jid. Jails need FreeBSD.
[[nodiscard]] Result<TargetHandlePtr> AdoptJail(std::int32_t jid, std::string name,
                                                UniqueFd descriptor);

// Whether this platform serves targets of this source type.
bool SourceSupported(SourceType source);

// Kinds a source can expose; the default `expose` is all of them but kExposedWhenNamed.
KindSet SourceKinds(const TargetSpec& spec);

// Exposed only when a target's `expose` names them: a joiner put into the target's cgroup is
// held to its resource limits (or escapes its own), which is the administrator's choice.
inline constexpr KindSet kExposedWhenNamed = KindBit(NsKind::kCgroupDir);

}  // namespace nsbroker
