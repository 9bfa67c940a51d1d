// Owns asking an OCI runtime for a container's state: `RUNTIME [--root DIR] state ID` run
// from a fixed path, without a shell, its output bounded and parsed strictly. Never blocks the
// event loop on the runtime (pipes and a pidfd watched by the loop, a timeout) and never
// decides whether the pid it reports is served (targets.h checks that).
//
//   auto query = nsbroker::StateQuery::Start(base, spec.oci, [](Result<OciState> s) { ... });
#pragma once

#include <event2/event.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "config.h"
#include "loop.h"
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

// One run of `state`. Destroying it kills a runtime still running; the child is reaped then
// or, if it has not died yet, on a later Start or destruction (never waited for).
class StateQuery {
 public:
  using Done = std::function<void(Result<OciState>)>;
  // Starts the runtime; `done` runs once, from the loop, with the state or why there is none
  // (exit status and the runtime's last stderr line, a timeout, garbage, too much output).
  // `done` must not destroy the query: it runs inside one of the query's events.
  [[nodiscard]] static Result<std::unique_ptr<StateQuery>> Start(event_base* base,
                                                                 const OciSpec& oci, Done done);
  ~StateQuery();
  StateQuery(const StateQuery&) = delete;
  StateQuery& operator=(const StateQuery&) = delete;

 private:
  StateQuery(const OciSpec& oci, Done done) : oci_(oci), done_(std::move(done)) {}
  void OnOutput(bool err);
  void OnExit();
  void Finish(Result<OciState> result);
  std::string Command() const;

  OciSpec oci_;
  std::string path_;
  Done done_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd out_, err_;
  std::string out_text_, err_text_;
  unsigned long long asked_at_ = 0;
  std::unique_ptr<Event> out_event_, err_event_, exit_event_, timeout_;
  bool finished_ = false;
};

// Runs one query to its end on a private loop: for --check-config, and for the root opener
// of a privilege-separated broker (opener.h), which serves one request at a time.
[[nodiscard]] Result<OciState> QueryStateNow(const OciSpec& oci);

// Clock ticks since boot now, the unit of /proc/PID/stat's start time.
unsigned long long BootTicksNow();

}  // namespace nsbroker
