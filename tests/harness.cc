#include "harness.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace nsbroker::testing {
namespace {

constexpr int kTargetFlags =
    CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWCGROUP;

int StatusToCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

bool WriteAll(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

bool WriteFile(const std::string& path, const std::string& data) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd.valid() && WriteAll(fd.get(), data);
}

struct TargetArgs {
  const TargetOptions* options;
  int go_fd;     // read end: the keeper writes a byte once the id maps are in place
  int ready_fd;  // write end: the target writes a byte once it is set up
};

char target_stack[256 * 1024];

// Runs as pid 1 of the new namespaces; never returns to GoogleTest.
int TargetMain(void* raw) {
  auto* args = static_cast<TargetArgs*>(raw);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char byte;
  if (read(args->go_fd, &byte, 1) != 1) _exit(1);
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(2);
  // The host's /dev and the devpts under it detached first (EINVAL: /dev is no mount of its
  // own), so that no devpts is left in this mount namespace at all, not even hidden.
  if (args->options->empty_dev &&
      ((umount2("/dev", MNT_DETACH) != 0 && errno != EINVAL) ||
       mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") != 0)) {
    _exit(5);
  }
  const std::string& name = args->options->hostname;
  if (sethostname(name.data(), name.size()) != 0) _exit(3);
  if (write(args->ready_fd, "r", 1) != 1) _exit(4);
  for (;;) pause();
}

}  // namespace

std::string BrokerBinary() { return NSB_BINARY_DIR "/broker/nsbrokerd"; }
std::string NsjoinBinary() { return NSB_BINARY_DIR "/joiner/nsjoin"; }
std::string JailmeBinary() { return NSB_BINARY_DIR "/joiner/jailme"; }

bool RequireRoot() {
  if (geteuid() == 0) return true;
  ADD_FAILURE() << "this test needs root (namespaces, uid switches); CI runs it as root";
  return false;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (running()) Stop(SIGKILL);
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (running()) Stop(SIGKILL);
}

int ChildProcess::Stop(int sig) {
  if (!running()) return -1;
  kill(pid_, sig);
  return Wait();
}

int ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (!running()) return -1;
  // The pidfd polls readable when the child exits: waited on, not probed.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return -1;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    pollfd p{pidfd.get(), POLLIN, 0};
    int n = pidfd.valid() ? poll(&p, 1, static_cast<int>(left.count())) : -1;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      waitpid(pid_, &status, 0);  // no pidfd: a plain blocking wait
      break;
    }
  }
  pid_ = -1;
  return StatusToCode(status);
}

int ExitCodeInChild(const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) _exit(fn());
  return ChildProcess(pid).Wait();
}

Result<Target> Target::Start(const TargetOptions& options) {
  int go[2], ready[2], report[2];
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) {
    return SysError(ErrorCode::kInternal, "pipe2");
  }
  UniqueFd go_r(go[0]), go_w(go[1]), ready_r(ready[0]), ready_w(ready[1]);
  UniqueFd report_r(report[0]), report_w(report[1]);

  pid_t keeper = fork();
  if (keeper < 0) return SysError(ErrorCode::kInternal, "fork");
  if (keeper == 0) {
    // The keeper: becomes the owner uid for a rootless target, clones the target, writes its
    // id maps, reports its pid, then reaps it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int flags = kTargetFlags;
    if (options.user_owner_uid) {
      uid_t uid = *options.user_owner_uid;
      if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
          setresuid(uid, uid, uid) != 0) {
        _exit(10);
      }
      // The uid switch made us non-dumpable, which would make the target's /proc files
      // root-owned and its uid_map unwritable by us.
      prctl(PR_SET_DUMPABLE, 1);
      flags |= CLONE_NEWUSER;
    }
    TargetArgs args{&options, go_r.get(), ready_w.get()};
    pid_t target = clone(TargetMain, target_stack + sizeof target_stack, flags | SIGCHLD, &args);
    if (target < 0) _exit(11);
    if (options.user_owner_uid) {
      std::string proc = "/proc/" + std::to_string(target);
      std::string id = std::to_string(*options.user_owner_uid);
      if (!WriteFile(proc + "/uid_map", "0 " + id + " 1\n") ||
          !WriteFile(proc + "/setgroups", "deny") ||
          !WriteFile(proc + "/gid_map", "0 " + id + " 1\n")) {
        kill(target, SIGKILL);
        _exit(12);
      }
    }
    if (write(go_w.get(), "g", 1) != 1) _exit(13);
    if (write(report_w.get(), &target, sizeof target) != sizeof target) _exit(14);
    int status;
    while (waitpid(target, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  Target out;
  out.keeper_ = ChildProcess(keeper);
  report_w.reset();
  ready_w.reset();
  go_r.reset();
  if (read(report_r.get(), &out.pid_, sizeof out.pid_) != sizeof out.pid_) {
    return MakeError(ErrorCode::kInternal,
                     "target keeper failed with status " + std::to_string(out.keeper_.Wait()));
  }
  char byte;
  if (read(ready_r.get(), &byte, 1) != 1) {
    return MakeError(ErrorCode::kInternal, "target failed to set itself up");
  }
  return out;
}

std::string Target::NsPath(const std::string& kind) const {
  return "/proc/" + std::to_string(pid_) + "/ns/" + kind;
}

void Target::Kill() {
  if (pid_ > 0) kill(pid_, SIGKILL);
  keeper_.Wait();
  pid_ = -1;
}

ino_t NsInode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/nsb-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) std::abort();
  path_ = tmpl;
  chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void TempDir::Write(const std::string& name, const std::string& contents) const {
  std::ofstream(Join(name)) << contents;
}

