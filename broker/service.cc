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
#include "uwsgi_compat.h"

namespace nsbroker {
namespace {

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

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

Result<std::optional<UniqueFd>> InheritedSocket() {
  const char* pid = getenv("LISTEN_PID");
  const char* fds = getenv("LISTEN_FDS");
  if (pid == nullptr || fds == nullptr || std::to_string(getpid()) != pid) {
    return std::optional<UniqueFd>();
  }
  int count = atoi(fds);
  // Children (none today) must not think the sockets are theirs.
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (count < 1) return std::optional<UniqueFd>();
  UniqueFd fd(kListenFdsStart);
  for (int extra = kListenFdsStart + 1; extra < kListenFdsStart + count; ++extra) close(extra);
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return SysError("LISTEN_FDS: descriptor 3");
  }
  len = sizeof listening;
  getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
  if (type != SOCK_SEQPACKET || !listening) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "LISTEN_FDS: descriptor 3 is not a listening SOCK_SEQPACKET socket");
  }
  if (fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0 ||
      fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) | O_NONBLOCK) != 0) {
    return SysError("LISTEN_FDS: fcntl");
  }
  return std::optional<UniqueFd>(std::move(fd));
}

void Notify(const std::string& state) {
  const char* where = getenv("NOTIFY_SOCKET");
  if (where == nullptr || where[0] == '\0') return;
  std::string path = where;
  if (path[0] != '/' && path[0] != '@') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                            reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    LogLine("NOTIFY_SOCKET " + path + ": " + std::strerror(errno));
  }
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
  Event sighup(loop->base(), SIGHUP, EV_SIGNAL | EV_PERSIST, [&](short) {
    if (serving == nullptr) return;
    Server& server = *serving;
    auto next = LoadServiceConfig(options);
    if (!next) return LogLine("reload failed, keeping the old config: " + next.error().message);
    if (next->socket != server.catalog().config().socket) {
      LogLine("reload: the socket path changes only on restart");
    }
    if (next->uwsgi_socket != server.catalog().config().uwsgi_socket) {
      LogLine("reload: uwsgi_socket changes only on restart");
    }
    std::unique_ptr<AuditLog> next_audit;
    if (next->audit_log != server.catalog().config().audit_log) {
      auto opened = AuditLog::Open(next->audit_log);
      if (!opened) {
        return LogLine("reload failed, keeping the old config: " + opened.error().message);
      }
      next_audit = std::move(*opened);
    }
    auto next_catalog = Catalog::Open(std::move(*next));
    if (!next_catalog) {
      return LogLine("reload failed, keeping the old config: " + next_catalog.error().message);
    }
    std::size_t n = (*next_catalog)->entries().size();
    server.Swap(std::move(*next_catalog), std::move(next_audit));
    LogLine("reloaded " + server.catalog().config().file + ": " + std::to_string(n) + " targets");
    Notify("READY=1");
  });
  sigterm.Add();
  sigint.Add();
  sighup.Add();

  auto config = LoadServiceConfig(options);
  if (!config) {
    LogLine(config.error().message);
    return 1;
  }
  auto audit = AuditLog::Open(config->audit_log);
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
  auto inherited = InheritedSocket();
  if (!inherited) {
    LogLine(inherited.error().message);
    return 1;
  }
  BoundSocket bound;
  UniqueFd listen_fd;
  if (*inherited) {
    listen_fd = std::move(**inherited);
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
  if (const Config& c = (*catalog)->config(); !c.uwsgi_socket.empty()) {
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
              "' to uWSGI (setns-socket format) on " + uwsgi_bound.path);
    }
    serving = &server;
    LogLine("serving " + std::to_string(targets) + " targets on " +
            (bound.path.empty() ? std::string("the socket systemd passed") : bound.path));
    Notify("READY=1");
    if (auto ran = loop->Run(); !ran) {
      LogLine(ran.error().message);
      status = 1;
    }
    serving = nullptr;
    Notify("STOPPING=1");
  }
  UnlinkIfOurs(bound);
  UnlinkIfOurs(uwsgi_bound);
  LogLine("stopped");
  return status;
}

}  // namespace nsbroker
