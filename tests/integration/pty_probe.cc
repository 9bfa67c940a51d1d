// A command for the terminal tests to run inside a target (jailme_test, nsjoin_test):
//   pty_probe tiocsti TEXT   pushes TEXT into its stdin's terminal input (TIOCSTI), prints
//                            "tiocsti: ok" or "tiocsti: <errno name>"
//   pty_probe winch          prints "size ROWS COLS", waits for one SIGWINCH, prints it again
//   pty_probe devpts         prints "devpts MAJ:MIN" (the devpts instance its stdin belongs
//                            to: fstat's st_dev), or "devpts: not a pty"
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

void PrintSize() {
  winsize size{};
  ioctl(0, TIOCGWINSZ, &size);
  std::printf("size %u %u\n", size.ws_row, size.ws_col);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view what = argc > 1 ? argv[1] : "";
  if (what == "tiocsti" && argc == 3) {
    int err = 0;
    for (const char* c = argv[2]; *c != '\0' && err == 0; ++c) {
      if (ioctl(0, TIOCSTI, c) != 0) err = errno;
    }
    std::printf("tiocsti: %s\n", err == 0 ? "ok" : strerrorname_np(err));
    return 0;
  }
  if (what == "winch") {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    PrintSize();
    int sig = 0;
    sigwait(&set, &sig);
    PrintSize();
    return 0;
  }
  if (what == "devpts") {
    // A pty slave is a character device of major 136-143 (UNIX98_PTY_SLAVE_MAJOR) on the
    // devpts that made it: its number repeats in every instance, the instance's st_dev not.
    struct stat st{};
    if (fstat(0, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) < 136 ||
        major(st.st_rdev) > 143) {
      std::printf("devpts: not a pty\n");
      return 1;
    }
    std::printf("devpts %u:%u\n", major(st.st_dev), minor(st.st_dev));
    return 0;
  }
  std::fprintf(stderr, "usage: pty_probe tiocsti TEXT | winch | devpts\n");
  return 2;
}
