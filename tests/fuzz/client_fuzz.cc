// Fuzzes what a hostile broker can send the native client (libnsjoin's Client, so nsjoin
// and jailme): one datagram with real descriptors (namespaces of this process, its root
// directory, /dev/null) through DecodeGrant or DecodeTargetList. Must never crash; a grant
// may hold only the target and kinds asked for, each once, each descriptor identified; every
// descriptor not handed out must be closed.
//   input: [mode] [kinds, 2 bytes] [n] [n pool indexes] [response bytes...]
//   mode bit 0: List instead of Join; kinds: bit i asks for kAllKinds[i] (Join only)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "client_decode.h"
#include "google/protobuf/stubs/logging.h"

namespace {

constexpr std::array<const char*, 11> kPoolPaths = {"/proc/self/ns/cgroup",
                                                    "/proc/self/ns/ipc",
                                                    "/proc/self/ns/mnt",
                                                    "/proc/self/ns/net",
                                                    "/proc/self/ns/pid",
                                                    "/proc/self/ns/time",
                                                    "/proc/self/ns/user",
                                                    "/proc/self/ns/uts",
                                                    "/proc/self/ns/pid_for_children",
                                                    "/",
                                                    "/dev/null"};
constexpr std::string_view kTarget = "web1";

std::vector<int> OpenPool() {
  std::vector<int> pool;
  for (const char* path : kPoolPaths) pool.push_back(open(path, O_PATH | O_CLOEXEC));
  // O_PATH is what the broker sends for ROOT/CWD; namespaces must be opened for real.
  for (std::size_t i = 0; i + 2 < kPoolPaths.size(); ++i) {
    close(pool[i]);
    pool[i] = open(kPoolPaths[i], O_RDONLY | O_CLOEXEC);
  }
  return pool;
}

[[noreturn]] void Violation(const std::string& what) {
  std::fprintf(stderr, "client_fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

// What the client promises to accept for a request of `kinds` (client.h), written out
// independently of client.cc: what was named, and every kind but the directories (root,
// cwd, cgroup directory) when nothing else was named; an empty request takes them too.
bool Asked(std::span<const nsbroker::NsKind> kinds, nsbroker::NsKind kind) {
  using nsbroker::NsKind;
  if (kinds.empty() || std::find(kinds.begin(), kinds.end(), kind) != kinds.end()) return true;
  auto directory = [](NsKind k) {
    return k == NsKind::kRoot || k == NsKind::kCwd || k == NsKind::kCgroupDir;
  };
  return std::all_of(kinds.begin(), kinds.end(), directory) && !directory(kind);
}

}  // namespace

// protobuf logs every string field with invalid UTF-8 to stderr; at fuzzing rates that
// is most of the run time, and says nothing the decoder's result does not.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nsbroker;
  static const std::vector<int> pool = OpenPool();
  if (size < 4) return 0;
  const bool list = (data[0] & 1) != 0;
  const unsigned mask = data[1] | (unsigned{data[2]} << 8);
  std::vector<NsKind> kinds;
  for (std::size_t i = 0; i < kAllKinds.size(); ++i) {
    if (mask & (1u << i)) kinds.push_back(kAllKinds[i]);
  }
  // One past a grant's most (one per kind), so that "too many" is reachable.
  const std::size_t n = data[3] % (kAllKinds.size() + 2);
  if (size < 4 + n) return 0;
  Datagram datagram;
  std::vector<int> numbers;
  for (std::size_t i = 0; i < n; ++i) {
    datagram.fds.emplace_back(dup(pool[data[4 + i] % pool.size()]));
    numbers.push_back(datagram.fds.back().get());
  }
  datagram.bytes.assign(reinterpret_cast<const char*>(data) + 4 + n, size - 4 - n);

  if (list) {
    auto targets = DecodeTargetList(datagram);
    if (!targets && targets.error().message.empty()) Violation("an error without a message");
    datagram = {};
  } else {
    auto grant = DecodeGrant(std::move(datagram), kTarget, kinds);
    if (!grant) {
      if (grant.error().message.empty()) Violation("an error without a message");
    } else {
      if (grant->target != kTarget) Violation("granted another target: " + grant->target);
      std::vector<int> kept;
      for (const GrantEntry& entry : grant->entries) {
        if (!Asked(kinds, entry.kind)) Violation("granted a kind not asked for");
        if (std::count_if(grant->entries.begin(), grant->entries.end(),
                          [&](const GrantEntry& e) { return e.kind == entry.kind; }) != 1) {
          Violation("a kind granted twice");
        }
        if (!entry.fd.valid() || !IsOpen(entry.fd.get())) Violation("an entry without its fd");
        kept.push_back(entry.fd.get());
      }
      for (int fd : numbers) {
        if (std::find(kept.begin(), kept.end(), fd) == kept.end() && IsOpen(fd)) {
          Violation("a descriptor neither handed out nor closed");
        }
      }
    }
  }
  // Single-threaded: nothing else can have reused these numbers, so each must be closed.
  for (int fd : numbers) {
    if (fd >= 0 && IsOpen(fd)) Violation("a descriptor left open");
  }
  return 0;
}
