#include "opener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "datagram.h"
#include "log.h"
#include "process.h"
#include "sealed_memfd.h"
#include "systemd.h"

namespace nsbroker {
namespace {

using Clock = std::chrono::steady_clock;

// A table's fixed fields per target can outweigh the text that declared them.
constexpr std::size_t kMaxCompiledBytes = 4 * kMaxConfigBytes;
// What the compile step says when the config does not parse: one FILE:LINE:COL message.
constexpr std::size_t kMaxCompileError = 64 * 1024;

// Set by the handlers, which run only inside ppoll (the signals are blocked elsewhere).
volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_reload = 0;
volatile sig_atomic_t g_child = 0;

void OnSignal(int sig) {
  if (sig == SIGHUP) {
    g_reload = 1;
  } else if (sig == SIGCHLD) {
    g_child = 1;
  } else {
    g_stop = 1;
  }
}

std::string ExitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

const char* SwitchRefusal(std::uint32_t status) {
  switch (static_cast<privsep::SwitchStatus>(status)) {
    case privsep::SwitchStatus::kUnparsable:
      return "the server could not parse it";
    case privsep::SwitchStatus::kOverBudget:
      return "it does not fit the server's descriptor budget (see the log)";
    case privsep::SwitchStatus::kAuditLog:
      return "the server could not take the new audit log (see the log)";
    case privsep::SwitchStatus::kAccepted:
      break;
  }
  return "the server refused it";
}

void SetError(privsep::Reply& reply, const Error& error) {
  reply.error = static_cast<std::uint32_t>(error.code) + 1;
  reply.sys_errno = error.sys_errno;
  privsep::SetText(reply, error.message);
}

}  // namespace

Result<OpenerSetup> TakeHandover(UniqueFd handover) {
  auto bytes = ReadSealed(handover, kMaxCompiledBytes, "the hand-over");
  if (!bytes) return std::unexpected(std::move(bytes.error()));
  auto h = DecodeHandover(*bytes);
  if (!h) return std::unexpected(std::move(h.error()));
  OpenerSetup setup{.config_path = std::move(h->config_path),
                    .channel = UniqueFd(h->channel),
                    .self_exe = UniqueFd(h->self_exe),
                    .server = h->server,
                    .socket_file = ScopedSocketFile(std::move(h->socket_file)),
                    .uwsgi_file = ScopedSocketFile(std::move(h->uwsgi_file))};
  for (const UniqueFd* fd : {&setup.channel, &setup.self_exe}) {
    if (fcntl(fd->get(), F_SETFD, FD_CLOEXEC) != 0) {
      return SysError(ErrorCode::kInvalidRequest, "descriptor " + std::to_string(fd->get()));
    }
  }
  struct stat st;
  if (fstat(setup.channel.get(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidRequest, "the hand-over's channel is not a socket");
  }
  if (fstat(setup.self_exe.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidRequest, "the hand-over's nsbrokerd is not a file");
  }
  if (!h->config.run_as) return MakeError(ErrorCode::kInvalidRequest, "a hand-over without run_as");
  setup.run_as = std::move(*h->config.run_as);
  h->config.run_as.reset();
  setup.config = std::move(h->config);
  return setup;
}

Opener::Opener(OpenerSetup setup) : setup_(std::move(setup)) {
  current_.id = 1;
  current_.config = std::move(setup_.config);
  for (std::size_t i = 0; i < current_.config.targets.size(); ++i) {
    current_.slots.push_back(std::make_shared<Slot>());
  }
}

int Opener::Run() {
  struct sigaction action{};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  for (int sig : kDaemonSignals) sigaction(sig, &action, nullptr);
  sigset_t waiting;
  sigprocmask(SIG_SETMASK, nullptr, &waiting);
  for (int sig : kDaemonSignals) sigdelset(&waiting, sig);
  // The server may have exited before the handlers were set: its SIGCHLD waits pending.
  g_child = 1;
  // Replies must never block the opener: a full queue means the server broke the protocol.
  fcntl(setup_.channel.get(), F_SETFL, fcntl(setup_.channel.get(), F_GETFL) | O_NONBLOCK);
  while (!exit_) {
    if (g_child != 0) {
      g_child = 0;
      OnServerExit();
      if (exit_) break;
    }
    if (g_stop != 0) {
      g_stop = 0;
      Stop();
    }
    if (g_reload != 0) {
      g_reload = 0;
      if (!stopping_) Reload();
    }
    if (exit_) break;
    auto now = Clock::now();
    if (now - second_ >= std::chrono::seconds(1)) {
      second_ = now;
      requests_this_second_ = 0;
    }
    bool throttled = requests_this_second_ >= kMaxOpenerRequestsPerSecond;
    std::optional<Clock::time_point> wake;
    if (throttled) wake = second_ + std::chrono::seconds(1);
    if (stopping_ || closed_) {
      if (stop_deadline_ == Clock::time_point{}) stop_deadline_ = now + kServerStopTimeout;
      if (now >= stop_deadline_) {
        LogLine("opener: the server did not exit in time; killing it", LogPriority::kWarning);
        if (setup_.server > 0) kill(setup_.server, SIGKILL);
        stop_deadline_ = now + kServerStopTimeout;
      }
      wake = wake ? std::min(*wake, stop_deadline_) : stop_deadline_;
    }
    timespec timeout{};
    if (wake) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*wake - now);
      left = std::max(left, std::chrono::nanoseconds(0));
      timeout.tv_sec = static_cast<time_t>(left.count() / 1000000000);
      timeout.tv_nsec = static_cast<long>(left.count() % 1000000000);
    }
    pollfd p{(throttled || closed_) ? -1 : setup_.channel.get(), POLLIN, 0};
    int n = ppoll(&p, 1, wake ? &timeout : nullptr, &waiting);
    if (n <= 0) continue;  // a signal (handled above) or the timeout
    if ((p.revents & POLLIN) != 0) {
      OnRequest();
    } else if ((p.revents & (POLLHUP | POLLERR)) != 0) {
      closed_ = true;
    }
  }
  return *exit_;
}