RunResult RunCommand(const std::vector<std::string>& argv, const RunOptions& options) {
  RunResult result;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return result;
  }
  UniqueFd in_r(in[0]), in_w(in[1]), out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  if (options.env) {
    for (const auto& [k, v] : *options.env) env_strings.push_back(k + "=" + v);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
  }
  pid_t pid = fork();
  if (pid < 0) return result;
  if (pid == 0) {
    if (options.close_stdio) {
      close(0);
      close(1);
      close(2);
    } else {
      dup2(in_r.get(), 0);
      dup2(out_w.get(), 1);
      dup2(err_w.get(), 2);
    }
    if (options.uid) {
      gid_t gid = options.gid.value_or(static_cast<gid_t>(*options.uid));
      if (setgroups(options.groups.size(), options.groups.data()) != 0 ||
          setresgid(gid, gid, gid) != 0 ||
          setresuid(*options.uid, *options.uid, *options.uid) != 0) {
        _exit(120);
      }
      if (chdir("/") != 0) _exit(121);
    }
    if (options.env) {
      execve(args[0], args.data(), envp.data());
    } else {
      execvp(args[0], args.data());
    }
    _exit(errno == ENOENT ? 127 : 126);
  }
  ChildProcess child(pid);
  in_r.reset();
  out_w.reset();
  err_w.reset();
  std::size_t written = 0;
  if (options.stdin_data.empty()) in_w.reset();
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  while (out_r.valid() || err_r.valid()) {
    pollfd fds[3] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}, {in_w.get(), POLLOUT, 0}};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) {
      ADD_FAILURE() << "timed out: " << argv[0];
      break;
    }
    if (poll(fds, 3, left) < 0 && errno != EINTR) break;
    UniqueFd* sources[2] = {&out_r, &err_r};
    std::string* sinks[2] = {&result.out, &result.err};
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(sources[i]->get(), buf, sizeof buf);
      if (n <= 0) {
        sources[i]->reset();
      } else {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      }
    }
    if (in_w.valid() && fds[2].revents != 0) {
      ssize_t n = write(in_w.get(), options.stdin_data.data() + written,
                        options.stdin_data.size() - written);
      if (n <= 0) {
        in_w.reset();
      } else {
        written += static_cast<std::size_t>(n);
        if (written == options.stdin_data.size()) in_w.reset();
      }
    }
  }
  result.status = child.Wait(std::chrono::seconds(5));
  return result;
}

