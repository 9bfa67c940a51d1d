#include "audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <ctime>

#include "audit_json.h"

namespace nsbroker {
namespace {

// Appends `text` with quotes, backslashes and every byte outside printable ASCII escaped;
// runs of plain bytes in one append.
void AppendEscaped(std::string& out, std::string_view text) {
  std::size_t plain = 0;  // start of the run not yet appended
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    unsigned char u = static_cast<unsigned char>(c);
    if (c != '"' && c != '\\' && u >= 0x20 && u < 0x7f) continue;
    out.append(text, plain, i - plain);
    plain = i + 1;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  out.append(text, plain);
}

// A bare token when it is one; quoted and escaped otherwise (e.g. an unknown target's name,
// which comes from the peer).
void AppendToken(std::string& out, std::string_view text) {
  bool bare = !text.empty();
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u <= ' ' || u >= 0x7f || c == '"' || c == '\\' || c == '=') bare = false;
  }
  if (bare) {
    out += text;
    return;
  }
  out += '"';
  AppendEscaped(out, text);
  out += '"';
}

// RFC 3339 in UTC to the second, formatted once per second: gmtime_r, strftime and a string
// per field made FormatAuditLine 6% of the broker's CPU under persistent load
// (docs/BENCHMARKS.md), as much as all of the protobuf encoding.
std::string_view UtcSecond(std::chrono::system_clock::time_point now) {
  thread_local std::time_t cached = -1;
  thread_local char text[32];
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  if (t != cached) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    if (std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) text[0] = '\0';
    cached = t;
  }
  return text;
}

}  // namespace

std::string FormatAuditLine(const AuditRecord& r, std::chrono::system_clock::time_point now) {
  // Appended in place, without a temporary string per field.
  std::string line;
  line.reserve(192);
  line += "nsbroker-audit time=";
  line += UtcSecond(now);
  line += r.refused ? " decision=refuse" : r.granted ? " decision=grant" : " decision=deny";
  line += " target=";
  AppendToken(line, r.target);
  line += " kinds=";
  line += KindSetString(r.kinds);
  line += " peer_pid=";
  line += std::to_string(r.peer_pid);
  line += " peer_uid=";
  line += std::to_string(r.peer_uid);
  line += " peer_gid=";
  line += std::to_string(r.peer_gid);
  line += " reason=\"";
  AppendEscaped(line, r.reason);
  line += '"';
  return line;
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& spec, AuditFormat format) {
  auto file = OpenAuditFile(spec);
  if (!file) return std::unexpected(std::move(file.error()));
  return Adopt(spec, format, std::move(*file));
}

Result<std::unique_ptr<AuditLog>> AuditLog::Adopt(const std::string& spec, AuditFormat format,
                                                  UniqueFd file) {
  std::unique_ptr<AuditLog> log(new AuditLog());
  log->spec_ = spec;
  log->format_ = format;
  if (spec == "syslog") {
    openlog("nsbrokerd", LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
    log->syslog_ = true;
  } else if (spec != "-") {
    if (!file.valid()) return MakeError(ErrorCode::kInternal, "audit_log " + spec + ": no file");
    log->file_ = std::move(file);
  }
  return log;
}

AuditLog::~AuditLog() { Commit(); }

void AuditLog::Write(const AuditRecord& record) {
  Stage(record);
  Commit();
}

void AuditLog::Stage(const AuditRecord& record) {
  auto now = std::chrono::system_clock::now();
  std::string line =
      format_ == AuditFormat::kJson ? FormatAuditJson(record, now) : FormatAuditLine(record, now);
  if (syslog_) {
    // syslog(3) takes one line per call; it is sent at once, which is before the response.
    syslog(LOG_AUTHPRIV | LOG_NOTICE, "%s", line.c_str());
    return;
  }
  if (!file_.valid()) staged_ += JournalPrefix(LogPriority::kNotice);  // as syslog's
  staged_ += line;
  staged_ += '\n';
}

void AuditLog::Commit() {
  if (staged_.empty()) return;
  // One write(2) of whole lines, so that concurrent writers to an O_APPEND file never
  // interleave within a line.
  WriteAll(file_.valid() ? file_.get() : STDERR_FILENO, staged_);
  staged_.clear();
}

}  // namespace nsbroker
