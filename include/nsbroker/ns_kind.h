// What an entry in a grant is: a namespace kind, the target's root or cwd, or a jail,
// and its names (wire enum, "net", CLONE_NEWNET, /proc/PID/ns/net, NS_GET_NSTYPE).
//
//   auto kind = nsbroker::KindFromName("net");       // std::optional<NsKind>
//   setns(fd.get(), nsbroker::KindCloneFlag(*kind));  // CLONE_NEWNET
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace nsbroker {

// Numbers equal nsbroker.v1.Kind on the wire, so conversion is a checked cast.
enum class NsKind : std::uint8_t {
  kCgroup = 1,
  kIpc = 2,
  kMnt = 3,
  kNet = 4,
  kPid = 5,
  kTime = 6,
  kUser = 7,
  kUts = 8,
  kRoot = 9,        // O_PATH descriptor of the target's root directory (nsenter -r)
  kCwd = 10,        // O_PATH descriptor of the target's working directory (nsenter -w)
  kJail = 11,       // FreeBSD jail
  kCgroupDir = 12,  // O_DIRECTORY descriptor of the target's cgroup v2 directory (nsjoin -c)
};

inline constexpr std::array<NsKind, 8> kNamespaceKinds = {
    NsKind::kCgroup, NsKind::kIpc,  NsKind::kMnt,  NsKind::kNet,
    NsKind::kPid,    NsKind::kTime, NsKind::kUser, NsKind::kUts};

inline constexpr std::array<NsKind, 12> kAllKinds = {
    NsKind::kCgroup, NsKind::kIpc, NsKind::kMnt,  NsKind::kNet, NsKind::kPid,  NsKind::kTime,
    NsKind::kUser,   NsKind::kUts, NsKind::kRoot, NsKind::kCwd, NsKind::kJail, NsKind::kCgroupDir};

// Linux CLONE_NEW* values (uapi ABI, fixed forever); spelled out so that this header
// builds on FreeBSD too. A unit test checks them against <sched.h>.
inline constexpr int kCloneNewCgroup = 0x02000000;
inline constexpr int kCloneNewIpc = 0x08000000;
inline constexpr int kCloneNewNs = 0x00020000;
inline constexpr int kCloneNewNet = 0x40000000;
inline constexpr int kCloneNewPid = 0x20000000;
inline constexpr int kCloneNewTime = 0x00000080;
inline constexpr int kCloneNewUser = 0x10000000;
inline constexpr int kCloneNewUts = 0x04000000;

constexpr bool IsNamespaceKind(NsKind kind) {
  return kind >= NsKind::kCgroup && kind <= NsKind::kUts;
}

// Lower-case name, as in nsenter and /proc/PID/ns: "net", "root", "jail".
constexpr std::string_view KindName(NsKind kind) {
  switch (kind) {
    case NsKind::kCgroup:
      return "cgroup";
    case NsKind::kIpc:
      return "ipc";
    case NsKind::kMnt:
      return "mnt";
    case NsKind::kNet:
      return "net";
    case NsKind::kPid:
      return "pid";
    case NsKind::kTime:
      return "time";
    case NsKind::kUser:
      return "user";
    case NsKind::kUts:
      return "uts";
    case NsKind::kRoot:
      return "root";
    case NsKind::kCwd:
      return "cwd";
    case NsKind::kJail:
      return "jail";
    case NsKind::kCgroupDir:
      return "cgroupdir";
  }
  return "?";
}

// Accepts the lower-case name or the wire enum's upper-case name.
constexpr std::optional<NsKind> KindFromName(std::string_view name) {
  for (NsKind kind : kAllKinds) {
    std::string_view lower = KindName(kind);
    if (name.size() != lower.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != lower[i]) same = false;
    }
    if (same) return kind;
  }
  return std::nullopt;
}

// The wire enum value (nsbroker.v1.Kind) to NsKind; nullopt for UNSPECIFIED or unknown.
constexpr std::optional<NsKind> KindFromWire(int value) {
  if (value < static_cast<int>(NsKind::kCgroup) || value > static_cast<int>(NsKind::kCgroupDir)) {
    return std::nullopt;
  }
  return static_cast<NsKind>(value);
}

constexpr int KindToWire(NsKind kind) { return static_cast<int>(kind); }

// CLONE_NEW* for setns(2)'s nstype; 0 for ROOT, CWD and JAIL.
constexpr int KindCloneFlag(NsKind kind) {
  switch (kind) {
    case NsKind::kCgroup:
      return kCloneNewCgroup;
    case NsKind::kIpc:
      return kCloneNewIpc;
    case NsKind::kMnt:
      return kCloneNewNs;
    case NsKind::kNet:
      return kCloneNewNet;
    case NsKind::kPid:
      return kCloneNewPid;
    case NsKind::kTime:
      return kCloneNewTime;
    case NsKind::kUser:
      return kCloneNewUser;
    case NsKind::kUts:
      return kCloneNewUts;
    default:
      return 0;
  }
}

// NS_GET_NSTYPE returns the CLONE_NEW* value of a namespace descriptor.
constexpr std::optional<NsKind> KindFromNsType(int nstype) {
  for (NsKind kind : kNamespaceKinds) {
    if (KindCloneFlag(kind) == nstype) return kind;
  }
  return std::nullopt;
}

// Entry name under /proc/PID/ns ("mnt", "net"...), or under /proc/PID ("root", "cwd");
// empty for JAIL and CGROUPDIR (a directory of the cgroup2 mount, from /proc/PID/cgroup).
constexpr std::string_view KindProcFile(NsKind kind) {
  return kind == NsKind::kJail || kind == NsKind::kCgroupDir ? std::string_view() : KindName(kind);
}

// Directory entries (ROOT, CWD, CGROUPDIR): sent only when named, never entered by setns.
constexpr bool IsDirectoryKind(NsKind kind) {
  return kind == NsKind::kRoot || kind == NsKind::kCwd || kind == NsKind::kCgroupDir;
}

}  // namespace nsbroker
