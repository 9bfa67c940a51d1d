// Owns building an AF_UNIX address from a socket path, with the one length check that
// keeps sun_path NUL-terminated. Never creates, binds or connects a socket.
//
//   auto addr = nsbroker::UnixAddress("/run/nsbroker/nsbroker.sock");  // Result<sockaddr_un>
//   connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <string_view>

#include "nsbroker/error.h"

namespace nsbroker {

// kInvalidRequest, naming the path, unless it is 1 to sizeof(sun_path) - 1 bytes.
inline Result<sockaddr_un> UnixAddress(std::string_view path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "socket path '" + std::string(path) + "' must be 1 to " +
                         std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace nsbroker
