#include "service.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "audit.h"
#include "catalog.h"
#include "loop.h"
#include "privileges.h"
#include "server.h"
#include "systemd.h"
#include "uwsgi_compat.h"

namespace nsbroker {
namespace {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return MakeError(ErrorCode::kInvalidRequest, path + ": socket path too long");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// The socket file we created, so that stopping removes it and not a successor's.
struct BoundSocket {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
};

// STATUS= for the service manager: what is served, and the counters so far.
std::string StatusText(const Server& server) {
  const Stats& stats = server.stats();
  std::size_t available = 0;
  for (const CatalogEntry& entry : server.catalog().entries()) available += entry.gone.empty();
  return std::to_string(server.catalog().entries().size()) + " targets (" +
         std::to_string(available) + " available); " + std::to_string(stats.grants) +
         " grants, " + std::to_string(stats.denials) + " denials, " +
         std::to_string(stats.errors) + " errors, " + std::to_string(stats.active_connections) +
         " connections";
}

void UnlinkIfOurs(const BoundSocket& bound) {
  struct stat st;
  if (bound.path.empty() || lstat(bound.path.c_str(), &st) != 0) return;
  if (st.st_dev != bound.dev || st.st_ino != bound.ino) return;
  if (unlink(bound.path.c_str()) != 0) {
    LogLine("unlink " + bound.path + ": " + std::strerror(errno));
  }
}

}  // namespace

Result<Config> LoadServiceConfig(const ServiceOptions& options) {
  Result<Config> config = options.self && !options.config_given
                              ? Result<Config>(SelfConfig(kDefaultSocketPath))
                              : LoadConfig(options.config_path);
  if (!config) return config;
  if (options.socket) config->socket = *options.socket;
  return config;
}

Result<UniqueFd> ListenUnixSocket(const sockaddr_un& addr, int type, const Config& config,
                                  std::string_view server) {
  const std::string path(addr.sun_path);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidRequest, path + " exists and is not a socket");
    }
    // Probing a live server costs it nothing (a uWSGI server sends its greeting and closes).
    UniqueFd probe(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      return MakeError(ErrorCode::kUnavailable,
                       path + ": another " + std::string(server) + " is serving it");
    }
    if (unlink(path.c_str()) != 0) return SysError("unlink stale socket " + path);
  }
  UniqueFd fd(socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return SysError("socket");
  // Created owner-only, then opened up to socket_mode once the group is right, so that no
  // one outside socket_group can connect in between.
  mode_t old_umask = umask(0177);
  int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  umask(old_umask);
  if (rc != 0) return SysError("bind " + path);
  if (config.socket_group &&
      chown(path.c_str(), static_cast<uid_t>(-1), *config.socket_group) != 0) {
    return SysError("chown " + path);
  }
  if (chmod(path.c_str(), config.socket_mode) != 0) return SysError("chmod " + path);
  if (listen(fd.get(), SOMAXCONN) != 0) return SysError("listen " + path);
  return fd;
}

Result<UniqueFd> BindSocket(const Config& config) {
  const std::string& path = config.socket;
  auto addr = UnixAddress(path);
  if (!addr) return std::unexpected(std::move(addr.error()));
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return SysError("mkdir " + dir);
  }
  return ListenUnixSocket(*addr, SOCK_SEQPACKET, config, "broker");
}

