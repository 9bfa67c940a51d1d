// FreeBSD side of the seam: a grant is a jail, entered with jail_attach(2) by jid or
// jail_attach_jd(2) by descriptor (FreeBSD 15+). The checks and the name re-check are
// jail_enter.cc; this file is the system calls. Written to the FreeBSD 14/15 manual pages
// (jail(2), jail(3)); not compiled on Linux.

// jail(2) wants <sys/param.h> before <sys/jail.h>; jail(3)'s <jail.h> comes after them.
// clang-format off
#include <sys/param.h>
#include <sys/jail.h>
#include <sys/uio.h>
#include <jail.h>
// clang-format on
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "enter.h"
#include "jail_enter.h"

namespace nsbroker::platform {
namespace {

class FreeBsdJailOps : public JailOps {
 public:
  Result<std::string> NameOf(std::int32_t jid) const override {
    jail_errmsg[0] = '\0';
    char* name = jail_getname(jid);
    if (name == nullptr) {
      int err = errno;
      ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : CodeForErrno(err);
      return std::unexpected(
          Error{code, err,
                "jail_getname " + std::to_string(jid) + ": " +
                    (jail_errmsg[0] != '\0' ? jail_errmsg : std::strerror(err))});
    }
    std::string out(name);
    std::free(name);
    return out;
  }

  Result<std::int32_t> JidOfDescriptor(BorrowedFd descriptor) const override {
#ifdef JAIL_USE_DESC
    int jid = 0;
    int desc = descriptor.get();
    iovec iov[4];
    iov[0] = {const_cast<char*>("jid"), sizeof "jid"};
    iov[1] = {&jid, sizeof jid};
    iov[2] = {const_cast<char*>("desc"), sizeof "desc"};
    iov[3] = {&desc, sizeof desc};
    int got = jail_get(iov, 4, JAIL_USE_DESC);
    if (got < 0) {
      int err = errno;
      return std::unexpected(Error{err == ENOENT ? ErrorCode::kNotFound : CodeForErrno(err), err,
                                   std::string("jail_get by descriptor: ") + std::strerror(err)});
    }
    return got;
#else
    (void)descriptor;
    return MakeError(ErrorCode::kInvalidRequest, "jail descriptors need FreeBSD 15");
#endif
  }

  int AttachById(std::int32_t jid) const override { return jail_attach(jid) == 0 ? 0 : errno; }

  int AttachByDescriptor(BorrowedFd descriptor) const override {
#ifdef JAIL_USE_DESC
    return jail_attach_jd(descriptor.get()) == 0 ? 0 : errno;
#else
    (void)descriptor;
    return EOPNOTSUPP;
#endif
  }

  uid_t EffectiveUid() const override { return geteuid(); }
};

std::string Name(NsKind kind) { return std::string(KindName(kind)); }

}  // namespace

Result<void> CheckEntry(const GrantEntry& entry) {
  if (entry.kind != NsKind::kJail) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "a '" + Name(entry.kind) + "' entry cannot be entered on FreeBSD");
  }
  return CheckJailEntry(entry, FreeBsdJailOps());
}

Result<Entered> EnterPlanned(const EnterPlan& plan) {
  if (!plan.namespaces.empty() || plan.root != nullptr || plan.cwd != nullptr) {
    return MakeError(ErrorCode::kInvalidRequest, "namespaces, root and cwd need Linux");
  }
  return MakeError(ErrorCode::kNotFound, "the grant has no jail to enter");
}

Result<Entered> EnterJail(std::string_view target, const GrantEntry& jail) {
  return nsbroker::EnterJail(target, jail, FreeBsdJailOps());
}

Result<void> EnterNetworkOnThisThread(const GrantEntry& net) {
  return MakeError(ErrorCode::kInvalidRequest,
                   "entering only the '" + Name(net.kind) + "' namespace needs Linux");
}

}  // namespace nsbroker::platform
