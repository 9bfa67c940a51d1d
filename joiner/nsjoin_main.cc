// nsjoin: nsenter's flags, with namespaces from the broker instead of /proc/PID/ns.
// Parse, join, enter in this (single-threaded) process, fork only for a pid namespace, exec.
#include <getopt.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "nsbroker/client.h"
#include "nsbroker/join.h"
#include "nsbroker/uwsgi.h"
#include "session.h"

namespace nsbroker {
namespace {

constexpr int kExitFailure = 125;    // nsjoin itself failed
constexpr int kExitCannotRun = 126;  // the command is not executable
constexpr int kExitNotFound = 127;   // the command does not exist

constexpr const char kUsage[] =
    "usage: nsjoin [--socket PATH] -t TARGET [-a] [-m] [-u] [-i] [-n] [-p] [-U] [-C] [-T]\n"
    "              [-r[DIR]] [-w[DIR]] [-W DIR] [-F] [-S UID] [-G GID] [--preserve-credentials]\n"
    "              [-c] [--keep-fds] [--pty] [--] [CMD [ARG...]]\n"
    "       nsjoin --uwsgi PATH [-a] [-m] [-u] [-i] [-n] [-p] [-C] [-T] [-F] [-S UID] [-G GID]\n"
    "              [--] [CMD [ARG...]]\n"
    "       nsjoin [--socket PATH] --list [--json]\n"
    "       nsjoin [--socket PATH] --status [--json] | --prometheus   (root)\n"
    "       nsjoin -V|--version\n";

struct Args {
  std::string socket;
  std::string target;
  std::string uwsgi;  // --uwsgi: a uWSGI --setns-socket server instead of the broker
  bool list = false;
  bool status = false;      // --status: the broker's counters and target states
  bool prometheus = false;  // --prometheus: the same in Prometheus text exposition
  bool json = false;
  bool help = false;
  bool version = false;
  std::vector<NsKind> kinds;  // empty: every kind of the grant (-a)
  EnterOptions enter;
  bool no_fork = false;
  bool pty = false;          // --pty: the command on a new pty of its own, in a new session
  bool keep_fds = false;     // --keep-fds: inherited descriptors reach the command
  bool join_cgroup = false;  // -c: the command starts in the target's cgroup
  bool preserve_credentials = false;  // --preserve-credentials: no uid/gid 0 in a user ns
  std::string root_dir;               // -rDIR: then chroot to DIR, inside the target
  std::string wd_dir;                 // -wDIR or -W DIR: chdir to DIR, inside the target
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::vector<std::string> command;
};

// The one place an Error becomes nsjoin's exit status, after the coreutils env/chroot
// convention: 127 the command was not found, 126 it could not be run, 125 anything else.
int Fail(const std::string& target, const Error& error, bool from_exec = false) {
  // The broker's messages may already begin with "target 'NAME': ".
  if (target.empty() || error.message.starts_with("target '" + target + "': ")) {
    std::fprintf(stderr, "nsjoin: %s\n", error.message.c_str());
  } else {
    std::fprintf(stderr, "nsjoin: target '%s': %s\n", target.c_str(), error.message.c_str());
  }
  if (!from_exec) return kExitFailure;
  return error.sys_errno == ENOENT ? kExitNotFound : kExitCannotRun;
}

Result<std::uint32_t> ParseId(const char* text, const char* what) {
  char* end = nullptr;
  errno = 0;
  unsigned long value = std::strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value >= 0xffffffffUL) {
    return MakeError(ErrorCode::kInvalidRequest,
                     std::string("invalid ") + what + " '" + text + "'\n" + kUsage);
  }
  return static_cast<std::uint32_t>(value);
}

Result<Args> ParseArgs(int argc, char** argv) {
  enum {
    kSocket = 256,
    kList,
    kJson,
    kUwsgi,
    kPty,
    kKeepFds,
    kPreserveCredentials,
    kStatus,
    kPrometheus
  };
  // The namespace options take nsenter's optional FILE only to refuse it clearly.
  static const option kOptions[] = {
      {"socket", required_argument, nullptr, kSocket},
      {"list", no_argument, nullptr, kList},
      {"json", no_argument, nullptr, kJson},
      {"status", no_argument, nullptr, kStatus},
      {"prometheus", no_argument, nullptr, kPrometheus},
      {"target", required_argument, nullptr, 't'},
      {"all", no_argument, nullptr, 'a'},
      {"mount", optional_argument, nullptr, 'm'},
      {"uts", optional_argument, nullptr, 'u'},
      {"ipc", optional_argument, nullptr, 'i'},
      {"net", optional_argument, nullptr, 'n'},
      {"pid", optional_argument, nullptr, 'p'},
      {"user", optional_argument, nullptr, 'U'},
      {"cgroup", optional_argument, nullptr, 'C'},
      {"time", optional_argument, nullptr, 'T'},
      {"root", optional_argument, nullptr, 'r'},
      {"wd", optional_argument, nullptr, 'w'},
      {"wdns", required_argument, nullptr, 'W'},
      {"no-fork", no_argument, nullptr, 'F'},
      {"setuid", required_argument, nullptr, 'S'},
      {"setgid", required_argument, nullptr, 'G'},
      {"preserve-credentials", no_argument, nullptr, kPreserveCredentials},
      {"keep-fds", no_argument, nullptr, kKeepFds},
      {"join-cgroup", no_argument, nullptr, 'c'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {"uwsgi", required_argument, nullptr, kUwsgi},
      {"pty", no_argument, nullptr, kPty},
      {nullptr, 0, nullptr, 0}};
  Args args;
  bool all = false;
  opterr = 0;
  int c;
  // "+": the first non-option starts the command, whose own options stay its own.
  const Error files = MakeError(ErrorCode::kInvalidRequest,
                                std::string("nsjoin joins broker targets; nsenter enters files "
                                            "(name the target with -t)\n") +
                                    kUsage)
                          .error();
  while ((c = getopt_long(argc, argv, "+t:amuinpUCTr::w::W:cFS:G:hV", kOptions, nullptr)) != -1) {
    // --net=FILE and friends: a long namespace option with a value.
    if (optarg != nullptr &&
        std::string_view("muinpUCT").find(static_cast<char>(c)) != std::string_view::npos) {
      return std::unexpected(files);
    }
    switch (c) {
      case kSocket:
        args.socket = optarg;
        break;
      case kList:
        args.list = true;
        break;
      case kJson:
        args.json = true;
        break;
      case kStatus:
        args.status = true;
        break;
      case kPrometheus:
        args.prometheus = true;
        break;
      case kUwsgi:
        args.uwsgi = optarg;
        break;
      case kPty:
        args.pty = true;
        break;
      case 't':
        args.target = optarg;
        break;
      case 'a':
        all = true;
        break;
      case 'm':
        args.kinds.push_back(NsKind::kMnt);
        break;
      case 'u':
        args.kinds.push_back(NsKind::kUts);
        break;
      case 'i':
        args.kinds.push_back(NsKind::kIpc);
        break;
      case 'n':
        args.kinds.push_back(NsKind::kNet);
        break;
      case 'p':
        args.kinds.push_back(NsKind::kPid);
        break;
      case 'U':
        args.kinds.push_back(NsKind::kUser);
        break;
      case 'C':
        args.kinds.push_back(NsKind::kCgroup);
        break;
      case 'T':
        args.kinds.push_back(NsKind::kTime);
        break;
      case 'r':
        args.enter.chroot_to_root = true;
        if (optarg != nullptr) args.root_dir = optarg;
        break;
      case 'w':
      case 'W':
        if (optarg == nullptr) {
          args.enter.chdir_to_cwd = true;
        } else {
          args.wd_dir = optarg;
        }
        break;
      case kPreserveCredentials:
        args.preserve_credentials = true;
        break;
      case kKeepFds:
        args.keep_fds = true;
        break;
      case 'c':
        args.join_cgroup = true;
        break;
      case 'F':
        args.no_fork = true;
        break;
      case 'S': {
        auto id = ParseId(optarg, "uid");
        if (!id) return std::unexpected(std::move(id.error()));
        args.uid = *id;
        break;
      }
      case 'G': {
        auto id = ParseId(optarg, "gid");
        if (!id) return std::unexpected(std::move(id.error()));
        args.gid = *id;
        break;
      }
      case 'h':
        args.help = true;
        return args;
      case 'V':
        args.version = true;
        return args;
      default: {
        // -n/run/netns/x: nsenter's short FILE form.
        if (optopt == '/' || optopt == '.') return std::unexpected(files);
        std::string bad = optopt != 0 && optopt < 256 ? std::string("-") + static_cast<char>(optopt)
                                                      : std::string(argv[optind - 1]);
        return MakeError(ErrorCode::kInvalidRequest, "bad option " + bad + "\n" + kUsage);
      }
    }
  }
  for (int i = optind; i < argc; ++i) args.command.emplace_back(argv[i]);
  if (args.json && !args.list && !args.status) {
    return MakeError(ErrorCode::kInvalidRequest,
                     std::string("--json needs --list or --status\n") + kUsage);
  }
  if (args.status || args.prometheus) {
    if (args.list || (args.status && args.prometheus) || (args.prometheus && args.json) ||
        !args.target.empty() || !args.uwsgi.empty() || !args.command.empty()) {
      return MakeError(ErrorCode::kInvalidRequest,
                       std::string("--status and --prometheus take nothing but --socket "
                                   "(and --status --json)\n") +
                           kUsage);
    }
  }
  if (!args.uwsgi.empty()) {
    // uWSGI's greeting is namespaces only: no root or working directory to enter.
    if (args.list || !args.target.empty() || args.enter.chroot_to_root || args.enter.chdir_to_cwd ||
        !args.wd_dir.empty()) {
      return MakeError(ErrorCode::kInvalidRequest,
                       std::string("--uwsgi takes no -t, --list, -r, -w or -W\n") + kUsage);
    }
    args.target = args.uwsgi;  // errors after the grant name the socket as the target
  } else if (args.list) {
    if (!args.target.empty() || !args.command.empty()) {
      return MakeError(ErrorCode::kInvalidRequest,
                       std::string("--list takes no target\n") + kUsage);
    }
  } else if (args.target.empty() && !args.status && !args.prometheus) {
    return MakeError(ErrorCode::kInvalidRequest, std::string("no target (-t)\n") + kUsage);
  }
  if (all) args.kinds.clear();  // -a: whatever the grant has
  if (args.socket.empty()) {
    const char* env = std::getenv("NSBROKER_SOCKET");
    args.socket = env != nullptr && env[0] != '\0' ? env : NSB_SOCKET_PATH;
  }
  if (args.command.empty()) {
    const char* shell = std::getenv("SHELL");
    args.command.emplace_back(shell != nullptr && shell[0] != '\0' ? shell : "/bin/sh");
  }
  return args;
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (char ch : text) {
    // As a byte: a char of UTF-8 above 0x7f is negative where char is signed.
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

int RunList(const Args& args) {
  auto client = Client::Connect(args.socket, {.trusted_server_uids = {geteuid()}});
  if (!client) return Fail("", client.error());
  auto targets = client->List();
  if (!targets) return Fail("", targets.error());
  std::string out = args.json ? "[" : "";
  for (std::size_t i = 0; i < targets->size(); ++i) {
    const TargetInfo& target = (*targets)[i];
    std::string kinds;
    for (NsKind kind : target.kinds) {
      if (args.json) {
        kinds += (kinds.empty() ? "\"" : ",\"") + std::string(KindName(kind)) + "\"";
      } else {
        kinds += (kinds.empty() ? "" : ",") + std::string(KindName(kind));
      }
    }
    // Only root's list says which targets are unavailable, and why.
    if (args.json) {
      out +=
          (i == 0 ? "" : ",") + std::string("{\"name\":") + JsonString(target.name) +
          ",\"kinds\":[" + kinds + "]" +
          (target.available ? "" : ",\"available\":false,\"reason\":" + JsonString(target.reason)) +
          "}";
    } else {
      out += target.name + " " + kinds +
             (target.available ? "" : " (unavailable: " + target.reason + ")") + "\n";
    }
  }
  if (args.json) out += "]\n";
  std::fputs(out.c_str(), stdout);
  return std::fflush(stdout) == 0 ? 0 : kExitFailure;
}

// Prometheus text exposition (version 0.0.4) for node_exporter's textfile collector.
std::string PrometheusText(const BrokerStatus& s) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, std::string value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + value + "\n";
  };
  char uptime[32];
  std::snprintf(uptime, sizeof uptime, "%.3f", static_cast<double>(s.uptime_ms) / 1000);
  metric("nsbroker_uptime_seconds", "gauge", "Time since nsbrokerd started.", uptime);
  metric("nsbroker_grants_total", "counter", "Join requests granted.", std::to_string(s.grants));
  metric("nsbroker_denials_total", "counter", "Requests the policy refused.",
         std::to_string(s.denials));
  metric("nsbroker_errors_total", "counter", "Requests that failed otherwise.",
         std::to_string(s.errors));
  metric("nsbroker_connections_total", "counter", "Connections accepted.",
         std::to_string(s.connections));
  metric("nsbroker_active_connections", "gauge", "Connections open now.",
         std::to_string(s.active_connections));
  out +=
      "# HELP nsbroker_target_available Whether a target can be joined (1) or not (0).\n"
      "# TYPE nsbroker_target_available gauge\n";
  for (const BrokerStatus::Target& t : s.targets) {
    std::string label;  // label values escape \\, \" and newlines
    for (char c : t.name) {
      if (c == '\\' || c == '"') label += '\\';
      if (c == '\n') {
        label += "\\n";
      } else {
        label += c;
      }
    }
    out +=
        "nsbroker_target_available{target=\"" + label + "\"} " + (t.available ? "1" : "0") + "\n";
  }
  return out;
}

std::string StatusJson(const BrokerStatus& s) {
  std::string out =
      "{\"uptime_ms\":" + std::to_string(s.uptime_ms) + ",\"grants\":" + std::to_string(s.grants) +
      ",\"denials\":" + std::to_string(s.denials) + ",\"errors\":" + std::to_string(s.errors) +
      ",\"connections\":" + std::to_string(s.connections) +
      ",\"active_connections\":" + std::to_string(s.active_connections) + ",\"targets\":[";
  for (std::size_t i = 0; i < s.targets.size(); ++i) {
    const BrokerStatus::Target& t = s.targets[i];
    out += (i == 0 ? "" : ",") + std::string("{\"name\":") + JsonString(t.name) +
           ",\"available\":" + (t.available ? "true" : "false") +
           ",\"reason\":" + JsonString(t.reason) + "}";
  }
  return out + "]}\n";
}

std::string StatusText(const BrokerStatus& s) {
  char uptime[32];
  std::snprintf(uptime, sizeof uptime, "%.3f", static_cast<double>(s.uptime_ms) / 1000);
  std::string out = std::string("uptime ") + uptime + " s\ngrants " + std::to_string(s.grants) +
                    "\ndenials " + std::to_string(s.denials) + "\nerrors " +
                    std::to_string(s.errors) + "\nconnections " + std::to_string(s.connections) +
                    " (" + std::to_string(s.active_connections) + " active)\n";
  for (const BrokerStatus::Target& t : s.targets) {
    out += "target " + t.name + (t.available ? " available" : " unavailable: " + t.reason) + "\n";
  }
  return out;
}

int RunStatus(const Args& args) {
  auto client = Client::Connect(args.socket, {.trusted_server_uids = {geteuid()}});
  if (!client) return Fail("", client.error());
  auto status = client->Status();
  if (!status) return Fail("", status.error());
  std::string out = args.prometheus ? PrometheusText(*status)
                    : args.json     ? StatusJson(*status)
                                    : StatusText(*status);
  std::fputs(out.c_str(), stdout);
  return std::fflush(stdout) == 0 ? 0 : kExitFailure;
}

// The grant from the broker, or with --uwsgi from a uWSGI setns-socket server (whose errors
// already name its socket); entering either is the same from here on.
Result<Grant> ObtainGrant(const Args& args) {
  if (!args.uwsgi.empty()) return ReceiveUwsgiGrant(args.uwsgi);
  auto client = Client::Connect(args.socket, {.trusted_server_uids = {geteuid()}});
  if (!client) return std::unexpected(std::move(client.error()));
  // No namespace named (-a, or nothing) asks for every namespace we may have; ROOT and CWD come
  // only when named, so a plain join costs the broker no /proc path walks.
  std::vector<NsKind> request = args.kinds;
  if (args.enter.chroot_to_root) request.push_back(NsKind::kRoot);
  if (args.enter.chdir_to_cwd) request.push_back(NsKind::kCwd);
  if (args.join_cgroup) request.push_back(NsKind::kCgroupDir);
  return client->Join(args.target, request);
}

// The command, in the process that becomes it: into the target's cgroup (-c), then exec.
[[noreturn]] void ExecCommand(const Args& args, const Grant& grant, const UniqueFd& procs) {
  if (procs.valid()) {
    if (auto r = MoveIntoCgroup(grant, procs); !r) _exit(Fail(args.target, r.error()));
  }
  _exit(Fail(args.target, Exec(args.command), true));
}

// --pty (su --pty): the command in a new session on a new pty from /dev/ptmx as entered (the
// target's devpts after -m), or, for a target without one, of a devpts instance of its own
// (while the ids set still hold CAP_SYS_ADMIN there), this process relaying it to the
// caller's terminal.
[[noreturn]] void RunOnPty(const Args& args, Grant& grant, bool fork_into_pid,
                           const UniqueFd& procs) {
  auto pty = PtyOrPrivate(OpenPty(0), 0, geteuid(), getegid());
  if (!pty) _exit(Fail(args.target, pty.error()));
  ChildWait wait(ChildWait::Session::kOwn);
  auto child = ForkCommand(grant, fork_into_pid);
  if (!child) _exit(Fail(args.target, child.error()));
  if (*child == 0) {
    if (auto r = StartSession(&*pty, wait); !r) _exit(Fail(args.target, r.error()));
    ExecCommand(args, grant, procs);
  }
  grant = Grant{};
  auto status = RelayUntilExit(wait, *child, &*pty);
  _exit(status ? *status : Fail(args.target, status.error()));
}

int RunJoin(const Args& args) {
  auto grant = ObtainGrant(args);
  if (!grant) return Fail(args.uwsgi.empty() ? args.target : "", grant.error());
  EnterOptions enter = args.enter;
  enter.kinds = args.kinds;
  // -c: cgroup.procs is opened here, outside the target's cgroup namespace (join.h).
  UniqueFd procs;
  if (args.join_cgroup) {
    auto opened = OpenCgroupProcs(*grant);
    if (!opened) return Fail(args.target, opened.error());
    procs = std::move(*opened);
  }
  // From the first setns on, leave with _exit: exit-time handlers belong to the host side
  // (LeakSanitizer's, for one, clones a tracer into the target's pid namespace, where it
  // cannot see this process, and hangs). Nothing is buffered: errors go to stderr.
  auto entered = Enter(*grant, enter);
  if (!entered) _exit(Fail(args.target, entered.error()));
  // -rDIR, -wDIR, -W DIR: paths inside the target, resolved after entering. nsenter opens
  // them before entering, which carries a host directory inside (runc CVE-2024-21626).
  if (!args.root_dir.empty()) {
    if (chroot(args.root_dir.c_str()) != 0) {
      _exit(Fail(args.target, SysError(ErrorCode::kNotFound, "chroot " + args.root_dir).error()));
    }
    if (!args.enter.chdir_to_cwd && args.wd_dir.empty() && chdir("/") != 0) {
      _exit(Fail(args.target, SysError(ErrorCode::kInternal, "chdir /").error()));
    }
  }
  if (!args.wd_dir.empty() && chdir(args.wd_dir.c_str()) != 0) {
    _exit(Fail(args.target, SysError(ErrorCode::kNotFound, "chdir " + args.wd_dir).error()));
  }
  // nsenter's habit: inside an entered user namespace, become its root unless told otherwise.
  std::optional<uid_t> uid = args.uid;
  std::optional<gid_t> gid = args.gid;
  if (entered->user && !uid && !gid && !args.preserve_credentials) {
    uid = 0;
    gid = 0;
  }
  if (auto ids = SetIds(uid, gid, entered->user); !ids) _exit(Fail(args.target, ids.error()));
  if (args.pty) RunOnPty(args, *grant, entered->pid && !args.no_fork, procs);
  if (entered->pid && !args.no_fork) {
    // The parent left outside waits for its child: it passes on the signals a supervisor
    // sends it, and ignores those a terminal sends to the whole group.
    ChildWait wait(ChildWait::Session::kShared);
    auto child = ForkIntoPidNamespace(*grant);
    if (!child) _exit(Fail(args.target, child.error()));
    if (*child == 0) {
      wait.RestoreInChild();
      ExecCommand(args, *grant, procs);
    }
    *grant = Grant{};  // the namespaces stay alive through the child, not through us
    wait.Watch(*child);
    auto status = wait.Wait();
    _exit(status ? ExitCodeOf(*status) : Fail(args.target, status.error()));
  }
  ExecCommand(args, *grant, procs);
}

}  // namespace
}  // namespace nsbroker

int main(int argc, char** argv) {
  using namespace nsbroker;
  auto args = ParseArgs(argc, argv);
  if (!args) return Fail("", args.error());
  // Descriptors inherited without close-on-exec stay ours until exec, never the command's
  // (a root caller's open host directory is runc CVE-2024-21626), unless --keep-fds.
  if (!args->keep_fds && close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    return Fail("", SysError(ErrorCode::kInternal, "close_range").error());
  }
  if (args->help || args->version) {
    std::fputs(args->help ? kUsage : "nsjoin (nsbroker) " NSB_VERSION "\n", stdout);
    return std::fflush(stdout) == 0 ? 0 : kExitFailure;
  }
  if (args->status || args->prometheus) return RunStatus(*args);
  return args->list ? RunList(*args) : RunJoin(*args);
}
