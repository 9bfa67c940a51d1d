#include "privsep.h"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <vector>

#include "datagram.h"
#include "process.h"
#include "sealed_memfd.h"
#include "trusted_file.h"

namespace nsbroker {
namespace {

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kDaemonSignals) sigaddset(&set, sig);
  return set;
}

// Keeps `fd` open across the exec.
Result<void> Inherit(const UniqueFd& fd) {
  if (fcntl(fd.get(), F_SETFD, 0) != 0) return SysError(ErrorCode::kInternal, "fcntl F_SETFD");
  return {};
}

}  // namespace

void BlockDaemonSignals() {
  sigset_t set = DaemonSignals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
}

void UnblockDaemonSignals() {
  sigset_t set = DaemonSignals();
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

Result<Forked> ForkServer(int death_signal) {
  auto pair = SeqpacketPair();
  if (!pair) return std::unexpected(std::move(pair.error()));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return SysError(ErrorCode::kResourceExhausted, "fork the server");
  if (pid > 0) return Forked{.pid = pid, .channel = std::move(pair->first)};
  pair->first.reset();
  if (auto set = SetParentDeathSignal(death_signal); !set) return std::unexpected(set.error());
  // The opener may have died before the death signal was armed: then nothing would come.
  if (getppid() != parent) return MakeError(ErrorCode::kUnavailable, "the opener exited");
  return Forked{.pid = 0, .channel = std::move(pair->second)};
}

Result<OpenerFiles> FindOpener() {
  auto self_path = SelfExecutablePath();
  if (!self_path) return std::unexpected(std::move(self_path.error()));
  std::string dir = self_path->substr(0, self_path->rfind('/'));
  OpenerFiles files{.path = dir + "/" NSB_OPENER_RELATIVE};
  auto opener = OpenExecutable(files.path);
  if (!opener) {
    return MakeError(opener.error().code, "the opener " + opener.error().message +
                                              " (nsbrokerd runs it for run_as; docs/PRIVSEP.md)");
  }
  // Root runs it: whoever could write it, or replace it in one of its directories, would be
  // root (trusted_file.h). An untrusted directory on the way fails however the file looks.
  std::string opener_dir = files.path.substr(0, files.path.rfind('/'));
  for (auto trusted : {CheckTrustedFile(*opener, files.path), CheckTrustedDirectory(opener_dir)}) {
    if (!trusted) {
      return MakeError(ErrorCode::kPermissionDenied, "the opener " + trusted.error().message);
    }
  }
  files.opener = std::move(*opener);
  auto self = OpenSelfExecutable();
  if (!self) return std::unexpected(std::move(self.error()));
  files.self = std::move(*self);
  return files;
}

Result<void> ExecOpener(OpenerFiles files, Handover handover, UniqueFd channel) {
  handover.channel = channel.get();
  handover.self_exe = files.self.get();
  auto memfd = SealedMemfd("nsbroker.handover", EncodeHandover(handover));
  if (!memfd) return std::unexpected(std::move(memfd.error()));
  for (const UniqueFd* fd : {&channel, &files.self, &*memfd}) {
    if (auto kept = Inherit(*fd); !kept) return kept;
  }
  std::string memfd_arg = std::to_string(memfd->get());
  std::string name = "nsbroker-opener", flag = "--handover";
  char* argv[] = {name.data(), flag.data(), memfd_arg.data(), nullptr};
  // systemd's two variables, which only say where to notify and whether stderr is the journal.
  std::vector<std::string> env;
  for (const char* var : {"NOTIFY_SOCKET", "JOURNAL_STREAM"}) {
    if (const char* value = std::getenv(var)) env.push_back(std::string(var) + "=" + value);
  }
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  auto exec = ExecFd(files.opener, argv, envp.data());
  return MakeError(exec.error().code,
                   "exec the opener " + files.path + ": " + exec.error().message);
}

}  // namespace nsbroker
