// Fuzzes the broker's config parser and its semantic checks (ParseConfig: text format,
// names, sources, expose, allow rules). It only parses and resolves names: no target is
// opened, no socket bound, no file written. Checks what a loaded config promises.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "config.h"
#include "targets.h"

namespace {

[[noreturn]] void Violation(const std::string& what) {
  std::fprintf(stderr, "config_fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nsbroker;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ParseConfig(text, "fuzz.conf");
  if (!config) {
    // Every error names the file (and, where known, the line and column).
    if (config.error().message.rfind("fuzz.conf:", 0) != 0) {
      Violation("error does not name the file: " + config.error().message);
    }
    if (config.error().code != ErrorCode::kInvalidRequest) Violation("error code");
    return 0;
  }
  if (config->socket.empty() || config->socket[0] != '/' || config->socket.size() >= 108) {
    Violation("socket path " + config->socket);
  }
  if ((config->socket_mode & ~0777u) != 0) Violation("socket mode");
  if (config->max_connections == 0 || config->max_connections_per_uid == 0 ||
      config->idle_timeout_ms == 0 || config->request_timeout_ms == 0 ||
      config->max_inflight_fds_per_uid == 0) {
    Violation("a zero limit");
  }
  std::set<std::string> names;
  for (const TargetSpec& t : config->targets) {
    if (t.name.empty() || t.name.size() > 64) Violation("target name length");
    if (!names.insert(t.name).second) Violation("duplicate target " + t.name);
    if (t.expose == 0) Violation("target '" + t.name + "' exposes nothing");
    if ((t.expose & ~SourceKinds(t)) != 0) Violation("expose beyond the source");
    for (const Rule& rule : t.rules) {
      if (rule.kinds == 0 || (rule.kinds & ~t.expose) != 0) {
        Violation("rule '" + rule.label + "' grants outside expose");
      }
    }
    if ((t.source == SourceType::kPidFile || t.source == SourceType::kNetns) &&
        (t.file.empty() || t.file[0] != '/')) {
      Violation("relative file for target " + t.name);
    }
    if (t.source == SourceType::kNetns) {
      // One name directly under /run/netns ("..x" is a name; "..", "." and "a/b" are not).
      constexpr std::string_view kDir = "/run/netns/";
      std::string_view name = t.file;
      if (name.substr(0, kDir.size()) != kDir) Violation("netns outside /run/netns: " + t.file);
      name.remove_prefix(kDir.size());
      if (name.empty() || name == "." || name == ".." || name.find('/') != name.npos) {
        Violation("netns escapes /run/netns: " + t.file);
      }
    }
    for (const auto& [kind, file] : t.paths) {
      if (!IsNamespaceKind(kind) || file.empty() || file[0] != '/') Violation("path entry");
    }
  }
  if (!config->uwsgi_target.empty() && !names.contains(config->uwsgi_target)) {
    Violation("uwsgi_target unknown");
  }
  return 0;
}
