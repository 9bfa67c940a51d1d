// A real uWSGI instance (Debian's uwsgi-core) for integration tests, serving its namespaces
// with --setns-socket from fresh uts/ipc/net/mnt namespaces. Stopped by its pid, never by name.
#pragma once

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker::testing {

// Waits until a SOCK_STREAM UNIX socket accepts connections (the harness's WaitForSocket
// speaks SEQPACKET, which a stream socket refuses).
inline bool WaitForStreamSocket(const std::string& path,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  while (std::chrono::steady_clock::now() < deadline) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class UwsgiInstance {
 public:
  // `uwsgi --master --die-on-term --setns-socket SOCKET` as the pid started here (unshare
  // and sh exec into it), with `hostname` in its own uts namespace; its log goes to LOG.
  static Result<UwsgiInstance> Start(const std::string& socket, const std::string& hostname,
                                     const std::string& log) {
    pid_t pid = fork();
    if (pid < 0) return SysError(ErrorCode::kInternal, "fork");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<std::string> argv = {
          "unshare", "--uts",
          "--ipc",   "--net",
          "--mount", "sh",
          "-c",      "hostname \"$0\" && exec uwsgi --master --die-on-term --setns-socket \"$1\"",
          hostname,  socket};
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    UwsgiInstance out;
    out.process_ = ChildProcess(pid);
    out.log_ = log;
    if (!WaitForStreamSocket(socket)) {
      return MakeError(ErrorCode::kUnavailable, "uwsgi did not start: " + out.log());
    }
    return out;
  }

  pid_t pid() const { return process_.pid(); }
  std::string NsPath(const std::string& kind) const {
    return "/proc/" + std::to_string(pid()) + "/ns/" + kind;
  }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // SIGTERM, which --die-on-term makes a clean shutdown; the exit code.
  int Stop() { return process_.Stop(SIGTERM); }

 private:
  ChildProcess process_;
  std::string log_;
};

}  // namespace nsbroker::testing
