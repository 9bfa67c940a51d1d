// FreeBSD side of the targets seam: jail targets only, through libjail and jail_get(2). The
// logic (resolution, holding, re-checks) is jail_target.cc; this file is the system calls.
// Written to the FreeBSD 14/15 manual pages (jail(2), jail(3)); not compiled on Linux.

// jail(2) wants <sys/param.h> before <sys/jail.h>; jail(3)'s <jail.h> comes after them.
// clang-format off
#include <sys/param.h>
#include <sys/jail.h>
#include <sys/uio.h>
#include <jail.h>
// clang-format on
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "jail_target.h"
#include "targets.h"

namespace nsbroker {
namespace {

// libjail reports in jail_errmsg; errno ENOENT is "no such jail" for jail_get(2) and for the
// jail_getid/jail_getname wrappers around it.
std::unexpected<Error> JailError(int err, const std::string& what) {
  ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : CodeForErrno(err);
  std::string message = what + ": " + (jail_errmsg[0] != '\0' ? jail_errmsg : std::strerror(err));
  return std::unexpected(Error{code, err, std::move(message)});
}

// One "name"/value pair of a jail_get(2) parameter list; only the jail descriptor calls use
// it, so headers before FreeBSD 15.0 leave it unused.
[[maybe_unused]] void Param(iovec* iov, const char* name, void* value, std::size_t size) {
  iov[0].iov_base = const_cast<char*>(name);
  iov[0].iov_len = std::strlen(name) + 1;
  iov[1].iov_base = value;
  iov[1].iov_len = size;
}

class FreeBsdJails : public JailSystem {
 public:
  Result<std::int32_t> FindId(const std::string& name) const override {
    jail_errmsg[0] = '\0';
    int jid = jail_getid(name.c_str());
    if (jid < 0) return JailError(errno, "jail_getid " + name);
    return jid;
  }

  Result<std::string> FindName(std::int32_t jid) const override {
    jail_errmsg[0] = '\0';
    char* name = jail_getname(jid);
    if (name == nullptr) return JailError(errno, "jail_getname " + std::to_string(jid));
    std::string out(name);
    std::free(name);
    return out;
  }

  Result<std::optional<UniqueFd>> NewDescriptor(std::int32_t jid) const override {
#ifdef JAIL_GET_DESC
    // "desc" = -1 with JAIL_GET_DESC asks the kernel for a new descriptor (jail(2)). Never
    // JAIL_OWN_DESC: closing an owning descriptor removes the jail.
    int id = jid;
    int desc = -1;
    char errmsg[256] = "";
    iovec iov[6];
    Param(&iov[0], "jid", &id, sizeof id);
    Param(&iov[2], "desc", &desc, sizeof desc);
    Param(&iov[4], "errmsg", errmsg, sizeof errmsg);
    if (jail_get(iov, 6, JAIL_GET_DESC) < 0) {
      int err = errno;
      // A kernel older than its headers (FreeBSD 15 headers, an earlier kernel) does not know
      // "desc" or the flag: that is "no jail descriptors here", not a failure.
      if (err == EINVAL) return std::optional<UniqueFd>();
      if (err == ENOENT) {
        return std::unexpected(
            Error{ErrorCode::kNotFound, err, "no jail has jid " + std::to_string(jid)});
      }
      return std::unexpected(Error{
          CodeForErrno(err), err,
          std::string("jail_get desc: ") + (errmsg[0] != '\0' ? errmsg : std::strerror(err))});
    }
    UniqueFd fd(desc);
    // jail(2) does not promise close-on-exec for a new jail descriptor: set it before
    // anything else can run (the broker is one thread, and it never forks to exec).
    if (fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
      return SysError(ErrorCode::kInternal, "fcntl FD_CLOEXEC on a jail descriptor");
    }
    return std::optional<UniqueFd>(std::move(fd));
#else
    // Headers before FreeBSD 15.0 have no jail descriptors: attach by jid only.
    (void)jid;
    return std::optional<UniqueFd>();
#endif
  }

  Result<std::int32_t> DescriptorJid(BorrowedFd descriptor) const override {
#ifdef JAIL_USE_DESC
    int jid = 0;
    int desc = descriptor.get();
    char errmsg[256] = "";
    iovec iov[6];
    Param(&iov[0], "jid", &jid, sizeof jid);
    Param(&iov[2], "desc", &desc, sizeof desc);
    Param(&iov[4], "errmsg", errmsg, sizeof errmsg);
    int got = jail_get(iov, 6, JAIL_USE_DESC);
    if (got < 0) {
      int err = errno;
      return std::unexpected(Error{err == ENOENT ? ErrorCode::kNotFound : CodeForErrno(err), err,
                                   std::string("jail_get by descriptor: ") +
                                       (errmsg[0] != '\0' ? errmsg : std::strerror(err))});
    }
    return got;
#else
    (void)descriptor;
    return MakeError(ErrorCode::kInternal, "jail descriptors need FreeBSD 15");
#endif
  }

  bool RunsAsRoot() const override { return geteuid() == 0; }
};

}  // namespace

Result<EntryFd> VerifyEntry(NsKind, UniqueFd, const std::string& what) {
  return MakeError(ErrorCode::kInvalidRequest, what + ": namespaces need Linux");
}

Result<pid_t> VerifyPidfd(BorrowedFd) {
  return MakeError(ErrorCode::kInvalidRequest, "process targets need Linux");
}

Result<TargetHandlePtr> AdoptJail(std::int32_t jid, std::string name, UniqueFd descriptor) {
  return AdoptJailTarget(std::make_shared<FreeBsdJails>(), jid, std::move(name),
                         std::move(descriptor));
}

bool SourceSupported(SourceType source) { return source == SourceType::kJail; }

KindSet SourceKinds(const TargetSpec& spec) {
  return spec.source == SourceType::kJail ? KindBit(NsKind::kJail) : 0;
}

Result<TargetHandlePtr> OpenTarget(const TargetSpec& spec) {
  // A jail target is always held: its jid, name and descriptor are all it needs.
  if (spec.source != SourceType::kJail) {
    return MakeError(ErrorCode::kInvalidRequest, "namespace targets need Linux");
  }
  return OpenJailTarget(spec, std::make_shared<FreeBsdJails>());
}

// Containers are a Linux source; the config refuses them here (SourceSupported).
Result<TargetHandlePtr> ResolveNow(const TargetSpec&) {
  return MakeError(ErrorCode::kInvalidRequest, "oci targets need Linux");
}

}  // namespace nsbroker
