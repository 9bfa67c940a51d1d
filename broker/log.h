// Owns where nsbrokerd's lines go outside the audit record's format: operational lines on
// stderr (with journald's priority prefix), and the audit file opened as root. Both
// executables use it, the opener too: libc only. Never formats an audit record (audit.h).
//
//   nsbroker::LogLine("reload failed: ...", nsbroker::LogPriority::kWarning);
#pragma once

#include <string>
#include <string_view>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// syslog(3) priorities, for the "<N>" prefix journald reads (sd-daemon(3)).
enum class LogPriority { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6 };

// One operational line on stderr: "nsbrokerd: MESSAGE", as "<N>nsbrokerd: MESSAGE" when
// journald reads stderr ($JOURNAL_STREAM).
void LogLine(std::string_view message, LogPriority priority = LogPriority::kInfo);

// "<N>" where journald reads stderr, so that it files the line at that priority; else "".
std::string JournalPrefix(LogPriority priority);

// Writes all of `text` to `fd` (retrying short writes and EINTR); gives up on an error, as a
// log line that cannot be written has nowhere to say so.
void WriteAll(int fd, std::string_view text);

// The file an audit_log `spec` names, opened for appending as a regular file (O_NOFOLLOW: no
// link a user planted; O_NONBLOCK, O_NOCTTY); an invalid descriptor for "-" (stderr) and
// "syslog".
[[nodiscard]] Result<UniqueFd> OpenAuditFile(const std::string& spec);

}  // namespace nsbroker
