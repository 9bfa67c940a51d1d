// ChildWait on real processes: each scenario runs in a forked waiter (its signals would
// otherwise be the test runner's) and exits 0 when every check held, a distinct code else.
#include "child_wait.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <functional>

#include "harness.h"

namespace nsbroker {
namespace {

// The command: the caller's signals back, then it waits to be signalled.
[[noreturn]] void SleepUntilSignalled(const ChildWait& wait) {
  wait.RestoreInChild();
  for (;;) pause();
}

// The waiter's side once forked: the child's exit code, or -1.
int WaitedCode(ChildWait& wait, pid_t child) {
  wait.Watch(child);
  auto status = wait.Wait();
  return status ? ExitCodeOf(*status) : -1;
}

TEST(ChildWait, ForwardsASignalToTheChildAndReports128PlusN) {
  EXPECT_EQ(testing::ExitCodeInChild([] {
              ChildWait wait(ChildWait::Session::kShared);
              pid_t child = fork();
              if (child == 0) SleepUntilSignalled(wait);
              wait.Watch(child);
              raise(SIGTERM);  // a supervisor's SIGTERM to the pid it knows: ours
              auto status = wait.Wait();
              if (!status) return 1;
              if (!WIFSIGNALED(*status) || WTERMSIG(*status) != SIGTERM) return 2;
              return ExitCodeOf(*status) == 128 + SIGTERM ? 0 : 3;
            }),
            0);
}

TEST(ChildWait, ASignalBetweenForkAndWaitIsNeitherLostNorFatal) {
  // Blocked from the constructor on: it waits, pending, until the child is watched, and is
  // then forwarded. Unblocked, it would kill the waiter (143 from ExitCodeInChild) and orphan the
  // child.
  EXPECT_EQ(testing::ExitCodeInChild([] {
              ChildWait wait(ChildWait::Session::kShared);
              raise(SIGTERM);
              raise(SIGHUP);
              pid_t child = fork();
              if (child == 0) SleepUntilSignalled(wait);
              int code = WaitedCode(wait, child);
              return code == 128 + SIGHUP || code == 128 + SIGTERM ? 0 : 1;
            }),
            0);
}

TEST(ChildWait, ReportsTheChildsExitCode) {
  EXPECT_EQ(testing::ExitCodeInChild([] {
              ChildWait wait(ChildWait::Session::kShared);
              pid_t child = fork();
              if (child == 0) _exit(3);
              return WaitedCode(wait, child) == 3 ? 0 : 1;
            }),
            0);
}

TEST(ChildWait, TheChildStartsWithTheCallersMaskAndDispositions) {
  // SIGCHLD ignored by whoever started us (SIG_IGN survives exec) would let the kernel reap
  // the child; the wait must still see it end, and the command still inherit SIG_IGN.
  EXPECT_EQ(testing::ExitCodeInChild([] {
              signal(SIGCHLD, SIG_IGN);
              signal(SIGHUP, SIG_IGN);  // nohup
              sigset_t usr1;
              sigemptyset(&usr1);
              sigaddset(&usr1, SIGUSR1);
              sigprocmask(SIG_BLOCK, &usr1, nullptr);
              ChildWait wait(ChildWait::Session::kOwn);
              pid_t child = fork();
              if (child == 0) {
                wait.RestoreInChild();
                sigset_t mask;
                sigprocmask(SIG_SETMASK, nullptr, &mask);
                if (sigismember(&mask, SIGUSR1) != 1) _exit(10);
                if (sigismember(&mask, SIGTERM) != 0 || sigismember(&mask, SIGCHLD) != 0) _exit(11);
                struct sigaction action{};
                sigaction(SIGCHLD, nullptr, &action);
                if (action.sa_handler != SIG_IGN) _exit(12);
                sigaction(SIGHUP, nullptr, &action);
                if (action.sa_handler != SIG_IGN) _exit(13);
                _exit(0);
              }
              return WaitedCode(wait, child);
            }),
            0);
}

TEST(ChildWait, ASharedSessionLeavesTheTerminalsSignalsToTheTerminal) {
  // ^C reaches the whole process group, the command too: forwarded, it would arrive twice.
  EXPECT_EQ(testing::ExitCodeInChild([] {
              ChildWait wait(ChildWait::Session::kShared);
              pid_t child = fork();
              if (child == 0) SleepUntilSignalled(wait);
              wait.Watch(child);
              raise(SIGINT);
              raise(SIGQUIT);
              raise(SIGTERM);
              auto status = wait.Wait();
              return status && ExitCodeOf(*status) == 128 + SIGTERM ? 0 : 1;
            }),
            0);
}

TEST(ChildWait, AnOwnSessionForwardsSigintAndNotesWindowChanges) {
  EXPECT_EQ(testing::ExitCodeInChild([] {
              ChildWait wait(ChildWait::Session::kOwn);
              pid_t child = fork();
              if (child == 0) SleepUntilSignalled(wait);
              wait.Watch(child);
              raise(SIGWINCH);
              sigsuspend(&wait.wait_mask());  // returns once the pending SIGWINCH is taken
              auto running = wait.Forward();
              if (!running || *running) return 1;
              if (!wait.TakeWindowChange()) return 2;  // for the relay, not the child
              if (wait.TakeWindowChange()) return 3;
              raise(SIGINT);
              auto status = wait.Wait();
              return status && ExitCodeOf(*status) == 128 + SIGINT ? 0 : 4;
            }),
            0);
}

TEST(ChildWait, GivesTheCallerItsSignalsBackWhenDone) {
  EXPECT_EQ(testing::ExitCodeInChild([] {
              {
                ChildWait wait(ChildWait::Session::kOwn);
                pid_t child = fork();
                if (child == 0) _exit(0);
                if (WaitedCode(wait, child) != 0) return 1;
              }
              sigset_t mask;
              sigprocmask(SIG_SETMASK, nullptr, &mask);
              if (sigismember(&mask, SIGTERM) != 0 || sigismember(&mask, SIGCHLD) != 0) return 2;
              struct sigaction action{};
              sigaction(SIGTERM, nullptr, &action);
              return action.sa_handler == SIG_DFL ? 0 : 3;
            }),
            0);
}

}  // namespace
}  // namespace nsbroker
