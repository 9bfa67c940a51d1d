// Fuzzes libnsjoin's uWSGI greeting parser with real descriptors: the input picks how many
// and which (namespaces of this process, /dev/null), then the greeting bytes. Must never
// crash, and must close every descriptor it was given, whatever it returns.
//   input: [n] [n pool indexes] [greeting bytes...]
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "nsbroker/uwsgi.h"

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

std::vector<int> OpenPool() {
  std::vector<int> pool;
  for (const char* path : kPoolPaths) pool.push_back(open(path, O_RDONLY | O_CLOEXEC));
  return pool;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<int> pool = OpenPool();
  if (size == 0) return 0;
  // Up to two past the limit, so that "too many" is reachable.
  std::size_t n = data[0] % (nsbroker::kUwsgiMaxFds + 3);
  if (size < 1 + n) return 0;
  std::vector<nsbroker::UniqueFd> fds;
  std::vector<int> numbers;
  for (std::size_t i = 0; i < n; ++i) {
    fds.emplace_back(dup(pool[data[1 + i] % pool.size()]));
    numbers.push_back(fds.back().get());
  }
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1 + n, size - 1 - n);
  {
    auto grant = nsbroker::ParseUwsgiGreeting(bytes, std::move(fds), "fuzz.sock");
    if (grant && grant->entries.empty()) std::abort();  // a grant always holds something
  }
  // Single-threaded: nothing else can have reused these numbers, so each must be closed.
  for (int fd : numbers) {
    if (fd >= 0 && fcntl(fd, F_GETFD) != -1) std::abort();
  }
  return 0;
}
