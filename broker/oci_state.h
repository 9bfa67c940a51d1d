// Owns asking an OCI runtime for a container's state: `RUNTIME [--root DIR] state ID` run
// from a fixed path, without a shell, its output bounded and parsed strictly, within a
// timeout. Never waits on the runtime unbounded, never runs an event loop (its drivers do:
// QueryStateNow, resolution.h), and never decides whether the pid it reports is served
// (targets.h checks that).
//
//   auto state = nsbroker::QueryStateNow(spec.oci);   // blocks at most spec.oci.timeout_ms
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// What `state` says, checked: a running container and its init's pid (> 0).
struct OciState {
  pid_t pid = 0;
  // When the runtime was started, in CLOCK_BOOTTIME clock ticks (as /proc/PID/stat's field
  // 22): a process started later is not the one the runtime saw (a pid reused meanwhile).
  unsigned long long asked_at_ticks = 0;
};

// Output beyond this is refused (runc's state is about 300 bytes).
inline constexpr std::size_t kMaxStateOutput = 64 * 1024;

// Parses the state JSON: one object whose "pid" (integer) and "status" (string) are used;
// anything but well-formed JSON (nesting at most 32 deep, no duplicate top-level keys) is
// kUnavailable with "runtime output is not JSON: ..." and the byte offset. A status other than
// "running" is kUnavailable "container ID is STATUS".
[[nodiscard]] Result<OciState> ParseOciState(std::string_view json, const std::string& id);

// The runtime's executable: an absolute `runtime` as given, a name looked up in /usr/sbin,
// /usr/bin, /sbin and /bin (never $PATH). Either way root's all the way down (trusted_file.h):
// it runs as root.
[[nodiscard]] Result<std::string> RuntimePath(const OciSpec& oci);

// One run of `state`: the runtime spawned with its stdout and stderr on pipes, the output
// collected within bounds, the exit read from its pidfd, the answer parsed and checked. It
// waits for nothing itself: a driver watches fd(), pidfd() and the deadline and reports each
// event (QueryStateNow here with ppoll; the loop's StartResolve in resolution.h). Destroying
// it kills a runtime still running; the child is reaped then or, if it has not died yet, on
// a later Start or destruction (never waited for).
class StateQuery {
 public:
  enum class Stream { kOut, kErr };
  // Starts the runtime; the time left to answer starts now (timeout()).
  [[nodiscard]] static Result<std::unique_ptr<StateQuery>> Start(const OciSpec& oci);
  ~StateQuery();
  StateQuery(const StateQuery&) = delete;
  StateQuery& operator=(const StateQuery&) = delete;

  // The read end of a pipe (non-blocking), to watch while open(stream); it stays open, so that
  // a driver can stop watching it before it is closed.
  int fd(Stream stream) const { return (stream == Stream::kOut ? out_ : err_).get(); }
  // False once the pipe reached end of file: watching it further would spin.
  bool open(Stream stream) const { return !(stream == Stream::kOut ? out_eof_ : err_eof_); }
  // Readable once the runtime exited.
  int pidfd() const { return pidfd_.get(); }
  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(oci_.timeout_ms); }

  // Each event gives the answer once there is one, and then the query is over (the runtime
  // killed if it still runs): the state, or why there is none (exit status and the runtime's
  // last stderr line, garbage, too much output, the timeout), every error naming the container.
  // The pipe is readable (or at its end): nullopt while more may come.
  [[nodiscard]] std::optional<Result<OciState>> OnReadable(Stream stream);
  // The pidfd is readable.
  [[nodiscard]] Result<OciState> OnExit();
  // timeout() passed since Start.
  [[nodiscard]] Result<OciState> OnTimeout();
  // The pidfd is readable after an answer came otherwise (a timeout, too much output): collects
  // the runtime that was killed, at once rather than at destruction or a later Start.
  void Reap();

 private:
  explicit StateQuery(const OciSpec& oci) : oci_(oci) {}
  std::optional<Error> Read(Stream stream);
  Result<OciState> Finish(Result<OciState> result);
  std::string Command() const;

  OciSpec oci_;
  std::string path_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd out_, err_;
  bool out_eof_ = false, err_eof_ = false;
  std::string out_text_, err_text_;
  unsigned long long asked_at_ = 0;
};

// Runs one query to its end now, waiting with ppoll on its pipes and pidfd until its deadline:
// for --check-config, and for the root opener of a privilege-separated broker (opener.h),
// which serves one request at a time.
[[nodiscard]] Result<OciState> QueryStateNow(const OciSpec& oci);

// Clock ticks since boot now, the unit of /proc/PID/stat's start time.
unsigned long long BootTicksNow();

}  // namespace nsbroker
