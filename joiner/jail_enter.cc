#include "jail_enter.h"

#include <cerrno>
#include <cstring>

namespace nsbroker {
namespace {

// MAXHOSTNAMELEN (256) bounds a jail name in the kernel, NUL included.
constexpr std::size_t kMaxJailName = 255;

std::string Describe(const GrantEntry& jail) {
  return "jail '" + jail.jail_name + "' (jid " + std::to_string(jail.jid) + ")";
}

// jail(2), ERRORS: EPERM from a non-root caller; for root, jail_attach calls chroot(2)
// internally, which refuses a process holding an open directory (kern.chroot_allow_open_
// directories); jail_attach_jd adds a descriptor made by a non-root user. EINVAL (no such
// jid) or, from jail_attach_jd, ENOENT (the descriptor's jail was removed): the jail is gone.
Error AttachError(int err, bool by_descriptor, const GrantEntry& jail, const JailOps& ops) {
  const std::string call = by_descriptor ? "jail_attach_jd" : "jail_attach";
  if (err == EPERM && ops.EffectiveUid() != 0 && !by_descriptor) {
    return {ErrorCode::kPermissionDenied, err,
            call + ": needs root (effective uid " + std::to_string(ops.EffectiveUid()) +
                "); users enter jails through jailme"};
  }
  if (err == EPERM) {
    std::string message = call + ": the process holds an open directory descriptor";
    if (by_descriptor) message += ", or the jail descriptor was not made by root";
    return {ErrorCode::kPermissionDenied, err, message + " (chroot(2) refuses to move it)"};
  }
  if (err == EINVAL || err == ENOENT) {
    return {ErrorCode::kUnavailable, err, call + ": " + Describe(jail) + " no longer exists"};
  }
  return {CodeForErrno(err), err, call + " " + Describe(jail) + ": " + std::strerror(err)};
}

}  // namespace

Result<void> CheckJailEntry(const GrantEntry& entry, const JailOps& ops) {
  if (entry.kind != NsKind::kJail) {
    return MakeError(ErrorCode::kInvalidRequest, "the entry is not a jail");
  }
  if (entry.jid <= 0) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "the jail entry has jid " + std::to_string(entry.jid));
  }
  if (entry.jail_name.empty() || entry.jail_name.size() > kMaxJailName) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "the jail entry of jid " + std::to_string(entry.jid) + " has no usable name");
  }
  if (!entry.fd.valid()) return {};
  auto jid = ops.JidOfDescriptor(entry.fd);
  if (!jid && jid.error().code == ErrorCode::kNotFound) {
    // The descriptor is fine, its jail is not: removed since the broker granted it.
    return MakeError(ErrorCode::kUnavailable, Describe(entry) + " no longer exists");
  }
  if (!jid) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "the jail descriptor of " + Describe(entry) +
                         " is not a live jail descriptor: " + jid.error().message);
  }
  if (*jid != entry.jid) {
    return MakeError(ErrorCode::kInvalidRequest, "the jail descriptor refers to jid " +
                                                     std::to_string(*jid) + ", not to " +
                                                     Describe(entry));
  }
  return {};
}

Result<Entered> EnterJail(std::string_view target, const GrantEntry& jail, const JailOps& ops) {
  (void)target;  // callers prefix "target 'T': " to every error
  if (auto valid = CheckJailEntry(jail, ops); !valid) {
    return std::unexpected(std::move(valid.error()));
  }
  int err = 0;
  bool by_descriptor = jail.fd.valid();
  if (by_descriptor) {
    err = ops.AttachByDescriptor(jail.fd);
  } else {
    // jexec(8)'s race, narrowed: the broker resolved the name to this jid; the jail may have
    // been removed and the jid given to another jail since. Check right before attaching.
    auto name = ops.NameOf(jail.jid);
    if (!name) {
      if (name.error().code == ErrorCode::kNotFound) {
        return MakeError(ErrorCode::kUnavailable, Describe(jail) + " no longer exists");
      }
      return std::unexpected(std::move(name.error()));
    }
    if (*name != jail.jail_name) {
      return MakeError(ErrorCode::kUnavailable,
                       "jid " + std::to_string(jail.jid) + " now names jail '" + *name +
                           "', not '" + jail.jail_name +
                           "': not attaching (the jail was replaced since the broker named it)");
    }
    err = ops.AttachById(jail.jid);
  }
  if (err != 0) return std::unexpected(AttachError(err, by_descriptor, jail, ops));
  return Entered{.kinds = {NsKind::kJail}, .pid = false, .user = false};
}

}  // namespace nsbroker
