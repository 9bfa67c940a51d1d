// Audit lines: the exact format, escaping of peer-supplied text, one line per write to a file.
#include "audit.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "harness.h"
#include "test_util.h"

namespace nsbroker {
namespace {

std::chrono::system_clock::time_point At(std::time_t t) {
  return std::chrono::system_clock::from_time_t(t);
}

TEST(Audit, FormatsTheDocumentedLine) {
  AuditRecord r{.granted = true,
                .target = "web1",
                .kinds = KindBit(NsKind::kNet) | KindBit(NsKind::kUts),
                .peer_pid = 1234,
                .peer_uid = 1000,
                .peer_gid = 100,
                .reason = "allow uid 1000"};
  EXPECT_EQ(FormatAuditLine(r, At(1700000000)),
            "nsbroker-audit time=2023-11-14T22:13:20Z decision=grant target=web1 kinds=net,uts "
            "peer_pid=1234 peer_uid=1000 peer_gid=100 reason=\"allow uid 1000\"");
  r.granted = false;
  r.kinds = 0;
  r.reason = "no allow rule matches";
  EXPECT_EQ(FormatAuditLine(r, At(0)),
            "nsbroker-audit time=1970-01-01T00:00:00Z decision=deny target=web1 kinds= "
            "peer_pid=1234 peer_uid=1000 peer_gid=100 reason=\"no allow rule matches\"");
}

TEST(Audit, EscapesWhatAPeerControls) {
  AuditRecord r{.target = "a b\"\n", .reason = "unknown target 'x\"\n\\'"};
  std::string line = FormatAuditLine(r, At(0));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_NE(line.find("target=\"a b\\\"\\x0a\""), std::string::npos) << line;
  EXPECT_NE(line.find("reason=\"unknown target 'x\\\"\\x0a\\\\'\""), std::string::npos) << line;
}

TEST(Audit, AppendsOneLinePerRecordToAFile) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  {
    auto log = AuditLog::Open(path);
    ASSERT_OK(log);
    (*log)->Write({.granted = true, .target = "t1", .reason = "root"});
  }
  {
    auto log = AuditLog::Open(path);
    ASSERT_OK(log);
    (*log)->Write({.granted = false, .target = "t2", .reason = "no"});
  }
  std::ifstream in(path);
  std::string first, second, third;
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_NE(first.find("decision=grant target=t1"), std::string::npos) << first;
  EXPECT_NE(second.find("decision=deny target=t2"), std::string::npos) << second;
  EXPECT_FALSE(std::getline(in, third));
}

TEST(Audit, UnwritablePathIsAnError) {
  auto log = AuditLog::Open("/nonexistent/dir/audit.log");
  ASSERT_FALSE(log.has_value());
  EXPECT_EQ(log.error().message, "audit_log /nonexistent/dir/audit.log: No such file or directory");
}

}  // namespace
}  // namespace nsbroker
