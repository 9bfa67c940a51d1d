// Test harness for integration tests: real child processes in real namespaces, the real
// binaries run as any uid, temporary directories. Everything it starts it also reaps.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker::testing {

// Paths of the built binaries.
std::string BrokerBinary();  // build/broker/nsbrokerd
std::string NsjoinBinary();  // build/joiner/nsjoin
std::string JailmeBinary();  // build/joiner/jailme

// Fails the current test (and returns false) unless running as root: the suites create
// namespaces and switch uids. CI runs as root, so this never skips.
bool RequireRoot();

// A child process that is killed (SIGKILL) and reaped when this object dies.
class ChildProcess {
 public:
  ChildProcess() = default;
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // Sends `sig` and waits; returns the exit code, or 128+N for a signal.
  int Stop(int sig = SIGTERM);
  // Waits for exit (at most `timeout`, then SIGKILL): exit code or 128+N.
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  pid_t pid_ = -1;
};

// Runs fn in a forked child (its ids and signals are then not the test runner's) and returns
// the child's exit code: fn's result, or 128+N if signal N killed it; -1 if fork failed.
int ExitCodeInChild(const std::function<int()>& fn);

// A process in fresh uts/ipc/net/mnt/pid/cgroup namespaces (pid 1 of its pid namespace)
// with `hostname`, sleeping until killed. With `user_owner_uid`, it also gets a new user
// namespace owned by that uid (a rootless target), mapping root inside to that uid. With
// `empty_dev`, its /dev is an empty tmpfs: no devpts, no ptmx (a container without /dev/pts).
struct TargetOptions {
  std::string hostname = "nsb-target";
  std::optional<uid_t> user_owner_uid;
  bool empty_dev = false;
};
class Target {
 public:
  static Result<Target> Start(const TargetOptions& options = {});
  pid_t pid() const { return pid_; }
  // "/proc/PID/ns/KIND"
  std::string NsPath(const std::string& kind) const;
  // SIGKILLs the target and reaps it (through the keeper process that is its parent).
  void Kill();

 private:
  ChildProcess keeper_;  // the target's parent: it wrote the id maps and reaps the target
  pid_t pid_ = -1;
};

// Inode of a namespace file, e.g. NsInode("/proc/42/ns/net").
ino_t NsInode(const std::string& path);

// A directory under /tmp, world-searchable (uid 65534 must reach sockets in it), removed
// with its contents when this object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }
  void Write(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

// Runs a command to completion and captures its output.
struct RunOptions {
  std::optional<uid_t> uid;  // switch to this uid (and gid, with no supplementary groups)
  std::optional<gid_t> gid;
  std::vector<gid_t> groups;  // supplementary groups after the switch
  // Replaces the environment when set; inherits otherwise.
  std::optional<std::map<std::string, std::string>> env;
  std::string stdin_data;
  bool close_stdio = false;  // start the command with fds 0, 1 and 2 closed
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};
struct RunResult {
  int status = -1;  // exit code, or 128+N if killed by signal N
  std::string out;
  std::string err;
};
RunResult RunCommand(const std::vector<std::string>& argv, const RunOptions& options = {});

// `config` (text-format BrokerConfig) as the suites run it: with $NSB_TEST_RUN_AS set (the
// RunAs. entries of tests/integration/CMakeLists.txt), a config without run_as gets that user.
std::string WithTestRunAs(std::string config);

// The real nsbrokerd, started with a config file; stopped with SIGTERM when destroyed.
// Its config goes through WithTestRunAs: with privilege separation pid() is the root opener,
// and ServerPid() its unprivileged server.
// Its stderr (log and audit lines) goes to a file that log() reads. Readiness is what the
// broker sends to $NOTIFY_SOCKET (sd_notify(3)), watched together with its pidfd, so a broker
// that dies instead is an error at once.
struct BrokerOptions {
  std::vector<std::string> extra_args;
  std::size_t nofile = 0;  // RLIMIT_NOFILE (soft and hard) of the broker when nonzero
};
class Broker {
 public:
  // `config` is text-format BrokerConfig; "socket" is set by this class when absent.
  static Result<Broker> Start(const std::string& config,
                              const std::vector<std::string>& extra_args = {});
  static Result<Broker> Start(const std::string& config, const BrokerOptions& options);
  Broker(Broker&&) = default;
  Broker& operator=(Broker&&) = default;
  ~Broker();

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return process_.pid(); }
  // The privilege-separated server (the opener's only child), or an error without run_as.
  [[nodiscard]] Result<pid_t> ServerPid() const;
  // The process that serves clients: the server with run_as, else pid().
  pid_t ServingPid() const;
  std::string log() const;
  std::string config_path() const;
  ChildProcess& process() { return process_; }
  // SIGKILL to every process of the broker at once, as `systemctl kill -s KILL` sends it to
  // the unit's cgroup: none of them acts on the other's death (the opener would remove the
  // socket files). Returns once both are gone, with the opener's status (128+SIGKILL).
  int Kill();
  // Waits (at most 5 s) until the log contains `text`.
  bool WaitForLog(const std::string& text) const;
  // Waits for the next notification carrying READY=1 and returns it whole (a failed reload
  // adds "STATUS=reload failed: ..."); an error if the broker exits or `timeout` passes.
  [[nodiscard]] Result<std::string> WaitForReady(
      std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // SIGHUP, then WaitForReady: the reload is complete, every new target opened.
  [[nodiscard]] Result<std::string> Reload();
  // Reads and drops the notifications queued so far. The broker's sd_notify(3) blocks once
  // the queue is full (net.unix.max_dgram_qlen), as with a service manager that stopped
  // reading; a test that signals many reloads without waiting reads as systemd would.
  void DrainNotifications();

 private:
  Broker() = default;
  std::unique_ptr<TempDir> dir_;
  std::string socket_;
  UniqueFd notify_;  // the NOTIFY_SOCKET we gave the broker
  UniqueFd pidfd_;
  ChildProcess process_;
  bool run_as_ = false;  // its config has run_as: two processes
};

// Waits (at most `timeout`) until a UNIX socket at `path` accepts connections.
bool WaitForSocket(const std::string& path,
                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace nsbroker::testing
