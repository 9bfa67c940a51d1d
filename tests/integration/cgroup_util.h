// A cgroup v2 directory of its own for a test's target, under the test's own cgroup on the
// cgroup2 mount (/sys/fs/cgroup/unified on a hybrid host, /sys/fs/cgroup on a unified one).
// Never touches a cgroup it did not create; removes it when destroyed (after its processes).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace nsbroker::testing {

// The v2 path of `pid` ("/user.slice/..."), from /proc/PID/cgroup's "0::" line.
inline std::string CgroupPath(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return "";
}

inline std::string Cgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::size_t dash = line.find(" - cgroup2 ");
    if (dash == std::string::npos) continue;
    std::istringstream fields(line.substr(0, dash));
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (root == "/") return point;
  }
  return "";
}

class ScopedCgroup {
 public:
  // NAME under this process's cgroup; path() is its v2 path, "" if it could not be made.
  explicit ScopedCgroup(const std::string& name) {
    std::string mine = CgroupPath(getpid());
    std::string mount = Cgroup2Mount();
    if (mine.empty() || mount.empty()) return;
    std::string path = (mine == "/" ? "" : mine) + "/" + name;
    if (mkdir((mount + path).c_str(), 0755) != 0) return;
    dir_ = mount + path;
    path_ = path;
  }
  ~ScopedCgroup() {
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  ScopedCgroup(const ScopedCgroup&) = delete;
  ScopedCgroup& operator=(const ScopedCgroup&) = delete;

  const std::string& path() const { return path_; }
  bool Move(pid_t pid) const {
    std::ofstream procs(dir_ + "/cgroup.procs");
    procs << pid << "\n";
    procs.flush();
    return static_cast<bool>(procs);
  }

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace nsbroker::testing
