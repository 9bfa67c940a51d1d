// What the root opener runs, linked alone (nsbroker_targets: no protobuf, no libevent; ctest
// targets_lib_links_neither checks this binary): the blocking oci state query on ppoll, with
// real runtimes that answer, fail, print too much or hang; a target opened; a datagram with a
// descriptor.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "datagram.h"
#include "oci_state.h"
#include "targets.h"
#include "test_util.h"

namespace nsbroker {
namespace {

// A directory of fake runtimes, root's as trusted_file.h wants a runtime's path to be.
class Runtimes {
 public:
  Runtimes() {
    char tmpl[] = "/tmp/nsb-runtimes-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) std::abort();
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
  }
  ~Runtimes() { std::filesystem::remove_all(dir_); }
  // A runtime `name` running the shell `body`, asked with `timeout_ms`.
  OciSpec Make(const std::string& name, const std::string& body, std::uint32_t timeout_ms = 5000) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    chmod(path.c_str(), 0755);
    return {.id = "x", .runtime = path, .timeout_ms = timeout_ms};
  }

 private:
  std::string dir_;
};

std::string Failure(const Result<OciState>& state) {
  EXPECT_FALSE(state.has_value());
  if (state) return "answered pid " + std::to_string(state->pid);
  EXPECT_EQ(state.error().code, ErrorCode::kUnavailable);
  return state.error().message;
}

TEST(QueryStateNow, ReadsTheAnswerOfARuntimeThatExits) {
  ASSERT_EQ(geteuid(), 0u) << "needs root: a runtime must be root's (trusted_file.h)";
  Runtimes runtimes;
  std::string pid = std::to_string(getpid());
  auto state = QueryStateNow(
      runtimes.Make("runc", "echo '{\"pid\": " + pid + ", \"status\": \"running\"}'"));
  ASSERT_OK(state);
  EXPECT_EQ(state->pid, getpid());
  EXPECT_GT(state->asked_at_ticks, 0u);
}

TEST(QueryStateNow, SaysWhyARuntimeGaveNoState) {
  ASSERT_EQ(geteuid(), 0u) << "needs root: a runtime must be root's (trusted_file.h)";
  Runtimes runtimes;
  OciSpec fails =
      runtimes.Make("fails", "echo 'level=error msg=\"container x is lost\"' >&2; exit 3");
  EXPECT_EQ(Failure(QueryStateNow(fails)),
            "container x: " + fails.runtime + " state x failed (exit 3): container x is lost");
  OciSpec chatty = runtimes.Make("chatty", "exec yes");
  EXPECT_EQ(Failure(QueryStateNow(chatty)),
            "container x: " + chatty.runtime + " state x printed more than 64 KiB");
  OciSpec garbage = runtimes.Make("garbage", "echo '{\"pid\": 1'");
  EXPECT_EQ(Failure(QueryStateNow(garbage)),
            "container x: runtime output is not JSON: expected '}' at byte 10");
}

// The deadline is ppoll's: a runtime that never answers is killed when it passes, and the
// answer says so. The runtime is this process's child, so its end shows in waitid.
TEST(QueryStateNow, KillsAHungRuntimeAtItsTimeout) {
  ASSERT_EQ(geteuid(), 0u) << "needs root: a runtime must be root's (trusted_file.h)";
  Runtimes runtimes;
  OciSpec hangs = runtimes.Make("hangs", "exec sleep 1000", 300);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Failure(QueryStateNow(hangs)),
            "container x: " + hangs.runtime + " state x timed out after 300 ms");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  // Blocks until the runtime has died (or fails at once with ECHILD if the query reaped it
  // already, which it does only for a child that died): `sleep 1000` dies of nothing else.
  siginfo_t info{};
  if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) == 0) {
    EXPECT_EQ(info.si_code, CLD_KILLED);
    EXPECT_EQ(info.si_status, SIGKILL);
    waitpid(info.si_pid, nullptr, 0);
  } else {
    EXPECT_EQ(errno, ECHILD);
  }
}

TEST(TargetsLibrary, OpensATargetAndSendsItsDescriptor) {
  TargetSpec self{.name = "self", .source = SourceType::kSelf, .expose = KindBit(NsKind::kUts)};
  auto handle = OpenTarget(self);
  ASSERT_OK(handle);
  auto entries = (*handle)->Open(KindBit(NsKind::kUts));
  ASSERT_OK(entries);
  ASSERT_EQ(entries->size(), 1u);
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  int fd = (*entries)[0].fd.get();
  ASSERT_OK(SendDatagram(pair->first, "uts", {&fd, 1}));
  auto got = ReceiveDatagram(pair->second, 1);
  ASSERT_OK(got);
  EXPECT_EQ(got->bytes, "uts");
  ASSERT_EQ(got->fds.size(), 1u);
  auto verified = VerifyEntry(NsKind::kUts, std::move(got->fds[0]), "the uts descriptor");
  ASSERT_OK(verified);
  EXPECT_EQ(verified->inode, (*entries)[0].inode);
}

}  // namespace
}  // namespace nsbroker
