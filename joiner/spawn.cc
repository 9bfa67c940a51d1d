// Running things inside a grant: a command (fork, enter, fork again for a pid namespace,
// exec) or a function on a thread inside the network namespace only.
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <system_error>
#include <thread>

#include "child_wait.h"
#include "enter.h"
#include "nsbroker/join.h"

namespace nsbroker {
namespace {

// What a spawned child writes to its close-on-exec report pipe when it fails before exec;
// a successful exec closes the pipe with nothing written. One write of at most PIPE_BUF
// bytes is atomic, so the parent never sees half a report.
struct ReportHeader {
  std::int32_t code;
  std::int32_t sys_errno;
  std::uint32_t length;
};
constexpr std::size_t kMaxReport = 2048;

[[noreturn]] void ReportAndExit(int fd, const Error& error, int status) {
  char buf[kMaxReport];
  std::size_t length = std::min(error.message.size(), sizeof buf - sizeof(ReportHeader));
  ReportHeader header{static_cast<std::int32_t>(error.code), error.sys_errno,
                      static_cast<std::uint32_t>(length)};
  std::memcpy(buf, &header, sizeof header);
  std::memcpy(buf + sizeof header, error.message.data(), length);
  ssize_t ignored = write(fd, buf, sizeof header + length);
  (void)ignored;  // nobody is left to tell
  _exit(status);
}

// Reads the child's report until every write end is closed: empty means exec succeeded.
Result<void> ReadReport(BorrowedFd fd) {
  std::string data;
  char buf[kMaxReport];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  if (data.empty()) return {};
  ReportHeader header;
  if (data.size() < sizeof header) {
    return MakeError(ErrorCode::kInternal, "the spawned child failed with a short report");
  }
  std::memcpy(&header, data.data(), sizeof header);
  std::size_t length = std::min<std::size_t>(header.length, data.size() - sizeof header);
  Error error{static_cast<ErrorCode>(header.code), header.sys_errno,
              data.substr(sizeof header, length)};
  if (header.code < 0 || header.code > static_cast<int>(ErrorCode::kInternal)) {
    error.code = ErrorCode::kInternal;
  }
  return std::unexpected(std::move(error));
}

// Makes `fd` the child's descriptor `target`; a descriptor already in place only loses
// close-on-exec (dup2 onto itself would leave the flag set and exec would close it).
Result<void> Redirect(int fd, int target) {
  if (fd < 0) return {};
  if (fd == target) {
    if (fcntl(fd, F_SETFD, 0) != 0) return SysError(ErrorCode::kInternal, "fcntl F_SETFD");
    return {};
  }
  if (dup2(fd, target) < 0) return SysError(ErrorCode::kInternal, "dup2");
  return {};
}

// The middle process of Spawn after a pid namespace: it stands for the command, so it
// passes on the signals a caller sends to the pid it was given (ChildWait, kShared: a
// terminal's reach the command directly), and ends as the command ended (the same signal,
// without a core dump of its own, or the same exit code).
[[noreturn]] void StandInFor(ChildWait& wait, pid_t command) {
  wait.Watch(command);
  auto waited = wait.Wait();
  if (!waited) _exit(125);
  int status = *waited;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    kill(getpid(), sig);
  }
  _exit(ExitCodeOf(status));
}

// The child of Spawn: enter, maybe fork into the pid namespace, exec. Never returns.
[[noreturn]] void SpawnChild(int report, const Grant& grant, const std::vector<std::string>& argv,
                             const SpawnOptions& options) {
  for (auto [fd, target] : {std::pair{options.stdin_fd, 0}, std::pair{options.stdout_fd, 1},
                            std::pair{options.stderr_fd, 2}}) {
    if (auto r = Redirect(fd, target); !r) ReportAndExit(report, r.error(), 125);
  }
  auto entered = Enter(grant, options.enter);
  if (!entered) ReportAndExit(report, entered.error(), 125);
  if (auto ids = SetIds(options.uid, options.gid, entered->user); !ids) {
    ReportAndExit(report, ids.error(), 125);
  }
  if (entered->pid && options.fork_after_pid) {
    ChildWait wait(ChildWait::Session::kShared);
    auto command = ForkIntoPidNamespace(grant);
    if (!command) ReportAndExit(report, command.error(), 125);
    if (*command > 0) {
      close(report);
      StandInFor(wait, *command);
    }
    wait.RestoreInChild();
  }
  Error error = Exec(argv);
  ReportAndExit(report, error, error.sys_errno == ENOENT ? 127 : 126);
}

}  // namespace

Result<pid_t> Spawn(const Grant& grant, const std::vector<std::string>& argv,
                    const SpawnOptions& options) {
  if (argv.empty()) return MakeError(ErrorCode::kInvalidRequest, "no command to run");
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) return SysError(ErrorCode::kResourceExhausted, "pipe2");
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  pid_t pid = fork();
  if (pid < 0) return SysError(ErrorCode::kResourceExhausted, "fork");
  if (pid == 0) {
    // Above the standard descriptors, so that redirecting them cannot close the report.
    int report = fcntl(write_end.get(), F_DUPFD_CLOEXEC, 3);
    if (report < 0) _exit(125);
    // Only `report` may keep the pipe open: the middle process of a pid namespace closes
    // it before waiting, and the parent waits for end-of-file.
    write_end.reset();
    read_end.reset();
    SpawnChild(report, grant, argv, options);
  }
  write_end.reset();
  auto report = ReadReport(read_end);
  if (!report) {
    (void)WaitForExit(pid);  // reap the failed child; its report says why
    return std::unexpected(std::move(report.error()));
  }
  return pid;
}

Result<void> RunInNetworkImpl(const Grant& grant, const std::function<void()>& fn) {
  const GrantEntry* net = grant.Find(NsKind::kNet);
  if (net == nullptr) return MakeError(ErrorCode::kNotFound, "the grant has no 'net' entry");
  Result<void> result;
  std::exception_ptr thrown;
  try {
    // A thread of its own: setns(CLONE_NEWNET) changes only the calling thread, and this
    // one ends with fn, so no other thread ever runs in the target's network namespace.
    std::thread worker([&] {
      result = platform::EnterNetworkOnThisThread(*net);
      if (!result) return;
      try {
        fn();
      } catch (...) {
        thrown = std::current_exception();
      }
    });
    worker.join();
  } catch (const std::system_error& e) {
    return MakeError(ErrorCode::kResourceExhausted, std::string("thread: ") + e.what());
  }
  if (thrown) std::rethrow_exception(thrown);
  return result;
}

}  // namespace nsbroker
