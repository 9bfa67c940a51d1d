// Fuzzes libnsjoin's uWSGI greeting reader and parser with real descriptors: the input picks
// how many and which (namespaces of this process, /dev/null), then the greeting bytes, which
// go either straight to ParseUwsgiGreeting or, as a server sends them, over a fresh stream
// socket pair (descriptors on the first piece, the writer shut down after the last) into
// ReadUwsgiGrant. Must never crash, and must close every descriptor it was given, whatever
// it returns.
//   input: [mode] [n] [n pool indexes] [greeting bytes...]
//   mode bit 0: over a socket; bits 1-4: the first piece's size (0: all in one); bit 5: the
//   reader has SO_PASSCRED (credentials arrive as a second kind of control message)
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nsbroker/uwsgi.h"
#include "wire.h"

namespace {

constexpr std::array<const char*, 10> kPoolPaths = {"/proc/self/ns/net",
                                                    "/proc/self/ns/uts",
                                                    "/proc/self/ns/ipc",
                                                    "/proc/self/ns/pid",
                                                    "/proc/self/ns/pid_for_children",
                                                    "/proc/self/ns/mnt",
                                                    "/proc/self/ns/cgroup",
                                                    "/proc/self/ns/time",
                                                    "/proc/self/ns/user",
                                                    "/dev/null"};

// The pool, plus a uts namespace other than ours, so that two different namespaces of one
// kind can arrive (this process moves to a new uts namespace; as root only).
std::vector<int> OpenPool() {
  std::vector<int> pool;
  for (const char* path : kPoolPaths) pool.push_back(open(path, O_RDONLY | O_CLOEXEC));
  if (unshare(CLONE_NEWUTS) == 0) pool.push_back(open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC));
  return pool;
}

// What a server writes: `bytes` in one or two sends, the descriptors on the first, then EOF.
// Our own copies of the descriptors are closed once they are in flight.
nsbroker::Result<nsbroker::Grant> OverSocket(std::string_view bytes,
                                             std::vector<nsbroker::UniqueFd> fds, std::size_t first,
                                             bool passcred) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  nsbroker::UniqueFd reader(sv[0]), writer(sv[1]);
  int on = 1;
  if (passcred && setsockopt(reader.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    std::abort();
  }
  std::vector<int> numbers;
  for (const auto& fd : fds) numbers.push_back(fd.get());
  if (first == 0 || first > bytes.size()) first = bytes.size();
  // A stream carries descriptors only with at least one byte; with none they stay here.
  if (!nsbroker::SendDatagram(writer, bytes.substr(0, first),
                              first > 0 ? std::span<const int>(numbers) : std::span<const int>()) ||
      (first < bytes.size() && !nsbroker::SendDatagram(writer, bytes.substr(first)))) {
    std::abort();  // a few KiB into an empty socket buffer
  }
  fds.clear();
  writer.reset();
  return nsbroker::ReadUwsgiGrant(reader, "fuzz.sock", std::chrono::milliseconds(1000));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<int> pool = OpenPool();
  if (size < 2) return 0;
  const bool socket = (data[0] & 1) != 0;
  const std::size_t first = (data[0] >> 1) & 15u;
  const bool passcred = (data[0] & 32) != 0;
  // Up to three past the limit: "too many" (65, 66), and control data truncated (67: the
  // reader's buffer for 65 descriptors holds 66, CMSG_SPACE rounds up to 8 bytes).
  std::size_t n = data[1] % (nsbroker::kUwsgiMaxFds + 4);
  if (size < 2 + n) return 0;
  std::vector<nsbroker::UniqueFd> fds;
  std::vector<int> numbers;
  for (std::size_t i = 0; i < n; ++i) {
    fds.emplace_back(dup(pool[data[2 + i] % pool.size()]));
    numbers.push_back(fds.back().get());
  }
  std::string_view bytes(reinterpret_cast<const char*>(data) + 2 + n, size - 2 - n);
  std::vector<int> received;
  {
    auto grant = socket ? OverSocket(bytes, std::move(fds), first, passcred)
                        : nsbroker::ParseUwsgiGreeting(bytes, std::move(fds), "fuzz.sock");
    if (grant && grant->entries.empty()) std::abort();  // a grant always holds something
    if (grant) {
      for (const auto& entry : grant->entries) {
        if (!entry.fd.valid() || fcntl(entry.fd.get(), F_GETFD) == -1) std::abort();
        received.push_back(entry.fd.get());
      }
    }
  }
  // Single-threaded: nothing else can have reused these numbers, so each must be closed.
  for (int fd : numbers) {
    if (fd >= 0 && fcntl(fd, F_GETFD) != -1) std::abort();
  }
  for (int fd : received) {
    if (fcntl(fd, F_GETFD) != -1) std::abort();
  }
  return 0;
}
