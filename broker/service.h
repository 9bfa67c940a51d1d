// Owns the daemon's life: the listening socket (bound or inherited from systemd), readiness
// notification, signals, reload and clean stop. Never handles a request itself.
//
//   nsbroker::ServiceOptions options{.config_path = "/etc/nsbroker/nsbroker.conf"};
//   return nsbroker::RunService(options);  // until SIGTERM/SIGINT; the exit status
#pragma once

#include <sys/un.h>

#include <optional>
#include <string>
#include <string_view>

#include "config.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

struct ServiceOptions {
  std::string config_path = kDefaultConfigPath;
  bool config_given = false;          // -c was on the command line
  std::optional<std::string> socket;  // --socket: overrides the config's socket
  bool self = false;                  // --self: the embedded default config
  bool verbose = false;
};

// The config the options name: the file, or the embedded default for --self; --socket wins.
[[nodiscard]] Result<Config> LoadServiceConfig(const ServiceOptions& options);

// Binds and listens on `addr` (a path, NUL-terminated in sun_path) as an AF_UNIX socket of
// `type`, with the config's socket_mode and socket_group. A stale socket file is replaced; a
// live one ("another <server> is serving it") or anything that is not a socket is an error.
[[nodiscard]] Result<UniqueFd> ListenUnixSocket(const sockaddr_un& addr, int type,
                                                const Config& config, std::string_view server);

// Binds the config's socket with socket_mode and socket_group. A stale socket file is
// replaced; a live one (another broker) or anything that is not a socket is an error.
[[nodiscard]] Result<UniqueFd> BindSocket(const Config& config);

// Loads, opens, binds, drops privileges, serves until SIGTERM/SIGINT; returns the exit status.
int RunService(const ServiceOptions& options);

}  // namespace nsbroker
