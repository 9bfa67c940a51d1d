// Owns the daemon's life: the listening sockets (bound or inherited from systemd) and their
// files, readiness notification, signals, reload and clean stop. Never handles a request.
//
//   auto daemon = nsbroker::Daemon::Build(options);   // load, open, bind, drop privileges
//   if (!daemon) { LogLine(daemon.error().message); return 1; }
//   return (*daemon)->Run() ? 0 : 1;                  // until SIGTERM/SIGINT; SIGHUP reloads
#pragma once

#include <sys/types.h>
#include <sys/un.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "loop.h"
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

// A socket file this process created: removed when this object dies, unless another
// process has replaced it since (then it is the successor's).
class ScopedSocketFile {
 public:
  ScopedSocketFile() = default;
  explicit ScopedSocketFile(const std::string& path);  // records the file now at `path`
  ScopedSocketFile(ScopedSocketFile&& other) noexcept;
  ScopedSocketFile& operator=(ScopedSocketFile&& other) noexcept;
  ~ScopedSocketFile();
  const std::string& path() const { return path_; }

 private:
  void Unlink();
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// What --check-config and start-up say about a config: the first error (exit 1), or the
// warnings (unavailable targets), each one line naming FILE:LINE:COL, the target and why.
struct ConfigReport {
  Config config;
  std::vector<std::string> warnings;
};
[[nodiscard]] Result<ConfigReport> CheckConfig(const ServiceOptions& options);

class Server;
class UwsgiListener;

// The running broker: Build does everything that needs privileges (config, audit log,
// targets, sockets) and drops them; Run serves until SIGTERM/SIGINT; Reload (on SIGHUP)
// swaps in a new config when it loads and fits the descriptor budget, and changes nothing
// otherwise. Readiness goes to $NOTIFY_SOCKET: READY=1 when serving and when a reload is
// complete (every new target opened), RELOADING=1 when one starts, STOPPING=1 at the end
// (systemd.h).
class Daemon {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Daemon>> Build(const ServiceOptions& options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  [[nodiscard]] Result<void> Run();
  void Reload();

 private:
  explicit Daemon(const ServiceOptions& options, EventLoop loop);

  ServiceOptions options_;
  EventLoop loop_;  // first: destroyed last, after every event of the members below
  std::unique_ptr<Event> sigterm_, sigint_, sighup_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<UwsgiListener> uwsgi_;
  ScopedSocketFile socket_file_, uwsgi_file_;
  std::string serving_on_;
};

}  // namespace nsbroker
