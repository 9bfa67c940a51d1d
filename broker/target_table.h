// Owns the bytes nsbrokerd hands its root opener (nsbroker-opener, opener.h), which parses no
// protobuf: a config's target table (what the opener opens targets by), the compiled config a
// reload sends back, and the start-up hand-over across the exec. Never reads the config text,
// and trusts no count, length or enum in the bytes before checking it.
//
//   std::string bytes = nsbroker::EncodeTargetTable(config);
//   auto table = nsbroker::DecodeTargetTable(bytes);   // kInvalidRequest naming what is wrong
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config.h"
#include "nsbroker/error.h"

namespace nsbroker {

// The largest config text, and so the largest table and hand-over, that crosses over.
inline constexpr std::size_t kMaxConfigBytes = 64u << 20;

// The part of `config` the opener needs: file, audit_log, audit_format, run_as, and of each
// target its name, source, pid, file, oci, paths, expose and location. Allow rules, limits
// and the socket are the server's and stay out.
std::string EncodeTargetTable(const Config& config);
// The Config that EncodeTargetTable encoded (the fields above; the others keep their defaults).
[[nodiscard]] Result<Config> DecodeTargetTable(std::string_view bytes);

// Whether a handle opened for `a` serves `b` as well: the same source, the same kinds.
// Allow rules may differ; they are policy, applied per request. A reload keeps the handles of
// such targets, in the server's catalog and in the opener alike.
bool SameSource(const TargetSpec& a, const TargetSpec& b);

// For a reload, in nsbrokerd and the opener alike: clears `next.run_as`, logging when it differs
// from `running`, the run_as the daemon started with (none: a single root process). Privileges are
// dropped once, at start, so run_as changes only on restart (docs/PRIVSEP.md).
void KeepRunAs(Config& next, const std::optional<RunAs>& running);

// What `nsbrokerd --compile-config` writes for the opener's reload: the bytes of the file it
// read as root (handed to the server, which parses them again) and their target table.
struct CompiledConfig {
  std::string text;
  Config table;
};
std::string EncodeCompiledConfig(const CompiledConfig& compiled);
[[nodiscard]] Result<CompiledConfig> DecodeCompiledConfig(std::string_view bytes);

// A socket file by its identity, which the opener removes at the end if it is still that file
// (socket_file.h); an empty path for none.
struct SocketFileId {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
};

// What nsbrokerd hands the opener it execs (in a sealed memfd): what OpenerSetup holds, with
// the descriptors it keeps across the exec by number.
struct Handover {
  std::string config_path;  // re-read on SIGHUP
  int channel = -1;         // the opener's end of the socketpair to the server
  int self_exe = -1;        // O_PATH of the nsbrokerd executable, run to compile a reload
  pid_t server = 0;         // the opener's unreaped child
  SocketFileId socket_file, uwsgi_file;
  Config config;  // generation 1's target table, run_as included
};
std::string EncodeHandover(const Handover& handover);
[[nodiscard]] Result<Handover> DecodeHandover(std::string_view bytes);

}  // namespace nsbroker
