#include "session.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#ifdef __linux__
#include <sys/mount.h>
#endif
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>

#include "nsbroker/join.h"

namespace nsbroker {
namespace {

constexpr std::size_t kChunk = 4096;

// Raw mode on the caller's terminal while the pty relays, restored however the relay ends.
// Only from the terminal's foreground process group: a background one would be stopped
// (SIGTTOU) by tcsetattr.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) {
    if (fd < 0 || tcgetpgrp(fd) != getpgrp() || tcgetattr(fd, &saved_) != 0) return;
    termios raw = saved_;
    cfmakeraw(&raw);
    if (tcsetattr(fd, TCSANOW, &raw) == 0) fd_ = fd;
  }
  ~RawTerminal() {
    if (fd_ >= 0) tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_ = -1;
  termios saved_{};
};

bool WriteAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// One direction of the relay: at most kChunk bytes read and not yet written.
struct Buffer {
  char data[kChunk];
  std::size_t size = 0;
};

// The pty whose master `master` is (opened through a ptmx): unlocked, its slave opened, with
// `terminal`'s modes and window size when that is a terminal. `ptmx` names it in errors.
Result<Pty> PtyOfMaster(UniqueFd master, int terminal, const char* ptmx) {
#ifndef __linux__
  // Linux's devpts owns the slave by the opener already; grantpt would look its path up.
  if (grantpt(master.get()) != 0) {
    return SysError(ErrorCode::kNotFound, std::string("grantpt ") + ptmx);
  }
#endif
  // TIOCSPTLCK: only a pty master answers it.
  if (unlockpt(master.get()) != 0) {
    return SysError(ErrorCode::kNotFound, std::string(ptmx) + " is not a pty master (unlockpt)");
  }
#ifdef TIOCGPTPEER
  UniqueFd slave(ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
#else
  const char* name = ptsname(master.get());
  UniqueFd slave(name == nullptr ? -1 : open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
#endif
  if (!slave.valid()) return SysError(ErrorCode::kNotFound, "open the new pty's slave");
  termios modes{};
  if (isatty(terminal) && tcgetattr(terminal, &modes) == 0) {
    tcsetattr(slave.get(), TCSANOW, &modes);
    winsize size{};
    if (ioctl(terminal, TIOCGWINSZ, &size) == 0) ioctl(slave.get(), TIOCSWINSZ, &size);
  }
  return Pty{std::move(master), std::move(slave)};
}

#ifdef __linux__
// A devpts instance of the session's own (Linux 5.2's mount API): configured and created by
// fsopen/fsconfig, then fsmount makes a mount of it that is attached nowhere. Only its master
// (opened through the mount's ptmx) and slave keep it, and the kernel frees it with them.
Result<Pty> OpenPrivatePty(int terminal, uid_t uid, gid_t gid) {
  UniqueFd context(fsopen("devpts", FSOPEN_CLOEXEC));
  if (!context.valid()) return SysError(CodeForErrno(errno), "fsopen devpts");
  // devpts(5)'s options. The slave is the user's alone; the ptmx only this process opens
  // (root, without CAP_DAC_OVERRIDE: the owner's bits); max=1: nothing else is ever allocated
  // in it, whoever reaches the mount.
  const std::string options[][2] = {{"uid", std::to_string(uid)},
                                    {"gid", std::to_string(gid)},
                                    {"mode", "0600"},
                                    {"ptmxmode", "0600"},
                                    {"max", "1"}};
  for (const auto& [key, value] : options) {
    if (fsconfig(context.get(), FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0) != 0) {
      return SysError(ErrorCode::kInternal, "devpts option " + key + "=" + value);
    }
  }
  if (fsconfig(context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return SysError(CodeForErrno(errno), "create a devpts instance");
  }
  // No MOUNT_ATTR_NODEV: the ptmx and the slave are device nodes of this very mount.
  UniqueFd instance(fsmount(context.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  if (!instance.valid()) return SysError(CodeForErrno(errno), "fsmount the devpts instance");
  UniqueFd master(openat(instance.get(), "ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master.valid()) return SysError(CodeForErrno(errno), "open the devpts instance's ptmx");
  return PtyOfMaster(std::move(master), terminal, "the devpts instance's ptmx");
}
#endif

}  // namespace

Result<Pty> OpenPty(int terminal) {
  UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master.valid()) {
    return SysError(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kUnavailable,
                    "open /dev/ptmx");
  }
  return PtyOfMaster(std::move(master), terminal, "/dev/ptmx");
}

Result<Pty> PtyOrPrivate(Result<Pty> tried, int terminal, uid_t uid, gid_t gid) {
  if (tried) return tried;
#ifdef __linux__
  auto own = OpenPrivatePty(terminal, uid, gid);
  if (own) return own;
  return MakeError(own.error().code, "no pty: " + tried.error().message +
                                         "; and none of its own: " + own.error().message);
#else
  (void)terminal, (void)uid, (void)gid;
  return tried;
#endif
}

Result<pid_t> ForkCommand(const Grant& grant, bool into_pid_namespace) {
  if (into_pid_namespace) return ForkIntoPidNamespace(grant);
  pid_t pid = fork();
  if (pid < 0) return SysError(ErrorCode::kResourceExhausted, "fork");
  return pid;
}

Result<void> StartSession(Pty* pty, const ChildWait& wait) {
  wait.RestoreInChild();
  if (setsid() < 0) return SysError(ErrorCode::kInternal, "setsid");
  if (pty == nullptr) return {};
  if (ioctl(pty->slave.get(), TIOCSCTTY, 0) != 0) {
    return SysError(ErrorCode::kInternal, "make the pty the controlling terminal (TIOCSCTTY)");
  }
  for (int fd = 0; fd <= 2; ++fd) {
    if (dup2(pty->slave.get(), fd) < 0) return SysError(ErrorCode::kInternal, "dup2 the pty");
  }
  pty->master.reset();
  pty->slave.reset();
  return {};
}

Result<int> RelayUntilExit(ChildWait& wait, pid_t child, Pty* pty) {
  // The signals were blocked before the fork: they are taken only inside ppoll.
  wait.Watch(child);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout ends the relaying of output, not the relay

  int master = -1;
  if (pty != nullptr) {
    pty->slave.reset();  // the child has it; the master sees EOF once the child's are closed
    master = pty->master.get();
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  }
  std::optional<RawTerminal> raw;
  if (pty != nullptr) raw.emplace(0);
  Buffer in, out;
  bool in_open = pty != nullptr, master_open = pty != nullptr, out_open = pty != nullptr;
  bool send_eof = false;  // stdin (not a terminal) ended: pass the terminal's EOF character
  int status = 0;
  for (;;) {
    auto ended = wait.Forward();
    if (!ended) return std::unexpected(std::move(ended.error()));
    if (*ended) {
      status = **ended;
      break;
    }
    if (wait.TakeWindowChange() && master >= 0) {
      winsize size{};
      if (ioctl(0, TIOCGWINSZ, &size) == 0) ioctl(master, TIOCSWINSZ, &size);
    }
    pollfd fds[3] = {{.fd = -1, .events = POLLIN}, {.fd = -1}, {.fd = -1, .events = POLLOUT}};
    if (in_open && in.size == 0 && !send_eof) fds[0].fd = 0;
    if (master_open) {
      if (out.size == 0) fds[1].events |= POLLIN;
      if (in.size > 0 || send_eof) fds[1].events |= POLLOUT;
      if (fds[1].events != 0) fds[1].fd = master;
    }
    if (out_open && out.size > 0) fds[2].fd = 1;
    if (ppoll(fds, 3, nullptr, &wait.wait_mask()) < 0) {
      if (errno == EINTR) continue;
      return SysError(ErrorCode::kInternal, "ppoll");
    }
    if (fds[0].revents != 0) {
      ssize_t n = read(0, in.data, sizeof in.data);
      if (n > 0) {
        in.size = static_cast<std::size_t>(n);
      } else if (n == 0 || errno != EINTR) {
        in_open = false;
        send_eof = !isatty(0);
      }
    }
    if (fds[1].revents != 0) {
      if ((fds[1].revents & POLLIN) != 0 || (fds[1].revents & (POLLHUP | POLLERR)) != 0) {
        ssize_t n = read(master, out.data, sizeof out.data);
        if (n > 0) {
          out.size = out_open ? static_cast<std::size_t>(n) : 0;  // a gone stdout: discard
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          master_open = false;  // EIO: every slave descriptor is closed
          in.size = 0;
        }
      }
      if (master_open && (fds[1].revents & POLLOUT) != 0) {
        if (in.size > 0) {
          ssize_t n = write(master, in.data, in.size);
          if (n > 0) {
            in.size -= static_cast<std::size_t>(n);
            std::memmove(in.data, in.data + n, in.size);
          }
        } else if (send_eof) {
          termios modes{};
          char eof = tcgetattr(master, &modes) == 0 ? static_cast<char>(modes.c_cc[VEOF]) : '\x04';
          if (write(master, &eof, 1) == 1) send_eof = false;
        }
      }
    }
    if (fds[2].revents != 0) {
      if (!WriteAll(1, out.data, out.size)) out_open = false;
      out.size = 0;
    }
  }
  // The child is gone: what it wrote last is still in the pty.
  if (master_open) {
    if (out_open && out.size > 0) out_open = WriteAll(1, out.data, out.size);
    for (;;) {
      ssize_t n = read(master, out.data, sizeof out.data);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (out_open) out_open = WriteAll(1, out.data, static_cast<std::size_t>(n));
    }
  }
  return ExitCodeOf(status);
}

}  // namespace nsbroker
