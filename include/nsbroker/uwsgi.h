// libnsjoin's uWSGI client: reads a uWSGI `--setns-socket` greeting and its descriptors into
// a Grant. Never hands out a descriptor it has not identified with NS_GET_NSTYPE.
//
//   auto grant = nsbroker::ReceiveUwsgiGrant("/run/uwsgi/app.ns");  // uwsgi --setns-socket
//   if (!grant) return Fail(grant.error());  // names the socket and the reason
//   auto entered = nsbroker::Enter(*grant);   // join.h, exactly as with a broker grant
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "nsbroker/client.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "nsbroker/uwsgi_format.h"

namespace nsbroker {

// uWSGI 2.0's setns-socket format: nsbroker/uwsgi_format.h.

struct UwsgiClientOptions {
  // Uids besides root allowed to serve the socket (SO_PEERCRED). The caller's own uid is
  // trusted too, unless the caller runs with borrowed privileges (set-uid: real, effective
  // and saved uids differ): a server its caller runs could then feed root a forged
  // namespace (a mount namespace with its own /etc, say).
  std::vector<uid_t> trusted_server_uids;
  // How long the whole greeting may take; a server that never writes must not hang us.
  std::chrono::milliseconds timeout{5000};
};

// Connects (AF_UNIX SOCK_STREAM) to a uWSGI setns-socket at socket_path, checks who serves
// it, and returns what it sent as a Grant whose target is socket_path. Errors name the
// socket: kNotFound (no socket), kPermissionDenied (served by an untrusted uid),
// kUnavailable (closed with nothing sent, which is also how nsbrokerd refuses a peer its
// policy denies; or timed out), kInvalidRequest (anything malformed; see ParseUwsgiGreeting).
[[nodiscard]] Result<Grant> ReceiveUwsgiGrant(const std::string& socket_path,
                                              const UwsgiClientOptions& options = {});

// The same over an already connected stream socket, without the server check: reads until
// kUwsgiGreetingSize bytes, EOF (a short greeting is an error) or `timeout`, collecting
// every SCM_RIGHTS descriptor with MSG_CMSG_CLOEXEC into a UniqueFd before any check.
[[nodiscard]] Result<Grant> ReadUwsgiGrant(
    BorrowedFd sock, const std::string& target,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// The parser behind both, over the greeting bytes and the descriptors that came with them
// (all of them closed on error): the magic, a count equal to fds.size(), at most
// kUwsgiMaxFds, every descriptor a namespace (NS_GET_NSTYPE). Duplicates of one namespace
// (pid and pid_for_children, time and time_for_children) become one entry; if two
// *different* namespaces of one kind arrive, the later one wins, as it does for uWSGI's own
// client, whose later setns replaces the earlier.
[[nodiscard]] Result<Grant> ParseUwsgiGreeting(std::string_view bytes, std::vector<UniqueFd> fds,
                                               const std::string& target);

}  // namespace nsbroker
