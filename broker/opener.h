// Owns the root half of privilege separation (run_as; docs/PRIVSEP.md): nsbroker-opener, which
// nsbrokerd execs in place of itself after forking the unprivileged server, and which answers
// only that child's fixed requests (privsep_protocol.h): open or re-resolve target i, fetch
// fresh descriptors of target i. On SIGHUP it has nsbrokerd compile the config and offers it;
// it talks to systemd (sd_notify as MainPID), and exits when the server does. Never reads a
// byte from a user, runs no libevent loop, parses no protobuf.
//
//   auto setup = nsbroker::TakeHandover(memfd);        // what nsbrokerd handed over
//   if (setup) return nsbroker::Opener(std::move(*setup)).Run();
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "privsep_protocol.h"
#include "socket_file.h"
#include "target_table.h"
#include "targets.h"

namespace nsbroker {

// Requests the opener answers per second at most; beyond, it stops reading until the next
// second, so that a compromised server cannot make it open targets in a tight loop.
inline constexpr std::uint32_t kMaxOpenerRequestsPerSecond = 100000;
// How long a stopping opener waits for its server before SIGKILL.
inline constexpr std::chrono::seconds kServerStopTimeout{10};

// How long a reload's compile step (nsbrokerd --compile-config) may take. Parsing takes
// milliseconds; the server's requests wait meanwhile, so the bound stays below its reply
// timeout (opener_client.h).
inline constexpr std::chrono::seconds kCompileTimeout{5};

struct OpenerSetup {
  std::string config_path;  // compiled again on SIGHUP
  Config config;            // generation 1's target table: what the server forked with
  RunAs run_as;             // for reloads: run_as changes only on restart
  UniqueFd channel;
  UniqueFd self_exe;  // nsbrokerd, which compiles a reload's config (invalid: no reloads)
  pid_t server = 0;   // our unreaped child: its pid cannot be reused until we wait for it
  ScopedSocketFile socket_file, uwsgi_file;  // unlinked when the opener exits
  TargetOpener open = OpenTarget;
};

// The setup nsbrokerd handed over in the sealed memfd `handover` (privsep.h ExecOpener): its
// descriptors adopted (close-on-exec again), each checked to be what it should be.
[[nodiscard]] Result<OpenerSetup> TakeHandover(UniqueFd handover);

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
  // Runs `nsbrokerd --compile-config` on the config file (bounded by kCompileTimeout): the
  // text and its target table, or the parse error (FILE:LINE:COL).
  [[nodiscard]] Result<CompiledConfig> Compile();
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