bool WaitForSocket(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  while (std::chrono::steady_clock::now() < deadline) {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::string WithTestRunAs(std::string config) {
  if (const char* run_as = std::getenv("NSB_TEST_RUN_AS");
      run_as != nullptr && config.find("run_as:") == std::string::npos) {
    config += "run_as: \"" + std::string(run_as) + "\"\n";
  }
  return config;
}

Result<Broker> Broker::Start(const std::string& config,
                             const std::vector<std::string>& extra_args) {
  return Start(config, BrokerOptions{.extra_args = extra_args});
}

Result<Broker> Broker::Start(const std::string& config, const BrokerOptions& options) {
  Broker broker;
  broker.dir_ = std::make_unique<TempDir>();
  std::string text = config;
  if (text.find("socket:") == std::string::npos) {
    broker.socket_ = broker.dir_->Join("nsbroker.sock");
    text = "socket: \"" + broker.socket_ + "\"\n" + text;
  } else {
    auto at = text.find('"', text.find("socket:"));
    broker.socket_ = text.substr(at + 1, text.find('"', at + 1) - at - 1);
  }
  text = WithTestRunAs(std::move(text));
  broker.run_as_ = text.find("run_as:") != std::string::npos;
  broker.dir_->Write("nsbroker.conf", text);
  std::string notify_path = broker.dir_->Join("notify.sock");
  broker.notify_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, notify_path.c_str(), sizeof addr.sun_path - 1);
  if (bind(broker.notify_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return SysError(ErrorCode::kInternal, "bind " + notify_path);
  }
  // A broker with run_as notifies after dropping root, as systemd lets it.
  chmod(notify_path.c_str(), 0666);
  std::string log = broker.dir_->Join("broker.log");
  std::vector<std::string> argv = {BrokerBinary(), "-c", broker.config_path()};
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  pid_t pid = fork();
  if (pid < 0) return SysError(ErrorCode::kInternal, "fork");
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (options.nofile > 0) {
      rlimit limit{options.nofile, options.nofile};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
    }
    setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  broker.process_ = ChildProcess(pid);
  broker.pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!broker.pidfd_.valid()) return SysError(ErrorCode::kInternal, "pidfd_open");
  auto ready = broker.WaitForReady();
  if (!ready) return std::unexpected(std::move(ready.error()));
  return broker;
}

void Broker::DrainNotifications() {
  char buf[4096];
  while (recv(notify_.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
}

Result<std::string> Broker::WaitForReady(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    char buf[4096];
    ssize_t n;
    while ((n = recv(notify_.get(), buf, sizeof buf, 0)) > 0) {
      std::string message(buf, static_cast<std::size_t>(n));
      if (message.find("READY=1") != std::string::npos) return message;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return MakeError(ErrorCode::kUnavailable, "nsbrokerd was not ready in time: " + log());
    }
    pollfd fds[2] = {{notify_.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
    if (poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return SysError(ErrorCode::kInternal, "poll");
    }
    if (fds[1].revents != 0 && fds[0].revents == 0) {
      return MakeError(ErrorCode::kUnavailable, "nsbrokerd exited with status " +
                                                    std::to_string(process_.Wait()) + ": " + log());
    }
  }
}

Result<std::string> Broker::Reload() {
  // Notifications of earlier reloads nobody waited for are not this one's.
  char buf[4096];
  while (recv(notify_.get(), buf, sizeof buf, 0) > 0) {
  }
  if (kill(process_.pid(), SIGHUP) != 0) return SysError(ErrorCode::kInternal, "kill SIGHUP");
  return WaitForReady();
}

Broker::~Broker() {
  if (process_.running()) process_.Stop(SIGTERM);
}

std::string Broker::config_path() const { return dir_->Join("nsbroker.conf"); }

Result<pid_t> Broker::ServerPid() const {
  std::string pid = std::to_string(process_.pid());
  // A root broker's children are OCI runtimes it runs, never a server.
  if (!run_as_) return MakeError(ErrorCode::kNotFound, "nsbrokerd " + pid + " has no run_as");
  // The kernel lists the opener's children oldest first: the server, then any OCI runtime
  // the opener runs for it.
  std::ifstream in("/proc/" + pid + "/task/" + pid + "/children");
  pid_t child = 0;
  if (!(in >> child) || child <= 0) {
    return MakeError(ErrorCode::kNotFound, "nsbrokerd " + pid + " has no server child");
  }
  return child;
}

int Broker::Kill() {
  auto server = ServerPid();
  if (!server) return process_.Stop(SIGKILL);
  // Stopped first, the opener cannot see its server die; the server, killed next, never
  // gets the parent-death SIGTERM that would let it finish its loop pass.
  UniqueFd server_fd(static_cast<int>(syscall(SYS_pidfd_open, *server, 0)));
  kill(process_.pid(), SIGSTOP);
  kill(*server, SIGKILL);
  int status = process_.Stop(SIGKILL);
  // Not our child: its pidfd polls readable once it has exited.
  pollfd p{server_fd.get(), POLLIN, 0};
  while (server_fd.valid() && poll(&p, 1, 10000) < 0 && errno == EINTR) {
  }
  return status;
}

pid_t Broker::ServingPid() const {
  auto server = ServerPid();
  return server ? *server : process_.pid();
}

std::string Broker::log() const {
  std::ifstream in(dir_->Join("broker.log"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Broker::WaitForLog(const std::string& text) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace nsbroker::testing
