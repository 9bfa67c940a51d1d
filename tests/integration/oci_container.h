// OCI containers for the tests: a busybox-static rootfs made here, run by the real runc or
// crun by id under a --root of its own.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "test_util.h"

namespace nsbroker::testing {

inline std::string FirstExisting(std::initializer_list<const char*> paths) {
  for (const char* p : paths) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

// An OCI runtime the containers are run with: its name in the config and where it is.
struct Runtime {
  std::string name;
  std::string path;
};

inline void PrintTo(const Runtime& runtime, std::ostream* out) { *out << runtime.path; }

inline std::vector<Runtime> Runtimes() {
  return {{"runc", FirstExisting({"/usr/sbin/runc", "/usr/bin/runc"})},
          {"crun", FirstExisting({"/usr/bin/crun", "/usr/sbin/crun"})}};
}

// crun refuses to run a container on a hybrid host whose cgroup2 mount has a controller
// ("cgroups in hybrid mode not supported"), as on hosts where hugetlb is left to v2. Without
// the cgroup2 mount in its view it sees a legacy host, and runs the container under v1.
inline bool CrunNeedsALegacyView() {
  std::ifstream in("/sys/fs/cgroup/unified/cgroup.controllers");
  std::string controllers;
  return std::getline(in, controllers) && !controllers.empty();
}

// In the child, before exec: a private mount namespace without /sys/fs/cgroup/unified.
inline void HideCgroup2() {
  if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) ||
      umount2("/sys/fs/cgroup/unified", MNT_DETACH) != 0) {
    _exit(126);
  }
}

// Runs `argv` with stdio on /dev/null (a detached container keeps the runtime's stdio, so a
// pipe would never see its end) and returns its exit code.
inline int RunQuiet(const std::vector<std::string>& argv, bool hide_cgroup2 = false) {
  pid_t pid = fork();
  if (pid == 0) {
    if (hide_cgroup2) HideCgroup2();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A container of `runtime` in a busybox-static rootfs, by id under its own --root; deleted
// (forced) when this object dies.
class Container {
 public:
  Container(const Runtime& runtime, const std::string& id)
      : runtime_(runtime), id_(id), root_(dir_.Join(runtime.name + "-root")) {
    std::string busybox = FirstExisting({"/bin/busybox", "/usr/bin/busybox"});
    std::filesystem::create_directories(dir_.Join("rootfs/bin"));
    std::filesystem::copy_file(busybox, dir_.Join("rootfs/bin/busybox"));
    for (const char* tool : {"sleep", "true", "sh", "hostname"}) {
      std::filesystem::create_symlink("busybox", dir_.Join("rootfs/bin/") + tool);
    }
    RunResult spec = RunCommand({runtime_.path, "spec", "--bundle", dir_.path()});
    EXPECT_EQ(spec.status, 0) << spec.err;
    std::ifstream in(dir_.Join("config.json"));
    std::stringstream text;
    text << in.rdbuf();
    template_ = text.str();
  }
  ~Container() { RunQuiet({runtime_.path, "--root", root_, "delete", "--force", id_}); }

  const Runtime& runtime() const { return runtime_; }
  const std::string& id() const { return id_; }
  const std::string& root() const { return root_; }

  // `RUNTIME run -d` with `hostname`, running `args` (sleep by default); the init's pid, or -1.
  pid_t Run(const std::string& hostname, const std::string& args = "\"sleep\", \"100000\"") {
    std::string config = std::regex_replace(template_, std::regex("\"sh\""), args);
    config = std::regex_replace(config, std::regex("\"terminal\": true"), "\"terminal\": false");
    config = std::regex_replace(config, std::regex("\"hostname\": \"" + runtime_.name + "\""),
                                "\"hostname\": \"" + hostname + "\"");
    std::ofstream(dir_.Join("config.json")) << config;
    bool legacy_view = runtime_.name == "crun" && CrunNeedsALegacyView();
    if (RunQuiet({runtime_.path, "--root", root_, "run", "-d", "--bundle", dir_.path(), id_},
                 legacy_view) != 0) {
      return -1;
    }
    return Pid();
  }
  pid_t Pid() const {
    RunResult state = RunCommand({runtime_.path, "--root", root_, "state", id_});
    std::smatch m;
    if (!std::regex_search(state.out, m, std::regex("\"pid\": ([0-9]+)"))) return -1;
    return std::stoi(m[1]);
  }
  void KillAndDelete() {
    RunQuiet({runtime_.path, "--root", root_, "kill", id_, "KILL"});
    RunQuiet({runtime_.path, "--root", root_, "delete", "--force", id_});
  }

 private:
  TempDir dir_;
  Runtime runtime_;
  std::string id_;
  std::string root_;
  std::string template_;
};

// The target's `oci { ... }`; runc is the default runtime: its targets do not name it.
inline std::string OciConfig(const Container& c) {
  std::string runtime = c.runtime().name == "runc" ? "" : " runtime: \"" + c.runtime().name + "\"";
  return "oci { id: \"" + c.id() + "\"" + runtime + " root: \"" + c.root() + "\" }";
}

}  // namespace nsbroker::testing
