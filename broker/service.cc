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
#include "ledger.h"
#include "loop.h"
#include "privileges.h"
#include "sandbox.h"
#include "server.h"
#include "systemd.h"
#include "trusted_file.h"
#include "unix_address.h"
#include "uwsgi_compat.h"

namespace nsbroker {

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
  // Whoever may write the directory may replace the socket file with their own: it must be
  // root's all the way down, as pid files are.
  if (auto trusted = CheckTrustedDirectory(dir.empty() ? "/" : dir); !trusted) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "socket " + path + ": " + trusted.error().message);
  }
  return ListenUnixSocket(*addr, SOCK_SEQPACKET, config, "broker");
}

ScopedSocketFile::ScopedSocketFile(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  path_ = path;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
}

ScopedSocketFile::ScopedSocketFile(ScopedSocketFile&& other) noexcept
    : path_(std::exchange(other.path_, {})), dev_(other.dev_), ino_(other.ino_) {}

ScopedSocketFile& ScopedSocketFile::operator=(ScopedSocketFile&& other) noexcept {
  if (this != &other) {
    Unlink();
    path_ = std::exchange(other.path_, {});
    dev_ = other.dev_;
    ino_ = other.ino_;
  }
  return *this;
}

ScopedSocketFile::~ScopedSocketFile() { Unlink(); }

void ScopedSocketFile::Unlink() {
  struct stat st;
  if (path_.empty() || lstat(path_.c_str(), &st) != 0) return;
  if (st.st_dev != dev_ || st.st_ino != ino_) return;
  if (unlink(path_.c_str()) != 0) LogLine("unlink " + path_ + ": " + std::strerror(errno));
  path_.clear();
}

namespace {

std::size_t Listeners(const Config& config) { return config.uwsgi_socket.empty() ? 1 : 2; }

// Whether `config` fits the descriptor budget (ledger.h) before anything is opened.
Result<void> FitsBudget(const Config& config) {
  Ledger ledger(DescriptorBudget());
  ledger.Set(Account::kListeners, Listeners(config));
  std::size_t cost = 0;
  for (const TargetSpec& spec : config.targets) {
    cost += Catalog::Cost(spec, config.run_as.has_value());
  }
  return ledger.Fit(config, cost);
}

// STATUS= for the service manager: what is served, and the counters so far.
std::string StatusText(const Server& server) {
  const Stats& stats = server.stats();
  const Catalog& catalog = server.catalog();
  std::size_t targets = catalog.entries().size();
  return std::to_string(targets) + " targets (" + std::to_string(targets - catalog.unavailable()) +
         " available); " + std::to_string(stats.grants) + " grants, " +
         std::to_string(stats.denials) + " denials, " + std::to_string(stats.errors) + " errors, " +
         std::to_string(stats.active_connections) + " connections";
}

std::vector<std::string> Warnings(const Catalog& catalog) {
  std::vector<std::string> out;
  for (const CatalogEntry& e : catalog.entries()) {
    // oci targets still resolving are found from the loop, and say so then.
    if (!e.gone.empty() && !e.resolving) out.push_back("warning: unavailable: " + e.gone);
  }
  return out;
}

}  // namespace

Result<ConfigReport> CheckConfig(const ServiceOptions& options) {
  auto config = LoadServiceConfig(options);
  if (!config) return std::unexpected(std::move(config.error()));
  if (auto fits = FitsBudget(*config); !fits) return std::unexpected(std::move(fits.error()));
  ConfigReport report;
  auto catalog = Catalog::Open(*config);
  if (!catalog) return std::unexpected(std::move(catalog.error()));
  (*catalog)->ResolveAllNow();  // the containers' state now, a runtime run each
  report.warnings = Warnings(**catalog);
  report.config = std::move(*config);
  return report;
}

Daemon::Daemon(const ServiceOptions& options, EventLoop loop)
    : options_(options), loop_(std::move(loop)) {}

Daemon::~Daemon() {
  uwsgi_.reset();
  server_.reset();
}

