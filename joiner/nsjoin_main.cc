// nsjoin: nsenter's flags, with namespaces from the broker instead of /proc/PID/ns.
// Parse, join, enter in this (single-threaded) process, fork only for a pid namespace, exec.
#include <getopt.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "nsbroker/client.h"
#include "nsbroker/join.h"
#include "nsbroker/uwsgi.h"

namespace nsbroker {
namespace {

constexpr int kExitFailure = 125;    // nsjoin itself failed
constexpr int kExitCannotRun = 126;  // the command is not executable
constexpr int kExitNotFound = 127;   // the command does not exist

constexpr const char kUsage[] =
    "usage: nsjoin [--socket PATH] -t TARGET [-a] [-m] [-u] [-i] [-n] [-p] [-U] [-C] [-T]\n"
    "              [-r] [-w] [-F] [-S UID] [-G GID] [--] [CMD [ARG...]]\n"
    "       nsjoin --uwsgi PATH [-a] [-m] [-u] [-i] [-n] [-p] [-C] [-T] [-F] [-S UID] [-G GID]\n"
    "              [--] [CMD [ARG...]]\n"
    "       nsjoin [--socket PATH] --list [--json]\n";

struct Args {
  std::string socket;
  std::string target;
  std::string uwsgi;  // --uwsgi: a uWSGI --setns-socket server instead of the broker
  bool list = false;
  bool json = false;
  bool help = false;
  std::vector<NsKind> kinds;  // empty: every kind of the grant (-a)
  EnterOptions enter;
  bool no_fork = false;
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
  enum { kSocket = 256, kList, kJson, kUwsgi };
  static const option kOptions[] = {{"socket", required_argument, nullptr, kSocket},
                                    {"list", no_argument, nullptr, kList},
                                    {"json", no_argument, nullptr, kJson},
                                    {"target", required_argument, nullptr, 't'},
                                    {"all", no_argument, nullptr, 'a'},
                                    {"mount", no_argument, nullptr, 'm'},
                                    {"uts", no_argument, nullptr, 'u'},
                                    {"ipc", no_argument, nullptr, 'i'},
                                    {"net", no_argument, nullptr, 'n'},
                                    {"pid", no_argument, nullptr, 'p'},
                                    {"user", no_argument, nullptr, 'U'},
                                    {"cgroup", no_argument, nullptr, 'C'},
                                    {"time", no_argument, nullptr, 'T'},
                                    {"root", no_argument, nullptr, 'r'},
                                    {"wd", no_argument, nullptr, 'w'},
                                    {"no-fork", no_argument, nullptr, 'F'},
                                    {"setuid", required_argument, nullptr, 'S'},
                                    {"setgid", required_argument, nullptr, 'G'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {"uwsgi", required_argument, nullptr, kUwsgi},
                                    {nullptr, 0, nullptr, 0}};
  Args args;
  bool all = false;
  opterr = 0;
  int c;
  // "+": the first non-option starts the command, whose own options stay its own.
  while ((c = getopt_long(argc, argv, "+t:amuinpUCTrwFS:G:h", kOptions, nullptr)) != -1) {
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
      case kUwsgi:
        args.uwsgi = optarg;
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
        break;
      case 'w':
        args.enter.chdir_to_cwd = true;
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
      default: {
        std::string bad = optopt != 0 && optopt < 256 ? std::string("-") + static_cast<char>(optopt)
                                                      : std::string(argv[optind - 1]);
        return MakeError(ErrorCode::kInvalidRequest, "bad option " + bad + "\n" + kUsage);
      }
    }
  }
  for (int i = optind; i < argc; ++i) args.command.emplace_back(argv[i]);
  if (args.json && !args.list) {
    return MakeError(ErrorCode::kInvalidRequest, std::string("--json needs --list\n") + kUsage);
  }
  if (!args.uwsgi.empty()) {
    // uWSGI's greeting is namespaces only: no root or working directory to enter.
    if (args.list || !args.target.empty() || args.enter.chroot_to_root || args.enter.chdir_to_cwd) {
      return MakeError(ErrorCode::kInvalidRequest,
                       std::string("--uwsgi takes no -t, --list, -r or -w\n") + kUsage);
    }
    args.target = args.uwsgi;  // errors after the grant name the socket as the target
  } else if (args.list) {
    if (!args.target.empty() || !args.command.empty()) {
      return MakeError(ErrorCode::kInvalidRequest,
                       std::string("--list takes no target\n") + kUsage);
    }
  } else if (args.target.empty()) {
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
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
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
      out += (i == 0 ? "" : ",") + std::string("{\"name\":") + JsonString(target.name) +
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

volatile sig_atomic_t g_child = 0;

void ForwardToChild(int sig) {
  int saved = errno;
  kill(static_cast<pid_t>(g_child), sig);
  errno = saved;
}

// The parent left outside after a pid namespace waits for its child: it passes on the
// signals a supervisor sends it, and ignores those a terminal sends to the whole group.
int WaitForChild(const std::string& target, pid_t child) {
  g_child = child;
  struct sigaction forward {};
  forward.sa_handler = ForwardToChild;
  sigaction(SIGTERM, &forward, nullptr);
  sigaction(SIGHUP, &forward, nullptr);
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  auto status = WaitForExit(child);
  if (!status) return Fail(target, status.error());
  return *status;
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
  return client->Join(args.target, request);
}

int RunJoin(const Args& args) {
  auto grant = ObtainGrant(args);
  if (!grant) return Fail(args.uwsgi.empty() ? args.target : "", grant.error());
  EnterOptions enter = args.enter;
  enter.kinds = args.kinds;
  // From the first setns on, leave with _exit: exit-time handlers belong to the host side
  // (LeakSanitizer's, for one, clones a tracer into the target's pid namespace, where it
  // cannot see this process, and hangs). Nothing is buffered: errors go to stderr.
  auto entered = Enter(*grant, enter);
  if (!entered) _exit(Fail(args.target, entered.error()));
  // nsenter's habit: inside an entered user namespace, become its root unless told otherwise.
  std::optional<uid_t> uid = args.uid;
  std::optional<gid_t> gid = args.gid;
  if (entered->user && !uid && !gid) {
    uid = 0;
    gid = 0;
  }
  if (auto ids = SetIds(uid, gid, entered->user); !ids) _exit(Fail(args.target, ids.error()));
  if (entered->pid && !args.no_fork) {
    auto child = ForkIntoPidNamespace(*grant);
    if (!child) _exit(Fail(args.target, child.error()));
    if (*child == 0) _exit(Fail(args.target, Exec(args.command), true));
    *grant = Grant{};  // the namespaces stay alive through the child, not through us
    _exit(WaitForChild(args.target, *child));
  }
  _exit(Fail(args.target, Exec(args.command), true));
}

}  // namespace
}  // namespace nsbroker

int main(int argc, char** argv) {
  using namespace nsbroker;
  auto args = ParseArgs(argc, argv);
  if (!args) return Fail("", args.error());
  if (args->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  return args->list ? RunList(*args) : RunJoin(*args);
}
