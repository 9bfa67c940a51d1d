// Owns the daemon's life: the listening sockets (bound or inherited from systemd) and their
// files, readiness notification, signals, reload and clean stop. Never handles a request.
//
//   auto daemon = nsbroker::Daemon::Build(options);   // load, open, bind; with run_as, split
//   if (!daemon) { LogLine(daemon.error().message); return 1; }
//   return (*daemon)->Run() ? 0 : 1;                  // until SIGTERM/SIGINT; SIGHUP reloads
#pragma once

#include <sys/types.h>
#include <sys/un.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit.h"
#include "config.h"
#include "loop.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "socket_file.h"

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

// What --check-config and start-up say about a config: the first error (exit 1), or the
// warnings (unavailable targets), each one line naming FILE:LINE:COL, the target and why.
struct ConfigReport {
  Config config;
  std::vector<std::string> warnings;
};
[[nodiscard]] Result<ConfigReport> CheckConfig(const ServiceOptions& options);

// nsbrokerd --compile-config FD, run by the opener on SIGHUP (docs/PRIVSEP.md): reads and
// parses the options' config file as root, and writes into the memfd FD, sealed, its text
// and target table (target_table.h; returns 0), or the error, FILE:LINE:COL (returns 1).
int CompileConfigInto(const ServiceOptions& options, UniqueFd out);

class OpenerClient;
struct ReloadOffer;
class Server;
class UwsgiListener;

// The running broker: Build does everything that needs privileges (config, audit log,
// targets, sockets); Run serves until SIGTERM/SIGINT; Reload (on SIGHUP) swaps in a new
// config when it loads and fits the descriptor budget, and changes nothing otherwise.
// Readiness goes to $NOTIFY_SOCKET: READY=1 when serving and when a reload is complete (every
// new target opened), RELOADING=1 when one starts, STOPPING=1 at the end (systemd.h).
//
// With run_as, Build splits the process (docs/PRIVSEP.md): this process execs the root opener
// (nsbroker-opener, privsep.h; it answers the server and speaks to systemd), and a forked
// child drops to run_as and returns from Build as the server, whose targets, re-resolutions,
// refreshes and reloads come from the opener (opener_client.h).
class Daemon {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Daemon>> Build(const ServiceOptions& options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  [[nodiscard]] Result<void> Run();
  void Reload();

 private:
  Daemon(const ServiceOptions& options, EventLoop loop);
  // A serving daemon: the loop, with SIGTERM/SIGINT (and, without an opener, SIGHUP) in it.
  [[nodiscard]] static Result<std::unique_ptr<Daemon>> Serving(const ServiceOptions& options,
                                                               bool split);
  // The checks of a reload before the swap: the budget, then the audit log when it changes
  // (opened by `open_audit`); the new log, or null to keep the current one.
  [[nodiscard]] Result<std::unique_ptr<AuditLog>> CheckReload(
      const Config& next,
      const std::function<Result<std::unique_ptr<AuditLog>>(const Config&)>& open_audit);
  // Swaps `next` in; `Ready` once every new target is open.
  void Swap(Config next, std::unique_ptr<AuditLog> audit);
  void Ready(std::uint32_t status);
  // The opener's reload (privilege separation): the same checks, on the bytes it parsed.
  void OnOffer(ReloadOffer offer);
  void OnChannel();

  ServiceOptions options_;
  EventLoop loop_;  // first: destroyed last, after every event of the members below
  std::unique_ptr<OpenerClient> client_;  // this process is a privilege-separated server
  std::unique_ptr<Event> sigterm_, sigint_, sighup_, channel_, stashed_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<UwsgiListener> uwsgi_;
  ScopedSocketFile socket_file_, uwsgi_file_;
  std::string serving_on_;
  std::string failure_;  // why the server stopped when the opener went away
};

}  // namespace nsbroker
