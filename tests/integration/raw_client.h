// Test-side helpers for talking to the real nsbrokerd on the wire and watching its process
// (descriptors, memory, CPU). Never used by production code; nothing here retries quietly.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "nsbroker.pb.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker::testing {

struct Reply {
  v1::Response response;
  std::vector<UniqueFd> fds;
};

// A SOCK_SEQPACKET connection to `path` with a 5 s receive timeout (a broken broker fails
// the test instead of hanging it).
[[nodiscard]] Result<UniqueFd> Connect(const std::string& path);
[[nodiscard]] Result<Reply> Receive(BorrowedFd sock);
[[nodiscard]] Result<Reply> Call(BorrowedFd sock, const v1::Request& request);
[[nodiscard]] Result<Reply> CallOnce(const std::string& path, const v1::Request& request);

v1::Request JoinRequest(const std::string& target, std::vector<v1::Kind> kinds = {});
v1::Request StatusRequest();

// "GRANT net,uts", "TARGETS", "STATUS", "CODE: message" or "CLIENT ERROR: message".
std::string Summary(const Result<Reply>& reply);
// Just the code: "GRANT", "RESOURCE_EXHAUSTED", "CLIENT ERROR", ...
std::string Code(const Result<Reply>& reply);

// Runs `fn` in a forked child switched for good to uid/gid (no supplementary groups), after
// raising its RLIMIT_NOFILE to `nofile` when nonzero; returns what fn returned, or how the
// child failed.
std::string AsUser(uid_t uid, gid_t gid, const std::function<std::string()>& fn,
                   std::size_t nofile = 0);

// Entries of /proc/PID/fd.
std::size_t CountFdsOf(pid_t pid);
// Waits (at most `timeout`) until CountFdsOf(pid) == expected; returns the last count.
std::size_t WaitForFdCount(pid_t pid, std::size_t expected,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5));
// VmRSS of PID in KiB.
long RssKib(pid_t pid);
// utime + stime of PID, in clock ticks.
long CpuTicks(pid_t pid);

class Broker;
// Asks Status on one connection until the broker counts no connection but that one: each
// answer is a turn of the broker's loop, so closes it has seen are done (no sleeps). False
// when that does not happen within 10,000 answers.
bool WaitForNoOtherClients(const std::string& socket);
// The broker's descriptors once no client is connected (the asking one left out).
std::size_t QuietFdCount(Broker& broker);

// Stops the broker with SIGTERM and returns "" if it exited 0, else its status and the end
// of its log: a sanitizer build reports leaks and errors at exit, and that must fail a test.
std::string StopCleanly(Broker& broker);

// Raises this process's soft RLIMIT_NOFILE to at least `n` (up to the hard limit).
void RaiseNofile(std::size_t n);

}  // namespace nsbroker::testing