Result<std::unique_ptr<Daemon>> Daemon::Build(const ServiceOptions& options) {
  // Peers that hang up must cost us an EPIPE, never the process; sends use MSG_NOSIGNAL too.
  signal(SIGPIPE, SIG_IGN);
  if (auto raised = RaiseFdLimit(); !raised) LogLine(raised.error().message);
  auto loop = EventLoop::Create();
  if (!loop) return std::unexpected(std::move(loop.error()));
  std::unique_ptr<Daemon> d(new Daemon(options, std::move(*loop)));
  // Signals are routed into the loop before the socket exists: once a client can connect,
  // SIGTERM must already mean a clean stop.
  auto stop = [raw = d.get()](short) { raw->loop_.Exit(); };
  event_base* base = d->loop_.base();
  d->sigterm_ = std::make_unique<Event>(base, SIGTERM, EV_SIGNAL | EV_PERSIST, stop);
  d->sigint_ = std::make_unique<Event>(base, SIGINT, EV_SIGNAL | EV_PERSIST, stop);
  d->sighup_ = std::make_unique<Event>(base, SIGHUP, EV_SIGNAL | EV_PERSIST,
                                       [raw = d.get()](short) { raw->Reload(); });
  d->sigterm_->Add();
  d->sigint_->Add();
  d->sighup_->Add();

  auto config = LoadServiceConfig(options);
  if (!config) return std::unexpected(std::move(config.error()));
  if (auto fits = FitsBudget(*config); !fits) return std::unexpected(std::move(fits.error()));
  auto audit = AuditLog::Open(config->audit_log, config->audit_format);
  if (!audit) return MakeError(audit.error().code, config->file + ": " + audit.error().message);
  std::optional<RunAs> run_as = config->run_as;
  // Targets are opened while we still have the privileges to reach them; one that cannot be
  // opened is unavailable with its reason, and the others are served.
  auto catalog = Catalog::Open(std::move(*config));
  if (!catalog) return std::unexpected(std::move(catalog.error()));
  // Without root later, containers must be found now; as root the loop finds them, so that
  // a slow runtime delays no one.
  if (run_as) (*catalog)->ResolveAllNow();
  for (const std::string& warning : Warnings(**catalog)) LogLine(warning);
  const Config& c = (*catalog)->config();
  // Socket activation (systemd.h): the sockets systemd passed, told apart by name.
  auto passed = TakePassedSockets();
  if (!passed) return std::unexpected(std::move(passed.error()));
  UniqueFd listen_fd;
  if (passed->native.valid()) {
    listen_fd = std::move(passed->native);
    d->serving_on_ = "the socket systemd passed";
  } else {
    auto fd = BindSocket(c);
    if (!fd) return std::unexpected(std::move(fd.error()));
    listen_fd = std::move(*fd);
    d->socket_file_ = ScopedSocketFile(c.socket);
    d->serving_on_ = c.socket;
  }
  // uWSGI setns-socket compatibility (uwsgi_compat.h), bound while we still may.
  UniqueFd uwsgi_fd;
  if (passed->uwsgi.valid()) {
    if (c.uwsgi_target.empty()) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "systemd passed a uwsgi socket, but " + c.file + " names no uwsgi_target");
    }
    uwsgi_fd = std::move(passed->uwsgi);
  } else if (!c.uwsgi_socket.empty()) {
    auto fd = BindUwsgiSocket(c);
    if (!fd) return std::unexpected(std::move(fd.error()));
    uwsgi_fd = std::move(*fd);
    d->uwsgi_file_ = ScopedSocketFile(c.uwsgi_socket);
  }
  if (run_as) {
    // The sandbox (sandbox.h): the mount namespace needs root, the rest comes after the drop.
    if (auto prepared = PrepareSandbox(); !prepared) {
      return std::unexpected(std::move(prepared.error()));
    }
    if (auto dropped = DropPrivileges(*run_as); !dropped) {
      return std::unexpected(std::move(dropped.error()));
    }
    if (auto entered = EnterSandbox(); !entered) {
      return std::unexpected(std::move(entered.error()));
    }
  }
  d->server_ =
      std::make_unique<Server>(base, std::move(*catalog), std::move(*audit), options.verbose);
  d->server_->AddListener(std::move(listen_fd));
  if (uwsgi_fd.valid()) {
    d->server_->ChargeListener();
    d->uwsgi_ = std::make_unique<UwsgiListener>(*d->server_, std::move(uwsgi_fd));
    LogLine("serving target '" + d->server_->catalog().config().uwsgi_target +
            "' to uWSGI (setns-socket format) on " +
            (d->uwsgi_file_.path().empty() ? std::string("the socket systemd passed")
                                           : d->uwsgi_file_.path()));
  }
  return d;
}

Result<void> Daemon::Run() {
  const Catalog& catalog = server_->catalog();
  LogLine("serving " + std::to_string(catalog.entries().size()) + " targets (" +
          std::to_string(catalog.unavailable()) + " unavailable) on " + serving_on_ +
          "; descriptor budget " + std::to_string(server_->ledger().budget()));
  NotifyReady(StatusText(*server_));
  auto ran = loop_.Run();
  NotifyStopping();
  uwsgi_.reset();
  server_.reset();
  LogLine("stopped");
  return ran;
}

void Daemon::Reload() {
  // systemd's reload protocol: RELOADING=1 first, READY=1 once done, whatever the outcome.
  NotifyReloading();
  auto failed = [](const std::string& why) {
    LogLine("reload failed, keeping the old config: " + why, LogPriority::kWarning);
    NotifyReady("reload failed: " + why);
  };
  const Config& current = server_->catalog().config();
  auto next = LoadServiceConfig(options_);
  if (!next) return failed(next.error().message);
  if (auto fits = server_->Fits(*next); !fits) return failed(fits.error().message);
  if (next->socket != current.socket) LogLine("reload: the socket path changes only on restart");
  if (next->uwsgi_socket != current.uwsgi_socket) {
    LogLine("reload: uwsgi_socket changes only on restart");
  }
  std::unique_ptr<AuditLog> next_audit;
  if (next->audit_log != current.audit_log || next->audit_format != current.audit_format) {
    auto opened = AuditLog::Open(next->audit_log, next->audit_format);
    if (!opened) return failed(opened.error().message);
    next_audit = std::move(*opened);
  }
  auto start = std::chrono::steady_clock::now();
  Server* server = server_.get();
  server_->Reload(std::move(*next), std::move(next_audit), [server, start] {
    const Catalog& catalog = server->catalog();
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    LogLine("reloaded " + catalog.config().file + ": " + std::to_string(catalog.entries().size()) +
            " targets (" + std::to_string(catalog.unavailable()) + " unavailable) in " +
            std::to_string(took.count()) + " ms");
    NotifyReady(StatusText(*server));
  });
}

}  // namespace nsbroker
