// Owns the broker's side of the service manager's protocols: sockets passed by socket
// activation (told apart by FileDescriptorName=), sd_notify states, and whether journald reads
// stderr. Never binds a socket, never decides anything, and is a no-op outside systemd.
//
//   auto passed = nsbroker::TakePassedSockets();   // {native, uwsgi}, each maybe invalid
//   nsbroker::NotifyReloading();  /* reload */  nsbroker::NotifyReady("serving 3 targets");
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

struct PassedSockets {
  UniqueFd native;  // FileDescriptorName=native: a listening SOCK_SEQPACKET socket
  UniqueFd uwsgi;   // FileDescriptorName=uwsgi: a listening SOCK_STREAM socket
};

// The listening sockets systemd passed (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, consumed from
// the environment). A lone socket of another name (a unit without FileDescriptorName=) is the
// native one. A descriptor of an unknown name, a name twice, or a socket of the wrong type is
// an error naming the descriptor: nothing passed is dropped silently. Close-on-exec, non-blocking.
[[nodiscard]] Result<PassedSockets> TakePassedSockets();

// sd_notify(3) with $NOTIFY_SOCKET, when set. READY=1 with STATUS=`status`.
void NotifyReady(std::string_view status);
// RELOADING=1 with MONOTONIC_USEC=now, as Type=notify-reload (systemd 253+) requires; a
// NotifyReady must follow, whether the reload succeeded or not.
void NotifyReloading();
void NotifyStopping();

// What STATUS= says while serving: the targets and the server's counters.
struct ServingFigures {
  std::uint64_t targets = 0;
  std::uint64_t available = 0;
  std::uint64_t grants = 0;
  std::uint64_t denials = 0;
  std::uint64_t errors = 0;
  std::uint64_t connections = 0;
};
inline std::string StatusText(const ServingFigures& f) {
  return std::to_string(f.targets) + " targets (" + std::to_string(f.available) + " available); " +
         std::to_string(f.grants) + " grants, " + std::to_string(f.denials) + " denials, " +
         std::to_string(f.errors) + " errors, " + std::to_string(f.connections) + " connections";
}

// True when stderr is the stream journald reads ($JOURNAL_STREAM names its device and
// inode): then each line may start with a "<N>" syslog priority (sd-daemon(3)).
bool StderrIsJournal();

}  // namespace nsbroker
