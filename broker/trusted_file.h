// Owns opening files the broker reads or writes as root when a user could have put them
// there: every directory from / down and the file itself must be root's (or the broker's
// own uid's). Never follows a link a user could have made, and never blocks on a FIFO.
//
//   auto fd = nsbroker::OpenTrusted("/run/web1.pid", O_RDONLY);   // a regular file, root's
//   auto dir = nsbroker::CheckTrustedDirectory("/run/nsbroker");  // before binding a socket
#pragma once

#include <string>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// Opens `path` (absolute) with `flags` | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC and
// checks, walking from / one component at a time (openat, O_PATH|O_NOFOLLOW), that:
// every directory is owned by root (or by this process's euid) and writable by neither group
// nor others unless it is sticky (as /tmp is: there only the owner of an entry may replace
// it, and every entry on the way must be root's anyway); symbolic links on the way are
// followed only when they are root's (16 at most, as /var/run -> /run); the file is a regular
// file, root's, and writable by neither group nor others. kPermissionDenied names the path and
// its owner ("/tmp/x.pid is owned by uid 65534, not root"); kNotFound when it does not exist.
[[nodiscard]] Result<UniqueFd> OpenTrusted(const std::string& path, int flags);

// The checks of the file itself, on a descriptor already open (O_PATH will do): a regular
// file, root's, writable by neither group nor others. For a file opened in a platform's own
// way (the opener nsbrokerd execs), whose directory CheckTrustedDirectory walks.
[[nodiscard]] Result<void> CheckTrustedFile(BorrowedFd fd, const std::string& path);

// The same checks for a directory (e.g. the one the socket is bound in), which must exist.
[[nodiscard]] Result<void> CheckTrustedDirectory(const std::string& path);

}  // namespace nsbroker
