#include "audit_json.h"

#include <cstdio>
#include <ctime>

namespace nsbroker {
namespace {

void AppendString(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  out += '"';
}

template <typename T>
void AppendNumbers(std::string& out, const std::vector<T>& numbers) {
  out += '[';
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(numbers[i]);
  }
  out += ']';
}

}  // namespace

std::string FormatAuditJson(const AuditRecord& r, std::chrono::system_clock::time_point now) {
  auto since_epoch = now.time_since_epoch();
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  auto nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds);
  std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char when[48];
  std::size_t n = std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(when + n, sizeof when - n, ".%09lldZ", static_cast<long long>(nanoseconds.count()));

  std::string out = r.granted ? "{\"accept\":{" : "{\"reject\":{";
  out += "\"time\":{\"seconds\":" + std::to_string(seconds.count()) +
         ",\"nanoseconds\":" + std::to_string(nanoseconds.count()) + ",\"iso8601\":\"" + when +
         "\"},\"target\":";
  AppendString(out, r.target);
  out += ",\"kinds\":[";
  bool first = true;
  for (NsKind kind : KindSetList(r.kinds)) {
    if (!first) out += ',';
    first = false;
    AppendString(out, KindName(kind));
  }
  out += "],\"peer\":{\"pid\":" + std::to_string(r.peer_pid) +
         ",\"uid\":" + std::to_string(r.peer_uid) + ",\"gid\":" + std::to_string(r.peer_gid) +
         ",\"groups\":";
  AppendNumbers(out, r.peer_groups);
  out += "},\"reason\":";
  AppendString(out, r.reason);
  if (r.target_pid > 0) out += ",\"target_pid\":" + std::to_string(r.target_pid);
  if (!r.namespaces.empty()) {
    out += ",\"namespaces\":[";
    for (std::size_t i = 0; i < r.namespaces.size(); ++i) {
      const AuditRecord::Namespace& ns = r.namespaces[i];
      if (i > 0) out += ',';
      out += "{\"kind\":";
      AppendString(out, KindName(ns.kind));
      out += ",\"id\":" + std::to_string(ns.ns_id) + ",\"inode\":" + std::to_string(ns.inode) + "}";
    }
    out += ']';
  }
  out += "}}";
  return out;
}

}  // namespace nsbroker
