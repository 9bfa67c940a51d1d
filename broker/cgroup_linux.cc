#include "cgroup_linux.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <optional>
#include <string_view>

namespace nsbroker {
namespace {

constexpr std::size_t kMaxProcFile = 1 << 20;  // mountinfo of a busy host; cgroup is tiny

Result<std::string> ReadSmallFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return SysError("open " + path);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read " + path);
    if (n == 0) return text;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxProcFile) return MakeError(ErrorCode::kInternal, path + " is too big");
  }
}

// mountinfo escapes space, tab, newline and backslash as \ooo (proc_pid_mountinfo(5)).
std::string Unescape(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3') {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

// The mount point of a cgroup2 mount of the whole hierarchy (root "/"): /sys/fs/cgroup on a
// unified host, /sys/fs/cgroup/unified on a hybrid one.
std::optional<std::string> Cgroup2MountPoint(std::string_view mountinfo) {
  while (!mountinfo.empty()) {
    std::size_t eol = mountinfo.find('\n');
    std::string_view line = mountinfo.substr(0, eol);
    mountinfo.remove_prefix(eol == std::string_view::npos ? mountinfo.size() : eol + 1);
    std::size_t dash = line.find(" - ");
    if (dash == std::string_view::npos || line.substr(dash + 3).rfind("cgroup2 ", 0) != 0) {
      continue;
    }
    // id parent major:minor root mount-point ...
    std::string_view fields[5];
    std::string_view rest = line.substr(0, dash);
    int n = 0;
    for (; n < 5 && !rest.empty(); ++n) {
      std::size_t sp = rest.find(' ');
      fields[n] = rest.substr(0, sp);
      rest.remove_prefix(sp == std::string_view::npos ? rest.size() : sp + 1);
    }
    if (n == 5 && fields[3] == "/") return Unescape(fields[4]);
  }
  return std::nullopt;
}

}  // namespace

Result<EntryFd> OpenCgroupDirectory(const std::string& proc_dir) {
  auto cgroups = ReadSmallFile(proc_dir + "/cgroup");
  if (!cgroups) return std::unexpected(std::move(cgroups.error()));
  // The v2 line is "0::/PATH"; hybrid hosts list the v1 hierarchies too.
  std::string_view text = *cgroups;
  std::size_t at = text.rfind("0::/", 0) == 0 ? 0 : text.find("\n0::/");
  if (at == std::string_view::npos) {
    return MakeError(ErrorCode::kUnavailable, proc_dir + "/cgroup has no cgroup v2 path");
  }
  text.remove_prefix(at == 0 ? 3 : at + 4);
  std::string path(text.substr(0, text.find('\n')));
  auto mountinfo = ReadSmallFile("/proc/self/mountinfo");
  if (!mountinfo) return std::unexpected(std::move(mountinfo.error()));
  auto mount_point = Cgroup2MountPoint(*mountinfo);
  if (!mount_point) {
    return MakeError(ErrorCode::kUnavailable, "no cgroup2 mount in /proc/self/mountinfo");
  }
  UniqueFd root(open(mount_point->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return SysError("open " + *mount_point);
  open_how how{
      .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
  std::string relative = path == "/" ? "." : path.substr(1);
  std::string what = *mount_point + path;
  UniqueFd fd(
      static_cast<int>(syscall(SYS_openat2, root.get(), relative.c_str(), &how, sizeof how)));
  if (!fd.valid()) return SysError("open " + what);
  struct statfs fs;
  struct stat st;
  if (fstatfs(fd.get(), &fs) != 0 || fstat(fd.get(), &st) != 0) return SysError("fstat " + what);
  if (fs.f_type != CGROUP2_SUPER_MAGIC) {
    return MakeError(ErrorCode::kInvalidRequest, what + " is not on a cgroup2 file system");
  }
  return EntryFd{
      .kind = NsKind::kCgroupDir, .fd = std::move(fd), .inode = st.st_ino, .device = st.st_dev};
}

}  // namespace nsbroker
