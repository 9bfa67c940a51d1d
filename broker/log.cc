#include "log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "systemd.h"

namespace nsbroker {

std::string JournalPrefix(LogPriority priority) {
  if (!StderrIsJournal()) return "";
  return "<" + std::to_string(static_cast<int>(priority)) + ">";
}

void LogLine(std::string_view message, LogPriority priority) {
  std::string line = JournalPrefix(priority) + "nsbrokerd: ";
  line += message;
  line += '\n';
  WriteAll(STDERR_FILENO, line);
}

void WriteAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

Result<UniqueFd> OpenAuditFile(const std::string& spec) {
  if (spec == "syslog" || spec == "-") return UniqueFd();
  UniqueFd file(open(spec.c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
                     0640));
  if (!file.valid()) return SysError("audit_log " + spec);
  struct stat st;
  if (fstat(file.get(), &st) != 0) return SysError("audit_log " + spec);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kPermissionDenied, "audit_log " + spec + " is not a regular file");
  }
  return file;
}

}  // namespace nsbroker
