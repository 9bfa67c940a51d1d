// The caller at a terminal, for the pty tests: a real pty (openpty) whose slave is the
// controlling terminal of a command run as a given uid in a session of its own.
// Never a fake terminal: the kernel's line discipline, job control and TIOCSTI rules apply.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker::testing {

// "MAJ:MIN" of every devpts mounted in a mount namespace, from its `mountinfo`: by default
// this process's (the host's, as far as the tests see it), or /proc/PID/mountinfo.
inline std::vector<std::string> DevptsDevices(
    const std::string& mountinfo = "/proc/self/mountinfo") {
  std::vector<std::string> devices;
  std::ifstream in(mountinfo);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, device;
    fields >> id >> parent >> device;
    if (line.find(" - devpts ") != std::string::npos) devices.push_back(device);
  }
  return devices;
}

class Terminal {
 public:
  // Starts `argv` (PATH /usr/bin:/bin, TERM xterm) as `uid` on a new pty of `rows` x `cols`.
  static Terminal Start(const std::vector<std::string>& argv, uid_t uid, unsigned short rows = 24,
                        unsigned short cols = 80) {
    Terminal t;
    int master = -1, slave = -1;
    winsize size{.ws_row = rows, .ws_col = cols};
    if (openpty(&master, &slave, nullptr, nullptr, &size) != 0) std::abort();
    t.master_ = UniqueFd(master);
    UniqueFd slave_fd(slave);
    char name[64] = {};
    if (ttyname_r(slave, name, sizeof name) != 0) std::abort();
    t.slave_name_ = name;
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    char path[] = "PATH=/usr/bin:/bin";
    char term[] = "TERM=xterm";
    char* env[] = {path, term, nullptr};
    pid_t pid = fork();
    if (pid < 0) std::abort();
    if (pid == 0) {
      if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) != 0) _exit(120);
      for (int fd = 0; fd <= 2; ++fd) dup2(slave, fd);
      close_range(3, ~0U, 0);
      if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
          setresuid(uid, uid, uid) != 0) {
        _exit(121);
      }
      execve(args[0], args.data(), env);
      _exit(127);
    }
    t.process_ = ChildProcess(pid);
    return t;
  }

  const std::string& slave_name() const { return slave_name_; }
  int master() const { return master_.get(); }
  // Everything the terminal displayed so far, "\r\n" turned into "\n".
  std::string seen() const {
    std::string out;
    for (char c : seen_) {
      if (c != '\r') out += c;
    }
    return out;
  }

  // Reads the display until `text` appears in it. The wait is on the output; 20 s is only a
  // guard against a hung test.
  bool WaitFor(const std::string& text) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (seen().find(text) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{.fd = master_.get(), .events = POLLIN};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char buf[1024];
      ssize_t n = read(master_.get(), buf, sizeof buf);
      if (n <= 0) return false;  // EIO: no process has the terminal open any more
      seen_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  void Type(const std::string& text) {
    if (write(master_.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      std::abort();
    }
  }

  void Resize(unsigned short rows, unsigned short cols) {
    winsize size{.ws_row = rows, .ws_col = cols};
    if (ioctl(master_.get(), TIOCSWINSZ, &size) != 0) std::abort();
  }

  pid_t pid() const { return process_.pid(); }
  int Wait() { return process_.Wait(); }

 private:
  UniqueFd master_;
  std::string slave_name_;
  std::string seen_;
  ChildProcess process_;
};

}  // namespace nsbroker::testing
