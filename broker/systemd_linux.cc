#include <fcntl.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "systemd.h"

namespace nsbroker {
namespace {

// Checks a passed descriptor: a listening AF_UNIX socket of `type`; then close-on-exec and
// non-blocking like the sockets we bind ourselves.
Result<void> CheckListening(int fd, int type, const std::string& what) {
  if (sd_is_socket_unix(fd, type, 1, nullptr, 0) <= 0) {
    return MakeError(ErrorCode::kInvalidRequest,
                     what + " is not a listening AF_UNIX " +
                         (type == SOCK_SEQPACKET ? "SOCK_SEQPACKET" : "SOCK_STREAM") + " socket");
  }
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    return SysError(what + ": fcntl");
  }
  return {};
}

}  // namespace

Result<PassedSockets> TakePassedSockets() {
  char** names = nullptr;
  // unset_environment: children (none today) must not think the sockets are theirs.
  int count = sd_listen_fds_with_names(1, &names);
  if (count < 0) {
    errno = -count;
    return SysError("LISTEN_FDS");
  }
  // Own every descriptor before any check, so that an error closes them all.
  std::vector<std::pair<std::string, UniqueFd>> fds;
  for (int i = 0; i < count; ++i) {
    fds.emplace_back(names != nullptr && names[i] != nullptr ? names[i] : "",
                     UniqueFd(SD_LISTEN_FDS_START + i));
  }
  if (names != nullptr) {
    for (int i = 0; i < count; ++i) std::free(names[i]);
    std::free(static_cast<void*>(names));
  }
  PassedSockets passed;
  for (auto& [name, fd] : fds) {
    std::string what =
        "LISTEN_FDS: descriptor " + std::to_string(fd.get()) + " named '" + name + "'";
    bool lone = fds.size() == 1;
    UniqueFd* slot = name == "uwsgi"            ? &passed.uwsgi
                     : name == "native" || lone ? &passed.native
                                                : nullptr;
    if (slot == nullptr) {
      return MakeError(ErrorCode::kInvalidRequest,
                       what + ": FileDescriptorName= must be 'native' or 'uwsgi'");
    }
    if (slot->valid()) {
      return MakeError(ErrorCode::kInvalidRequest, what + ": passed twice");
    }
    int type = slot == &passed.uwsgi ? SOCK_STREAM : SOCK_SEQPACKET;
    auto checked = CheckListening(fd.get(), type, what);
    if (!checked) return std::unexpected(std::move(checked.error()));
    *slot = std::move(fd);
  }
  return passed;
}

void NotifyReady(std::string_view status) {
  std::string state = "READY=1\nSTATUS=";
  state += status;
  sd_notify(0, state.c_str());
}

void NotifyReloading() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  std::uint64_t usec = static_cast<std::uint64_t>(now.tv_sec) * 1000000 +
                       static_cast<std::uint64_t>(now.tv_nsec) / 1000;
  sd_notifyf(0, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%" PRIu64, usec);
}

void NotifyStopping() { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

bool StderrIsJournal() {
  static const bool journal = [] {
    const char* stream = std::getenv("JOURNAL_STREAM");
    unsigned long long dev = 0, ino = 0;
    struct stat st;
    if (stream == nullptr || std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2 ||
        fstat(STDERR_FILENO, &st) != 0) {
      return false;
    }
    return st.st_dev == dev && st.st_ino == ino;
  }();
  return journal;
}

}  // namespace nsbroker