void Opener::OnServerExit() {
  if (setup_.server <= 0) return;
  int status = 0;
  pid_t got = waitpid(setup_.server, &status, WNOHANG);
  if (got != setup_.server) return;
  LogLine("opener: the server (pid " + std::to_string(setup_.server) + ") " + ExitStatus(status),
          WIFEXITED(status) && WEXITSTATUS(status) == 0 ? LogPriority::kInfo : LogPriority::kError);
  setup_.server = 0;
  exit_ = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

void Opener::Stop() {
  if (stopping_) return;
  stopping_ = true;
  NotifyStopping();
  if (setup_.server > 0) kill(setup_.server, SIGTERM);
  stop_deadline_ = Clock::now() + kServerStopTimeout;
}

void Opener::Fatal(const std::string& why) {
  LogLine("opener: " + why + "; stopping the server", LogPriority::kError);
  if (setup_.server > 0) {
    kill(setup_.server, SIGKILL);
    int status = 0;
    while (waitpid(setup_.server, &status, 0) < 0 && errno == EINTR) {
    }
    setup_.server = 0;
  }
  exit_ = 1;
}

void Opener::OnRequest() {
  auto datagram = ReceiveDatagram(setup_.channel, 0, sizeof(privsep::Request));
  if (!datagram) {
    const Error& e = datagram.error();
    if (e.sys_errno == EAGAIN || e.sys_errno == EINTR) return;
    if (e.code == ErrorCode::kUnavailable) {
      closed_ = true;  // end of file: the server is exiting; its exit status decides ours
      return;
    }
    return Fatal("a malformed request: " + e.message);
  }
  auto request = privsep::Decode<privsep::Request>(datagram->bytes);
  if (!request) {
    return Fatal("a request of " + std::to_string(datagram->bytes.size()) +
                 " bytes that is not one");
  }
  ++requests_this_second_;
  Answer(*request);
}

Opener::Generation* Opener::Find(std::uint64_t id) {
  if (id == current_.id) return &current_;
  if (offered_ && id == offered_->id) return offered_.get();
  return nullptr;
}

void Opener::Answer(const privsep::Request& request) {
  switch (request.op) {
    case privsep::Op::kOpen:
    case privsep::Op::kFetch: {
      Generation* generation = Find(request.generation);
      if (generation == nullptr) {
        return Fatal("a request for config generation " + std::to_string(request.generation) +
                     ", which is not served (" + std::to_string(current_.id) + " is)");
      }
      if (request.index >= generation->config.targets.size()) {
        return Fatal("a request for target index " + std::to_string(request.index) + " of " +
                     std::to_string(generation->config.targets.size()));
      }
      if (request.op == privsep::Op::kOpen) return Open(*generation, request);
      return Fetch(*generation, request);
    }
    case privsep::Op::kSwitched:
      return OnSwitched(request);
    case privsep::Op::kReady: {
      const std::uint64_t* n = request.numbers;
      NotifyReady(StatusText({.targets = n[privsep::kTargets],
                              .available = n[privsep::kAvailable],
                              .grants = n[privsep::kGrants],
                              .denials = n[privsep::kDenials],
                              .errors = n[privsep::kErrors],
                              .connections = n[privsep::kConnections]}));
      // A SIGHUP that came while the last reload was opening its targets.
      if (request.status == privsep::kReloaded && reload_again_) {
        reload_again_ = false;
        Reload();
      }
      return;
    }
    case privsep::Op::kReload:
      break;
  }
  Fatal("a request of unknown type " + std::to_string(static_cast<std::uint32_t>(request.op)));
}

void Opener::Open(Generation& generation, const privsep::Request& request) {
  if (request.kinds != 0 || request.status != 0) return Fatal("an open request with kinds set");
  const TargetSpec& spec = generation.config.targets[request.index];
  privsep::Reply reply{.op = privsep::Op::kOpen,
                       .index = request.index,
                       .seq = request.seq,
                       .generation = request.generation};
  // Opening again is re-resolution: the old handle goes whatever the outcome.
  Slot& slot = *generation.slots[request.index];
  slot.handle.reset();
  auto opened = setup_.open(spec);
  if (!opened) {
    SetError(reply, opened.error());
    return Send(reply, {});
  }
  TargetHandlePtr handle = std::move(*opened);
  std::vector<int> fds;
  std::optional<JailEntry> jail;
  GrantSetPtr held = handle->held();
  if (spec.source == SourceType::kJail) {
    // Made now, as root: a jail descriptor carries its creator's credential (jail_target.h).
    auto entry = handle->OpenJail(/*descriptor=*/true);
    if (!entry) {
      SetError(reply, entry.error());
      return Send(reply, {});
    }
    jail = std::move(*entry);
    reply.flags = privsep::kJailFlag;
    reply.jid = jail->jid;
    privsep::SetText(reply, jail->name);
    if (jail->descriptor.valid()) {
      reply.kinds[fds.size()] = static_cast<std::uint8_t>(NsKind::kJail);
      fds.push_back(jail->descriptor.get());
    }
  } else if (held) {
    // self, netns, paths: opened and checked by path (Describe), sent as they are.
    reply.flags = privsep::kHeld;
    for (const EntryFd& e : held->entries) {
      if (fds.size() == privsep::kMaxEntries) return Fatal("a held set beyond the reply's room");
      reply.kinds[fds.size()] = static_cast<std::uint8_t>(e.kind);
      fds.push_back(e.fd.get());
    }
  } else if (handle->watch_fd() >= 0) {
    reply.flags = privsep::kPidfd;
    reply.pid = static_cast<std::int32_t>(handle->pid());
    privsep::SetText(reply, handle->Resolved());
    fds.push_back(handle->watch_fd());
  }
  reply.count = static_cast<std::uint32_t>(fds.size());
  slot.handle = std::move(handle);
  Send(reply, fds);
}

void Opener::Fetch(Generation& generation, const privsep::Request& request) {
  const TargetSpec& spec = generation.config.targets[request.index];
  KindSet kinds = request.kinds;
  if (kinds == 0 || (kinds & ~spec.expose) != 0 || request.status != 0) {
    return Fatal("a fetch of kinds " + std::to_string(kinds) + " from target '" + spec.name +
                 "', which exposes " + std::to_string(spec.expose));
  }
  privsep::Reply reply{.op = privsep::Op::kFetch,
                       .index = request.index,
                       .seq = request.seq,
                       .generation = request.generation};
  const TargetHandlePtr& handle = generation.slots[request.index]->handle;
  if (!handle) {
    SetError(reply, {ErrorCode::kUnavailable, 0, "target '" + spec.name + "' is not open"});
    return Send(reply, {});
  }
  auto entries = handle->Open(kinds);
  if (!entries) {
    SetError(reply, entries.error());
    return Send(reply, {});
  }
  std::vector<UniqueFd> checked;
  std::vector<int> fds;
  for (EntryFd& e : *entries) {
    if (fds.size() == privsep::kMaxEntries) return Fatal("a fetch beyond the reply's room");
    // Every descriptor is checked to be what its kind says before it leaves (targets.h).
    auto entry = VerifyEntry(e.kind, std::move(e.fd),
                             "target '" + spec.name + "' " + std::string(KindName(e.kind)));
    if (!entry) {
      SetError(reply, entry.error());
      return Send(reply, {});
    }
    reply.kinds[fds.size()] = static_cast<std::uint8_t>(e.kind);
    fds.push_back(entry->fd.get());
    checked.push_back(std::move(entry->fd));
  }
  reply.count = static_cast<std::uint32_t>(fds.size());
  Send(reply, fds);
}

void Opener::Send(const privsep::Reply& reply, const std::vector<int>& fds) {
  auto sent = SendDatagram(setup_.channel, privsep::Bytes(reply), fds);
  if (sent) return;
  // One reply per request, read before the next request: a full queue means the server
  // sends without reading (a flood), which only a compromised server does.
  if (sent.error().sys_errno == EAGAIN) return Fatal("the server does not read its replies");
  closed_ = true;  // EPIPE: the server is gone; its exit status decides ours
}

void Opener::Reload() {
  if (offered_) {
    reload_again_ = true;  // after the offered one is served
    return;
  }
  // systemd's reload protocol: RELOADING=1 first, READY=1 once done, whatever the outcome.
  NotifyReloading();
  auto failed = [this](const std::string& why) {
    LogLine("reload failed, keeping the old config: " + why, LogPriority::kWarning);
    NotifyReady("reload failed: " + why);
    if (reload_again_) {
      reload_again_ = false;
      g_reload = 1;
    }
  };
  auto compiled = Compile();
  if (!compiled) return failed(compiled.error().message);
  Config& next = compiled->table;
  KeepRunAs(next, setup_.run_as);
  const Config& now = current_.config;
  std::vector<int> fds;
  auto memfd = SealedMemfd("nsbroker.conf", compiled->text);
  if (!memfd) return failed(memfd.error().message);
  fds.push_back(memfd->get());
  privsep::Reply reply{.op = privsep::Op::kReload, .generation = current_.id + 1};
  UniqueFd audit;
  if (next.audit_log != now.audit_log || next.audit_format != now.audit_format) {
    // Opened here, as root, as at start: the server could not open a root-only log.
    auto file = OpenAuditFile(next.audit_log);
    if (!file) return failed(file.error().message);
    audit = std::move(*file);
    if (audit.valid()) {
      reply.flags |= privsep::kAuditFile;
      fds.push_back(audit.get());
    }
  }
  reply.count = static_cast<std::uint32_t>(fds.size());
  auto offered = std::make_unique<Generation>();
  offered->id = reply.generation;
  offered->config = std::move(next);
  // The server's catalog keeps the handle of every target whose source did not change, and
  // may fetch from it under its new index: so does this table.
  std::unordered_map<std::string_view, std::size_t> by_name;
  for (std::size_t i = 0; i < now.targets.size(); ++i) by_name.emplace(now.targets[i].name, i);
  for (const TargetSpec& spec : offered->config.targets) {
    auto it = by_name.find(spec.name);
    bool same = it != by_name.end() && SameSource(now.targets[it->second], spec);
    offered->slots.push_back(same ? current_.slots[it->second] : std::make_shared<Slot>());
  }
  offered_ = std::move(offered);
  Send(reply, fds);
}

Result<CompiledConfig> Opener::Compile() {
  if (!setup_.self_exe.valid()) {
    return MakeError(ErrorCode::kUnavailable, "this opener has no nsbrokerd to compile with");
  }
  auto out = EmptyMemfd("nsbroker.compiled");
  if (!out) return std::unexpected(std::move(out.error()));
  // The child has the memfd at the same number; argv strings are made before the fork.
  std::string name = "nsbrokerd", c = "-c", flag = "--compile-config";
  std::string path = setup_.config_path, fd = std::to_string(out->get());
  char* argv[] = {name.data(), c.data(), path.data(), flag.data(), fd.data(), nullptr};
  auto child = ForkWatched();
  if (!child) return std::unexpected(std::move(child.error()));
  if (child->pid == 0) {
    // Only the memfd crosses the exec (everything else is close-on-exec), with no signal
    // blocked and an empty environment: nothing of the opener's state reaches the compiler.
    fcntl(out->get(), F_SETFD, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    char* envp[] = {nullptr};
    (void)ExecFd(setup_.self_exe, argv, envp);
    _exit(127);
  }
  // The loop's signals stay blocked here: one that comes is handled when the loop resumes.
  auto deadline = Clock::now() + kCompileTimeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      kill(child->pid, SIGKILL);
      break;
    }
    timespec timeout{.tv_sec = static_cast<time_t>(left.count() / 1000000000),
                     .tv_nsec = static_cast<long>(left.count() % 1000000000)};
    pollfd p{child->watch.get(), POLLIN, 0};
    if (ppoll(&p, 1, &timeout, nullptr) > 0) break;
  }
  int status = 0;
  while (waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string what = "nsbrokerd --compile-config " + setup_.config_path;
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && Clock::now() >= deadline) {
    return MakeError(ErrorCode::kUnavailable, what + " did not finish within " +
                                                  std::to_string(kCompileTimeout.count()) + " s");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
    // The config did not parse: the message is its FILE:LINE:COL, as at start-up.
    auto why = ReadSealed(*out, kMaxCompileError, "the compile step's error");
    if (!why) return std::unexpected(std::move(why.error()));
    return MakeError(ErrorCode::kInvalidRequest, *why);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kInternal, what + " " + ExitStatus(status));
  }
  auto bytes = ReadSealed(*out, kMaxCompiledBytes, "the compiled config");
  if (!bytes) return std::unexpected(std::move(bytes.error()));
  return DecodeCompiledConfig(*bytes);
}

void Opener::OnSwitched(const privsep::Request& request) {
  if (!offered_ || request.generation != offered_->id) {
    return Fatal("a switch to config generation " + std::to_string(request.generation) +
                 ", which was not offered");
  }
  if (request.status == static_cast<std::uint32_t>(privsep::SwitchStatus::kAccepted)) {
    current_ = std::move(*offered_);
    offered_.reset();
    return;  // READY=1 comes with the server's kReady, once the new targets are open
  }
  offered_.reset();
  std::string why = SwitchRefusal(request.status);
  LogLine("reload failed, keeping the old config: " + why, LogPriority::kWarning);
  NotifyReady("reload failed: " + why);
  if (reload_again_) {
    reload_again_ = false;
    Reload();
  }
}

}  // namespace nsbroker
