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
#include "opener_client.h"
#include "privileges.h"
#include "privsep.h"
#include "sandbox.h"
#include "sealed_memfd.h"
#include "server.h"
#include "systemd.h"
#include "target_table.h"
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

namespace {

std::size_t Listeners(const Config& config) { return config.uwsgi_socket.empty() ? 1 : 2; }

// Whether `config` fits the descriptor budget (ledger.h) before anything is opened.
Result<void> FitsBudget(const Config& config) {
  Ledger ledger(DescriptorBudget());
  ledger.Set(Account::kListeners, Listeners(config));
  std::size_t cost = 0;
  for (const TargetSpec& spec : config.targets) {
    cost += Catalog::Cost(spec);
  }
  return ledger.Fit(config, cost);
}

ServingFigures Figures(const Server& server) {
  const Stats& stats = server.stats();
  const Catalog& catalog = server.catalog();
  std::size_t targets = catalog.entries().size();
  return {.targets = targets,
          .available = targets - catalog.unavailable(),
          .grants = stats.grants,
          .denials = stats.denials,
          .errors = stats.errors,
          .connections = stats.active_connections};
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
  // Targets are opened as start-up opens them: with run_as, the root opener opens them the
  // same way as without it (nothing is held before a drop).
  Config checked = *config;
  checked.run_as.reset();
  if (auto fits = FitsBudget(checked); !fits) return std::unexpected(std::move(fits.error()));
  ConfigReport report;
  auto catalog = Catalog::Open(std::move(checked));
  if (!catalog) return std::unexpected(std::move(catalog.error()));
  (*catalog)->ResolveAllNow();  // the containers' state now, a runtime run each
  report.warnings = Warnings(**catalog);
  report.config = std::move(*config);
  return report;
}

int CompileConfigInto(const ServiceOptions& options, UniqueFd out) {
  auto text = ReadConfigFile(options.config_path);
  Result<Config> config = text ? ParseConfig(*text, options.config_path)
                               : Result<Config>(std::unexpected(text.error()));
  std::string bytes = config ? EncodeCompiledConfig({.text = std::move(*text), .table = *config})
                             : config.error().message;
  if (auto written = WriteSealed(out, bytes); !written) {
    LogLine("--compile-config: " + written.error().message, LogPriority::kError);
    return 2;
  }
  return config ? 0 : 1;
}

Daemon::Daemon(const ServiceOptions& options, EventLoop loop)
    : options_(options), loop_(std::move(loop)) {}

Daemon::~Daemon() {
  uwsgi_.reset();
  server_.reset();
}

Result<std::unique_ptr<Daemon>> Daemon::Serving(const ServiceOptions& options, bool split) {
  auto loop = EventLoop::Create();
  if (!loop) return std::unexpected(std::move(loop.error()));
  std::unique_ptr<Daemon> d(new Daemon(options, std::move(*loop)));
  // Signals are routed into the loop before the socket exists: once a client can connect,
  // SIGTERM must already mean a clean stop.
  auto stop = [raw = d.get()](short) { raw->loop_.Exit(); };
  event_base* base = d->loop_.base();
  d->sigterm_ = std::make_unique<Event>(base, SIGTERM, EV_SIGNAL | EV_PERSIST, stop);
  d->sigint_ = std::make_unique<Event>(base, SIGINT, EV_SIGNAL | EV_PERSIST, stop);
  d->sigterm_->Add();
  d->sigint_->Add();
  if (split) {
    // Reloads are the opener's (systemd signals its MainPID); one sent here changes nothing.
    signal(SIGHUP, SIG_IGN);
  } else {
    d->sighup_ = std::make_unique<Event>(base, SIGHUP, EV_SIGNAL | EV_PERSIST,
                                         [raw = d.get()](short) { raw->Reload(); });
    d->sighup_->Add();
  }
  return d;
}

Result<std::unique_ptr<Daemon>> Daemon::Build(const ServiceOptions& options) {
  // Peers that hang up must cost us an EPIPE, never the process; sends use MSG_NOSIGNAL too.
  signal(SIGPIPE, SIG_IGN);
  if (auto raised = RaiseFdLimit(); !raised) LogLine(raised.error().message);
  auto config = LoadServiceConfig(options);
  if (!config) return std::unexpected(std::move(config.error()));
  // With run_as the process splits after binding: until each half takes the signals its own
  // way, they wait blocked. The server's targets come from the opener and are not held.
  std::optional<RunAs> run_as = std::exchange(config->run_as, std::nullopt);
  std::unique_ptr<Daemon> d;
  std::optional<OpenerFiles> opener;
  if (run_as) {
    // Found and checked first: a missing or untrusted opener fails start-up before the fork.
    auto found = FindOpener();
    if (!found) return std::unexpected(std::move(found.error()));
    opener = std::move(*found);
    BlockDaemonSignals();
  } else {
    auto serving = Serving(options, false);
    if (!serving) return std::unexpected(std::move(serving.error()));
    d = std::move(*serving);
  }
  if (auto fits = FitsBudget(*config); !fits) return std::unexpected(std::move(fits.error()));
  auto audit = AuditLog::Open(config->audit_log, config->audit_format);
  if (!audit) return MakeError(audit.error().code, config->file + ": " + audit.error().message);
  // Without run_as, targets are opened now, as root; one that cannot be opened is
  // unavailable with its reason, and the others are served.
  std::unique_ptr<Catalog> catalog;
  if (!run_as) {
    auto opened = Catalog::Open(std::move(*config));
    if (!opened) return std::unexpected(std::move(opened.error()));
    catalog = std::move(*opened);
    for (const std::string& warning : Warnings(*catalog)) LogLine(warning);
  }
  const Config& c = catalog ? catalog->config() : *config;
  // Socket activation (systemd.h): the sockets systemd passed, told apart by name.
  auto passed = TakePassedSockets();
  if (!passed) return std::unexpected(std::move(passed.error()));
  UniqueFd listen_fd;
  ScopedSocketFile socket_file, uwsgi_file;
  std::string serving_on;
  if (passed->native.valid()) {
    listen_fd = std::move(passed->native);
    serving_on = "the socket systemd passed";
  } else {
    auto fd = BindSocket(c);
    if (!fd) return std::unexpected(std::move(fd.error()));
    listen_fd = std::move(*fd);
    socket_file = ScopedSocketFile(c.socket);
    serving_on = c.socket;
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
    uwsgi_file = ScopedSocketFile(c.uwsgi_socket);
  }
  std::unique_ptr<OpenerClient> client;
  if (run_as) {
    auto forked = ForkServer(SIGTERM);
    if (!forked) return std::unexpected(std::move(forked.error()));
    if (forked->pid > 0) {
      // This process becomes the opener: it removes the socket files at the end, and serves
      // nothing. The listeners and the audit log are close-on-exec: the server has them.
      LogLine("opener: server pid " + std::to_string(forked->pid) + " runs as " + run_as->name);
      Handover handover{.config_path = options.config_path,
                        .server = forked->pid,
                        .socket_file = socket_file.id(),
                        .uwsgi_file = uwsgi_file.id(),
                        .config = std::move(*config)};
      handover.config.run_as = std::move(*run_as);
      auto exec = ExecOpener(std::move(*opener), std::move(handover), std::move(forked->channel));
      return std::unexpected(std::move(exec.error()));
    }
    opener.reset();  // the server runs neither executable
    // The server. The socket files are the opener's; readiness goes through it.
    socket_file.Forget();
    uwsgi_file.Forget();
    unsetenv("NOTIFY_SOCKET");
    // The sandbox (sandbox.h): the mount namespace and the bounding set need root, the rest
    // comes right after the drop, before the server reads a byte from the opener or a user.
    if (auto prepared = PrepareSandbox(); !prepared) {
      return std::unexpected(std::move(prepared.error()));
    }
    if (auto dropped = DropPrivileges(*run_as); !dropped) {
      return std::unexpected(std::move(dropped.error()));
    }
    if (auto entered = EnterSandbox(); !entered) {
      return std::unexpected(std::move(entered.error()));
    }
    client = std::make_unique<OpenerClient>(std::move(forked->channel), *config);
    auto opened = Catalog::Open(std::move(*config), client->Opener());
    if (!opened) return std::unexpected(std::move(opened.error()));
    catalog = std::move(*opened);
    catalog->ResolveAllNow();  // the containers' state, asked of the opener before serving
    for (const std::string& warning : Warnings(*catalog)) LogLine(warning);
    auto serving = Serving(options, true);
    if (!serving) return std::unexpected(std::move(serving.error()));
    d = std::move(*serving);
    UnblockDaemonSignals();
  }
  d->socket_file_ = std::move(socket_file);
  d->uwsgi_file_ = std::move(uwsgi_file);
  d->serving_on_ = std::move(serving_on);
  event_base* base = d->loop_.base();
  d->server_ =
      std::make_unique<Server>(base, std::move(catalog), std::move(*audit), options.verbose);
  if (client) {
    Daemon* raw = d.get();
    client->set_lost([raw](const std::string& why) {
      raw->failure_ = "the opener is gone (" + why + ")";
      raw->loop_.Exit();
    });
    client->set_on_stashed([raw] { raw->stashed_->Activate(); });
    d->server_->set_resolver(client->BackgroundResolver());
    d->channel_ = std::make_unique<Event>(base, client->fd(), EV_READ | EV_PERSIST,
                                          [raw](short) { raw->OnChannel(); });
    d->channel_->Add();
    d->stashed_ = std::make_unique<Event>(base, -1, 0, [raw](short) {
      if (auto offer = raw->client_->TakeStashed()) raw->OnOffer(std::move(*offer));
    });
    d->client_ = std::move(client);
    // A SIGHUP may have reached the opener while the targets were opening: its offer waits.
    d->stashed_->Activate();
  }
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

void Daemon::Ready(std::uint32_t status) {
  ServingFigures f = Figures(*server_);
  if (!client_) return NotifyReady(StatusText(f));
  std::uint64_t numbers[privsep::kNumbers] = {};
  numbers[privsep::kTargets] = f.targets;
  numbers[privsep::kAvailable] = f.available;
  numbers[privsep::kGrants] = f.grants;
  numbers[privsep::kDenials] = f.denials;
  numbers[privsep::kErrors] = f.errors;
  numbers[privsep::kConnections] = f.connections;
  client_->Ready(status, numbers);
}

Result<void> Daemon::Run() {
  const Catalog& catalog = server_->catalog();
  LogLine("serving " + std::to_string(catalog.entries().size()) + " targets (" +
          std::to_string(catalog.unavailable()) + " unavailable) on " + serving_on_ +
          "; descriptor budget " + std::to_string(server_->ledger().budget()));
  Ready(privsep::kStarted);
  auto ran = loop_.Run();
  if (!client_) NotifyStopping();  // a privilege-separated server's opener says it
  uwsgi_.reset();
  server_.reset();
  if (!failure_.empty()) {
    LogLine("stopped: " + failure_, LogPriority::kError);
    return MakeError(ErrorCode::kUnavailable, failure_);
  }
  LogLine("stopped");
  return ran;
}

Result<std::unique_ptr<AuditLog>> Daemon::CheckReload(
    const Config& next,
    const std::function<Result<std::unique_ptr<AuditLog>>(const Config&)>& open_audit) {
  const Config& current = server_->catalog().config();
  if (auto fits = server_->Fits(next); !fits) return std::unexpected(std::move(fits.error()));
  if (next.socket != current.socket) LogLine("reload: the socket path changes only on restart");
  if (next.uwsgi_socket != current.uwsgi_socket) {
    LogLine("reload: uwsgi_socket changes only on restart");
  }
  if (next.audit_log == current.audit_log && next.audit_format == current.audit_format) {
    return std::unique_ptr<AuditLog>();
  }
  return open_audit(next);
}

void Daemon::Swap(Config next, std::unique_ptr<AuditLog> audit) {
  auto start = std::chrono::steady_clock::now();
  server_->Reload(std::move(next), std::move(audit), [this, start] {
    const Catalog& catalog = server_->catalog();
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    LogLine("reloaded " + catalog.config().file + ": " + std::to_string(catalog.entries().size()) +
            " targets (" + std::to_string(catalog.unavailable()) + " unavailable) in " +
            std::to_string(took.count()) + " ms");
    Ready(privsep::kReloaded);
  });
}

void Daemon::Reload() {
  // systemd's reload protocol: RELOADING=1 first, READY=1 once done, whatever the outcome.
  NotifyReloading();
  auto failed = [](const std::string& why) {
    LogLine("reload failed, keeping the old config: " + why, LogPriority::kWarning);
    NotifyReady("reload failed: " + why);
  };
  auto next = LoadServiceConfig(options_);
  if (!next) return failed(next.error().message);
  KeepRunAs(*next, std::nullopt);  // this daemon was started without run_as
  auto audit = CheckReload(
      *next, [](const Config& c) { return AuditLog::Open(c.audit_log, c.audit_format); });
  if (!audit) return failed(audit.error().message);
  Swap(std::move(*next), std::move(*audit));
}

void Daemon::OnChannel() {
  auto offer = client_->Receive();
  if (!offer) return;  // lost: the loop is ending
  if (*offer) OnOffer(std::move(**offer));
}

void Daemon::OnOffer(ReloadOffer offer) {
  // The opener said RELOADING=1 and parsed these very bytes; it says READY=1 when told.
  auto refuse = [&](privsep::SwitchStatus status, const std::string& why) {
    LogLine("reload failed, keeping the old config: " + why, LogPriority::kWarning);
    client_->Switched(offer.generation, status);
  };
  auto next = ParseConfig(offer.text, options_.config_path);
  if (!next) return refuse(privsep::SwitchStatus::kUnparsable, next.error().message);
  if (options_.socket) next->socket = *options_.socket;
  next->run_as.reset();
  bool fits = server_->Fits(*next).has_value();
  auto audit = CheckReload(*next, [&](const Config& c) {
    // A file log comes opened from the opener (as root); stderr and syslog need no file.
    return AuditLog::Adopt(c.audit_log, c.audit_format, std::move(offer.audit));
  });
  if (!audit) {
    return refuse(fits ? privsep::SwitchStatus::kAuditLog : privsep::SwitchStatus::kOverBudget,
                  audit.error().message);
  }
  // Requests from here on name the new config's targets; the opener learns it first.
  client_->Serve(offer.generation, *next);
  client_->Switched(offer.generation, privsep::SwitchStatus::kAccepted);
  Swap(std::move(*next), std::move(*audit));
}

}  // namespace nsbroker
