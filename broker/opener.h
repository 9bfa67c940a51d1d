// Owns the root half of privilege separation (run_as; docs/PRIVSEP.md): the process systemd
// started, which keeps root after forking the unprivileged server and answers only that
// child's fixed requests (privsep_protocol.h): open or re-resolve target i, fetch fresh
// descriptors of target i. It re-reads the config on SIGHUP, talks to systemd (sd_notify as
// MainPID), and exits when the server does. Never reads a byte from a user, runs no libevent
// loop, parses no protobuf.
//
//   auto server = nsbroker::ForkServer();            // {channel, pid}; in the child: pid 0
//   if (server->pid > 0) return nsbroker::Opener(std::move(setup)).Run();
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog.h"
#include "config.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "privsep_protocol.h"
#include "service.h"

namespace nsbroker {

// Requests the opener answers per second at most; beyond, it stops reading until the next
// second, so that a compromised server cannot make it open targets in a tight loop.
inline constexpr std::uint32_t kMaxOpenerRequestsPerSecond = 100000;
// How long a stopping opener waits for its server before SIGKILL.
inline constexpr std::chrono::seconds kServerStopTimeout{10};

// The signals the opener takes in its poll loop (blocked from before the fork until each
// process waits for them its own way: the opener in ppoll, the server in libevent).
void BlockDaemonSignals();
void UnblockDaemonSignals();

// A fork of this process, joined to it by a SOCK_SEQPACKET socketpair: in the parent `pid` is
// the child's and `channel` the parent's end; in the child, pid 0 and the child's end, and the
// child gets `death_signal` when the parent dies (checked after it was set: a parent already
// gone is an error).
struct Forked {
  pid_t pid = 0;
  UniqueFd channel;
};
[[nodiscard]] Result<Forked> ForkServer(int death_signal);

// The platform's "signal me when my parent dies" (Linux prctl, FreeBSD procctl).
[[nodiscard]] Result<void> SetParentDeathSignal(int sig);

struct OpenerSetup {
  ServiceOptions options;
  Config config;  // generation 1: what the server forked with (run_as cleared)
  RunAs run_as;   // for reloads: run_as changes only on restart
  UniqueFd channel;
  pid_t server = 0;  // our unreaped child: its pid cannot be reused until we wait for it
  ScopedSocketFile socket_file, uwsgi_file;  // unlinked when the opener exits
  // How targets are opened (tests of jail logic pass a fake; see catalog.h).
  TargetOpener open = OpenTarget;
};

class Opener {
 public:
  explicit Opener(OpenerSetup setup);
  // Serves the server until it exits: 0 when it stopped cleanly after our SIGTERM, 1 otherwise
  // (it died, broke the protocol, or the opener was signalled to stop and it failed).
  int Run();

 private:
  // The handle last opened for a target. A reload's generation shares the slot of every
  // target whose source is unchanged, as the server's catalog moves its handle over: an open
  // in either generation (the server may re-resolve before it reads the offer) is seen by both.
  struct Slot {
    TargetHandlePtr handle;
  };
  struct Generation {
    std::uint64_t id = 0;
    Config config;
    std::vector<std::shared_ptr<Slot>> slots;  // per target index
  };

  void OnRequest();
  void Answer(const privsep::Request& request);
  void Open(Generation& generation, const privsep::Request& request);
  void Fetch(Generation& generation, const privsep::Request& request);
  void OnSwitched(const privsep::Request& request);
  void Reload();
  void Send(const privsep::Reply& reply, const std::vector<int>& fds);
  Generation* Find(std::uint64_t id);
  // Logs `why`, kills the server and ends the loop with exit status 1.
  void Fatal(const std::string& why);
  void OnServerExit();
  void Stop();

  OpenerSetup setup_;
  Generation current_;                   // the one the server said it serves
  std::unique_ptr<Generation> offered_;  // sent with kReload, not yet switched to
  bool reload_again_ = false;            // a SIGHUP came while one was offered
  std::optional<int> exit_;              // set: the loop ends with this status
  bool stopping_ = false;                // SIGTERM/SIGINT: the server was told to stop
  bool closed_ = false;                  // the server closed its end: it is exiting
  std::chrono::steady_clock::time_point stop_deadline_{};
  std::chrono::steady_clock::time_point second_{};
  std::uint32_t requests_this_second_ = 0;
};

}  // namespace nsbroker
