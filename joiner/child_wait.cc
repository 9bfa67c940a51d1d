#include "child_wait.h"

#include <sys/wait.h>

#include <cerrno>
#include <iterator>
#include <string>

#include "nsbroker/join.h"

namespace nsbroker {
namespace {

// Every signal a ChildWait may touch, in the order of ChildWait::caller_actions_.
constexpr int kHandled[] = {SIGCHLD, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH};
constexpr int kMaxSignal = 64;  // above every signal in kHandled, on Linux and FreeBSD

// Set by the handlers, taken by ChildWait::Forward. Only written while the signals are
// unblocked, i.e. inside sigsuspend or ppoll, so Forward's read-then-clear cannot race them.
volatile sig_atomic_t g_noted[kMaxSignal];

void Note(int sig) { g_noted[sig] = 1; }

bool Takes(volatile sig_atomic_t& noted) {
  if (noted == 0) return false;
  noted = 0;
  return true;
}

// What a session does with `sig` once the child runs.
enum class Action { kForward, kIgnore, kNote, kNone };

Action ActionFor(ChildWait::Session session, int sig) {
  bool own = session == ChildWait::Session::kOwn;
  switch (sig) {
    case SIGCHLD:
      return Action::kNote;
    case SIGINT:
    case SIGQUIT:
      return own ? Action::kForward : Action::kIgnore;
    case SIGWINCH:
      return own ? Action::kNote : Action::kNone;
    default:
      return Action::kForward;
  }
}

void SetHandler(int sig, void (*handler)(int)) {
  struct sigaction action{};
  action.sa_handler = handler;
  // Stopped or continued children are no news: only an ended one wakes the wait.
  action.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP : 0;
  sigemptyset(&action.sa_mask);
  sigaction(sig, &action, nullptr);
}

// waitpid(2) retrying EINTR: the wait status once `pid` has ended, nullopt while it runs
// (only when !block).
Result<std::optional<int>> Reap(pid_t pid, bool block) {
  int status = 0;
  pid_t got;
  do {
    got = waitpid(pid, &status, block ? 0 : WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return SysError(ErrorCode::kInternal, "waitpid " + std::to_string(pid));
  if (got == 0) return std::nullopt;
  return status;
}

}  // namespace

int ExitCodeOf(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

Result<int> WaitForExit(pid_t pid) {
  auto status = Reap(pid, true);
  if (!status) return std::unexpected(std::move(status.error()));
  return ExitCodeOf(**status);
}

ChildWait::ChildWait(Session session) : session_(session) {
  static_assert(std::size(kHandled) == kMaxHandled);
  sigset_t blocked;
  sigemptyset(&blocked);
  for (std::size_t i = 0; i < kMaxHandled; ++i) {
    static_assert(SIGWINCH < kMaxSignal && SIGUSR2 < kMaxSignal && SIGCHLD < kMaxSignal);
    sigaction(kHandled[i], nullptr, &caller_actions_[i]);
    g_noted[kHandled[i]] = 0;
    if (ActionFor(session, kHandled[i]) != Action::kNone) sigaddset(&blocked, kHandled[i]);
  }
  sigprocmask(SIG_BLOCK, &blocked, &caller_mask_);
  wait_mask_ = caller_mask_;
  for (int sig : kHandled) {
    if (sigismember(&blocked, sig) == 1) sigdelset(&wait_mask_, sig);
  }
  SetHandler(SIGCHLD, Note);
}

ChildWait::~ChildWait() { RestoreInChild(); }

void ChildWait::RestoreInChild() const {
  // Dispositions first: a signal pending since the fork then meets the caller's.
  for (std::size_t i = 0; i < kMaxHandled; ++i)
    sigaction(kHandled[i], &caller_actions_[i], nullptr);
  sigprocmask(SIG_SETMASK, &caller_mask_, nullptr);
}

void ChildWait::Watch(pid_t child) {
  child_ = child;
  for (int sig : kHandled) {
    switch (ActionFor(session_, sig)) {
      case Action::kForward:
      case Action::kNote:
        SetHandler(sig, Note);
        break;
      case Action::kIgnore:
        SetHandler(sig, SIG_IGN);  // also discards one already pending (sigaction(2))
        break;
      case Action::kNone:
        break;
    }
  }
}

Result<std::optional<int>> ChildWait::Forward() {
  // kill(-1, sig) would signal every process we may signal.
  if (child_ <= 0) return MakeError(ErrorCode::kInternal, "ChildWait: no child to wait for");
  for (int sig : kHandled) {
    if (ActionFor(session_, sig) == Action::kForward && Takes(g_noted[sig])) kill(child_, sig);
  }
  if (!Takes(g_noted[SIGCHLD])) return std::nullopt;
  // SIGCHLD may also be another child's; a standard signal noted once may stand for several.
  return Reap(child_, false);
}

bool ChildWait::TakeWindowChange() { return Takes(g_noted[SIGWINCH]); }

Result<int> ChildWait::Wait() {
  for (;;) {
    auto ended = Forward();
    if (!ended) return std::unexpected(std::move(ended.error()));
    if (*ended) return **ended;
    sigsuspend(&wait_mask_);
  }
}

}  // namespace nsbroker