int RunService(const ServiceOptions& options) {
  // Peers that hang up must cost us an EPIPE, never the process; sends use MSG_NOSIGNAL too.
  signal(SIGPIPE, SIG_IGN);
  if (auto raised = RaiseFdLimit(); !raised) LogLine(raised.error().message);

  // Signals are routed into the loop before the socket exists: once a client can connect,
  // SIGTERM must already mean a clean stop.
  auto loop = EventLoop::Create();
  if (!loop) {
    LogLine(loop.error().message);
    return 1;
  }
  Server* serving = nullptr;
  auto stop = [&](short) { loop->Exit(); };
  Event sigterm(loop->base(), SIGTERM, EV_SIGNAL | EV_PERSIST, stop);
  Event sigint(loop->base(), SIGINT, EV_SIGNAL | EV_PERSIST, stop);
  // Reload: build the new catalog completely, then swap; any failure keeps the old one.
  auto reload = [&](Server& server) {
    auto next = LoadServiceConfig(options);
    if (!next) return LogLine("reload failed, keeping the old config: " + next.error().message,
                   LogPriority::kWarning);
    if (next->socket != server.catalog().config().socket) {
      LogLine("reload: the socket path changes only on restart");
    }
    if (next->uwsgi_socket != server.catalog().config().uwsgi_socket) {
      LogLine("reload: uwsgi_socket changes only on restart");
    }
    std::unique_ptr<AuditLog> next_audit;
    if (next->audit_log != server.catalog().config().audit_log ||
        next->audit_format != server.catalog().config().audit_format) {
      auto opened = AuditLog::Open(next->audit_log, next->audit_format);
      if (!opened) {
        return LogLine("reload failed, keeping the old config: " + opened.error().message,
                       LogPriority::kWarning);
      }
      next_audit = std::move(*opened);
    }
    auto next_catalog = Catalog::Open(std::move(*next));
    if (!next_catalog) {
      return LogLine("reload failed, keeping the old config: " + next_catalog.error().message,
                     LogPriority::kWarning);
    }
    std::size_t n = (*next_catalog)->entries().size();
    server.Swap(std::move(*next_catalog), std::move(next_audit));
    LogLine("reloaded " + server.catalog().config().file + ": " + std::to_string(n) + " targets");
  };
  // systemd's reload protocol: RELOADING=1 first, READY=1 once done, whatever the outcome.
  Event sighup(loop->base(), SIGHUP, EV_SIGNAL | EV_PERSIST, [&](short) {
    if (serving == nullptr) return;
    NotifyReloading();
    reload(*serving);
    NotifyReady(StatusText(*serving));
  });
  sigterm.Add();
  sigint.Add();
  sighup.Add();

  auto config = LoadServiceConfig(options);
  if (!config) {
    LogLine(config.error().message);
    return 1;
  }
  auto audit = AuditLog::Open(config->audit_log, config->audit_format);
  if (!audit) {
    LogLine(config->file + ": " + audit.error().message);
    return 1;
  }
  std::optional<RunAs> run_as = config->run_as;
  std::string socket_path = config->socket;
  // Targets are opened while we still have the privileges to reach them.
  auto catalog = Catalog::Open(std::move(*config));
  if (!catalog) {
    LogLine(catalog.error().message);
    return 1;
  }
  auto passed = TakePassedSockets();
  if (!passed) {
    LogLine(passed.error().message);
    return 1;
  }
  BoundSocket bound;
  UniqueFd listen_fd;
  if (passed->native.valid()) {
    listen_fd = std::move(passed->native);
  } else {
    auto fd = BindSocket((*catalog)->config());
    if (!fd) {
      LogLine(fd.error().message);
      return 1;
    }
    listen_fd = std::move(*fd);
    struct stat st;
    if (lstat(socket_path.c_str(), &st) == 0) bound = {socket_path, st.st_dev, st.st_ino};
  }
  // uWSGI setns-socket compatibility (uwsgi_compat.h), bound while we still may.
  BoundSocket uwsgi_bound;
  UniqueFd uwsgi_fd;
  if (const Config& c = (*catalog)->config(); passed->uwsgi.valid()) {
    if (c.uwsgi_target.empty()) {
      LogLine("systemd passed a uwsgi socket, but " + c.file + " names no uwsgi_target");
      return 1;
    }
    uwsgi_fd = std::move(passed->uwsgi);
  } else if (!c.uwsgi_socket.empty()) {
    auto fd = BindUwsgiSocket(c);
    if (!fd) {
      LogLine(fd.error().message);
      UnlinkIfOurs(bound);
      return 1;
    }
    uwsgi_fd = std::move(*fd);
    struct stat st;
    if (lstat(c.uwsgi_socket.c_str(), &st) == 0) {
      uwsgi_bound = {c.uwsgi_socket, st.st_dev, st.st_ino};
    }
  }
  if (run_as) {
    if (auto dropped = DropPrivileges(*run_as); !dropped) {
      LogLine(dropped.error().message);
      UnlinkIfOurs(bound);
      UnlinkIfOurs(uwsgi_bound);
      return 1;
    }
  }

  std::size_t targets = (*catalog)->entries().size();
  int status = 0;
  {
    Server server(loop->base(), std::move(*catalog), std::move(*audit), options.verbose);
    server.AddListener(std::move(listen_fd));
    std::unique_ptr<UwsgiListener> uwsgi;
    if (uwsgi_fd.valid()) {
      uwsgi = std::make_unique<UwsgiListener>(server, std::move(uwsgi_fd));
      LogLine("serving target '" + server.catalog().config().uwsgi_target +
              "' to uWSGI (setns-socket format) on " +
              (uwsgi_bound.path.empty() ? std::string("the socket systemd passed")
                                        : uwsgi_bound.path));
    }
    serving = &server;
    LogLine("serving " + std::to_string(targets) + " targets on " +
            (bound.path.empty() ? std::string("the socket systemd passed") : bound.path));
    NotifyReady(StatusText(server));
    if (auto ran = loop->Run(); !ran) {
      LogLine(ran.error().message);
      status = 1;
    }
    serving = nullptr;
    NotifyStopping();
  }
  UnlinkIfOurs(bound);
  UnlinkIfOurs(uwsgi_bound);
  LogLine("stopped");
  return status;
}

}  // namespace nsbroker
