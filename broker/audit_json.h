// Owns the JSON audit format (audit_format: JSON): one object per decision, in the spirit of
// sudo's JSON event log. Never writes anything, and never emits invalid JSON or non-ASCII.
//
//   {"accept":{"time":{...},"target":"web1","kinds":["net"],"peer":{...},...}}
#pragma once

#include <chrono>
#include <string>

#include "audit.h"

namespace nsbroker {

// {"accept"|"reject":{"time":{"seconds":S,"nanoseconds":N,"iso8601":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"},
//  "target":"...","kinds":["net",...],"peer":{"pid":N,"uid":N,"gid":N,"groups":[N,...]},
//  "reason":"...","target_pid":N,"namespaces":[{"kind":"net","id":N,"inode":N},...]}}
// on one line, without a newline. target_pid and namespaces appear only when known (grants).
// Control characters, '"', '\' and every byte outside printable ASCII are \u00XX escapes,
// so a peer's bytes (an unknown target's name) never break the object or its encoding.
std::string FormatAuditJson(const AuditRecord& record, std::chrono::system_clock::time_point now);

}  // namespace nsbroker
