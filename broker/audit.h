// Owns every line the broker writes: one audit line per decision, and operational log lines.
// Never decides anything, and never lets a peer-supplied string break the line format.
//
//   auto audit = nsbroker::AuditLog::Open("-");   // stderr, "syslog" or a file (appended)
//   audit->Write({.granted = true, .target = "web1", .kinds = KindBit(NsKind::kNet), ...});
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "log.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "policy.h"

namespace nsbroker {

struct AuditRecord {
  bool granted = false;
  bool refused = false;  // a connection refused at admission: decision=refuse
  std::string target;
  KindSet kinds = 0;
  pid_t peer_pid = 0;
  uid_t peer_uid = 0;
  gid_t peer_gid = 0;
  std::string reason;
  // Carried by the JSON format only (audit_json.h).
  std::vector<gid_t> peer_groups;  // supplementary
  pid_t target_pid = 0;            // the process a granted target resolved to; 0 for none
  struct Namespace {
    NsKind kind{};
    std::uint64_t ns_id = 0;  // NS_GET_ID, 0 where the kernel has none
    std::uint64_t inode = 0;
  };
  std::vector<Namespace> namespaces;  // what a grant handed out
};

// nsbroker-audit time=RFC3339 decision=grant|deny|refuse target=NAME kinds=net,uts peer_pid=N
// peer_uid=N peer_gid=N reason="..." (no trailing newline). Quotes, backslashes and every
// byte outside printable ASCII in the reason are escaped (\xHH): a peer's bytes such as
// U+2028, U+202E or NEL never reach a log reader raw. The target name is quoted and escaped
// the same way when it is not a bare token.
std::string FormatAuditLine(const AuditRecord& record, std::chrono::system_clock::time_point now);

class AuditLog {
 public:
  // "-" = stderr, "syslog" = syslog(3) LOG_AUTHPRIV, else a file opened O_APPEND, which
  // must be a regular file: O_NOFOLLOW (no link a user planted), O_NOCTTY, O_NONBLOCK. Each
  // record as a text line (FormatAuditLine) or a JSON object (FormatAuditJson).
  [[nodiscard]] static Result<std::unique_ptr<AuditLog>> Open(
      const std::string& spec, AuditFormat format = AuditFormat::kText);
  // The same, over an audit file `file` already opened by OpenAuditFile (for a file `spec`;
  // invalid for "-" and "syslog"): a privilege-separated server is handed it by its opener.
  [[nodiscard]] static Result<std::unique_ptr<AuditLog>> Adopt(const std::string& spec,
                                                               AuditFormat format, UniqueFd file);
  ~AuditLog();
  // Stage + Commit.
  void Write(const AuditRecord& record);
  // Group commit: lines staged during one loop turn go out in one write(2) on Commit, which
  // the server calls before it sends any of that turn's responses: a crash can lose a
  // grant that was never sent, never the line of one that was.
  void Stage(const AuditRecord& record);
  void Commit();

 private:
  AuditLog() = default;
  std::string spec_;
  AuditFormat format_ = AuditFormat::kText;
  UniqueFd file_;  // the audit file; invalid for stderr and syslog
  bool syslog_ = false;
  std::string staged_;  // complete lines, newline-terminated
};

}  // namespace nsbroker
