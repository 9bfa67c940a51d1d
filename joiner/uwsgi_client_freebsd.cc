// include/nsbroker/uwsgi.h on FreeBSD: not supported here. uWSGI's setns-socket hands over
// Linux namespace descriptors (uWSGI builds it only on Linux); on FreeBSD uWSGI enters jails
// itself (--jail-attach), so there is nothing for nsjoin --uwsgi to receive.
#include <string>

#include "nsbroker/uwsgi.h"

namespace nsbroker {
namespace {

std::unexpected<Error> Unsupported(const std::string& target) {
  return MakeError(ErrorCode::kInvalidRequest,
                   "uwsgi " + target +
                       ": uWSGI's setns-socket passes Linux namespaces and is not supported on "
                       "FreeBSD (uWSGI attaches to jails itself: --jail-attach)");
}

}  // namespace

Result<Grant> ParseUwsgiGreeting(std::string_view /*bytes*/, std::vector<UniqueFd> /*fds*/,
                                 const std::string& target) {
  return Unsupported(target);
}

Result<Grant> ReadUwsgiGrant(BorrowedFd /*sock*/, const std::string& target,
                             std::chrono::milliseconds /*timeout*/) {
  return Unsupported(target);
}

Result<Grant> ReceiveUwsgiGrant(const std::string& socket_path,
                                const UwsgiClientOptions& /*options*/) {
  return Unsupported(socket_path);
}

}  // namespace nsbroker
