// Owns the broker configuration: parsing BrokerConfig text, resolving names and checking
// every field, with FILE:LINE:COL in each error. Never opens a target or touches a socket.
//
//   auto config = nsbroker::LoadConfig("/etc/nsbroker/nsbroker.conf");
//   if (!config) { std::cerr << config.error().message << "\n"; return 1; }
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nsbroker/error.h"
#include "nsbroker/kind_set.h"
#include "nsbroker/ns_kind.h"

namespace nsbroker {

inline constexpr char kDefaultConfigPath[] = "/etc/nsbroker/nsbroker.conf";
inline constexpr char kDefaultSocketPath[] = "/run/nsbroker/nsbroker.sock";

// 1-based position of a field in the config file (0 when unknown, e.g. built-in config).
struct Location {
  int line = 0;
  int column = 0;
};

// kOci and kCgroup (also `unit`) name a process that changes: they re-resolve by themselves,
// as kPidFile does (lifecycle.h).
enum class SourceType { kSelf, kPid, kPidFile, kNetns, kPaths, kJail, kOci, kCgroup };

// Whether targets of `source` find their process again after it exits.
constexpr bool Reresolves(SourceType source) {
  return source == SourceType::kPidFile || source == SourceType::kOci ||
         source == SourceType::kCgroup;
}

// An OCI container, asked for with `runtime [--root root] state id`.
struct OciSpec {
  std::string id;
  std::string runtime = "runc";  // a name looked up in fixed directories, or an absolute path
  std::string root;              // empty: the runtime's default
  std::uint32_t timeout_ms = 5000;
  bool operator==(const OciSpec&) const = default;
};

// One allow rule, resolved: it matches a uid, or a gid (primary or supplementary).
struct Rule {
  enum class Who { kUid, kGid };
  Who who = Who::kUid;
  std::uint32_t id = 0;
  std::string label;  // as written: "user alice", "uid 1000", "group webdev", "gid 27"
  KindSet kinds = 0;  // resolved narrowing: never empty, always within the target's expose
};

struct TargetSpec {
  std::string name;
  SourceType source = SourceType::kSelf;
  pid_t pid = 0;  // kPid
  // kPidFile: the pid file; kNetns: /run/netns/NAME; kJail: name or jid; kCgroup: the group's
  // path below the cgroup2 mount ("/system.slice/NAME.service" for a unit)
  std::string file;
  OciSpec oci;                                        // kOci
  std::vector<std::pair<NsKind, std::string>> paths;  // kPaths
  KindSet expose = 0;  // resolved: the explicit list or the source's default
  std::vector<Rule> rules;
  // Per target: how old a held grant set may be (nsbrokerd(8), GRANT CACHE); unset: the
  // config's refresh_ms.
  std::optional<std::uint32_t> refresh_ms;
  Location location;  // of the target block, for errors found when it is opened
};

enum class AuditFormat { kText, kJson };

struct RunAs {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;

  bool operator==(const RunAs&) const = default;
};

struct Config {
  std::string file;  // where it came from, for error messages ("<built-in>" for --self)
  std::string socket = kDefaultSocketPath;
  mode_t socket_mode = 0660;
  std::optional<gid_t> socket_group;
  std::optional<RunAs> run_as;
  std::string audit_log = "-";
  AuditFormat audit_format = AuditFormat::kText;
  std::uint32_t max_connections = 1024;
  std::uint32_t max_connections_per_uid = 64;
  std::uint32_t idle_timeout_ms = 10000;
  std::uint32_t request_timeout_ms = 5000;
  std::uint32_t max_inflight_fds_per_uid = 4096;
  // Connections only root may take (and root's share of in-flight descriptors, x10).
  std::uint32_t root_reserve = 16;
  // A connection is closed this long after it was accepted, busy or not, so that idle
  // clients kept alive by a request now and then cannot hold capacity forever.
  std::uint32_t max_connection_age_ms = 60000;
  // A held grant set is fetched again from its pidfd once it is this old: a namespace the
  // target changed to is served within a second, for one fetch per hot target per second.
  std::uint32_t refresh_ms = 1000;
  std::string uwsgi_socket;
  std::string uwsgi_target;
  std::vector<TargetSpec> targets;
};

// Parses and resolves `text`; `file` names it in errors ("FILE:LINE:COL: reason").
// Every error is kInvalidRequest.
[[nodiscard]] Result<Config> ParseConfig(std::string_view text, const std::string& file);

// Reads `path` and parses it; an unreadable file is kNotFound "PATH: reason".
[[nodiscard]] Result<Config> LoadConfig(const std::string& path);
// The bytes LoadConfig parses (the privilege-separated opener hands the same bytes to its
// server, so that both number the targets alike).
[[nodiscard]] Result<std::string> ReadConfigFile(const std::string& path);

// The embedded default (`nsbrokerd --self`): target "self" = this process's namespaces,
// root only, at `socket`.
Config SelfConfig(const std::string& socket);

// "FILE:LINE:COL: " for a location in `config` (just "FILE: " when the location is unknown).
std::string WhereIn(const std::string& file, Location location);

}  // namespace nsbroker
