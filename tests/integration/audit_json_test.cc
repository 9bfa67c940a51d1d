// audit_format: JSON: the exact object, escaping of what a peer controls (checked to be
// valid JSON by protobuf's parser), and a real broker's accept/reject records.
#include "audit_json.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "harness.h"
#include "nsbroker/client.h"

namespace nsbroker {
namespace {

using google::protobuf::Struct;

Struct ParseJson(const std::string& text) {
  Struct parsed;
  auto status = google::protobuf::util::JsonStringToMessage(text, &parsed);
  EXPECT_TRUE(status.ok()) << status.ToString() << ": " << text;
  return parsed;
}

TEST(AuditJson, FormatsTheDocumentedObject) {
  AuditRecord r{.granted = true,
                .target = "web1",
                .kinds = KindBit(NsKind::kNet) | KindBit(NsKind::kUts),
                .peer_pid = 1234,
                .peer_uid = 1000,
                .peer_gid = 100,
                .reason = "allow uid 1000",
                .peer_groups = {27, 100},
                .target_pid = 42,
                .namespaces = {{NsKind::kNet, 4026531840, 4026531992},
                               {NsKind::kUts, 4026531838, 4026531838}}};
  auto at = std::chrono::system_clock::from_time_t(1700000000) + std::chrono::microseconds(5);
  EXPECT_EQ(FormatAuditJson(r, at),
            "{\"accept\":{\"time\":{\"seconds\":1700000000,\"nanoseconds\":5000,"
            "\"iso8601\":\"2023-11-14T22:13:20.000005000Z\"},\"target\":\"web1\","
            "\"kinds\":[\"net\",\"uts\"],\"peer\":{\"pid\":1234,\"uid\":1000,\"gid\":100,"
            "\"groups\":[27,100]},\"reason\":\"allow uid 1000\",\"target_pid\":42,"
            "\"namespaces\":[{\"kind\":\"net\",\"id\":4026531840,\"inode\":4026531992},"
            "{\"kind\":\"uts\",\"id\":4026531838,\"inode\":4026531838}]}}");
  r = {.target = "web1", .reason = "no allow rule matches"};
  EXPECT_EQ(FormatAuditJson(r, std::chrono::system_clock::from_time_t(0)),
            "{\"reject\":{\"time\":{\"seconds\":0,\"nanoseconds\":0,"
            "\"iso8601\":\"1970-01-01T00:00:00.000000000Z\"},\"target\":\"web1\",\"kinds\":[],"
            "\"peer\":{\"pid\":0,\"uid\":0,\"gid\":0,\"groups\":[]},"
            "\"reason\":\"no allow rule matches\"}}");
}

TEST(AuditJson, WhatAPeerSendsStaysInsideItsString) {
  AuditRecord r{.target = std::string("a\"b\\c\n\x01\x7f\xff\xc3", 10),
                .reason = "unknown target 'a\"}'"};
  std::string json = FormatAuditJson(r, std::chrono::system_clock::now());
  EXPECT_EQ(json.find('\n'), std::string::npos);
  for (char ch : json) {
    auto c = static_cast<unsigned char>(ch);
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << json;
  }
  EXPECT_NE(json.find(R"("target":"a\u0022b\u005cc\u000a\u0001\u007f\u00ff\u00c3")"),
            std::string::npos)
      << json;
  Struct parsed = ParseJson(json);
  const auto& reject = parsed.fields().at("reject").struct_value().fields();
  EXPECT_EQ(reject.at("reason").string_value(), "unknown target 'a\"}'");
}

TEST(AuditJson, TheBrokerWritesOneObjectPerDecision) {
  ASSERT_TRUE(testing::RequireRoot());
  auto target = testing::Target::Start({.hostname = "audit-json"});
  ASSERT_TRUE(target.has_value()) << target.error().message;
  testing::TempDir dir;
  auto broker = testing::Broker::Start(
      "socket_mode: \"0666\"\naudit_format: JSON\naudit_log: \"" + dir.Join("audit.json") +
      "\"\ntarget { name: \"t\" pid: " + std::to_string(target->pid()) + " }\n");
  ASSERT_TRUE(broker.has_value()) << broker.error().message;
  auto client = Client::Connect(broker->socket());
  ASSERT_TRUE(client.has_value()) << client.error().message;
  auto grant = client->Join("t", std::vector<NsKind>{NsKind::kNet, NsKind::kUts});
  ASSERT_TRUE(grant.has_value()) << grant.error().message;
  auto refused = testing::RunCommand(
      {testing::NsjoinBinary(), "--socket", broker->socket(), "-t", "t", "-n", "--", "/bin/true"},
      {.uid = 65534, .gid = 65534});
  EXPECT_EQ(refused.status, 125) << refused.err;

  std::ifstream in(dir.Join("audit.json"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);
  auto accept = ParseJson(lines[0]).fields().at("accept").struct_value().fields();
  EXPECT_EQ(accept.at("target").string_value(), "t");
  EXPECT_EQ(accept.at("target_pid").number_value(), target->pid());
  const auto& namespaces = accept.at("namespaces").list_value().values();
  ASSERT_EQ(namespaces.size(), 2);
  EXPECT_EQ(namespaces[0].struct_value().fields().at("kind").string_value(), "net");
  EXPECT_EQ(namespaces[0].struct_value().fields().at("inode").number_value(),
            static_cast<double>(testing::NsInode(target->NsPath("net"))));
  EXPECT_EQ(accept.at("peer").struct_value().fields().at("uid").number_value(), 0);
  auto reject = ParseJson(lines[1]).fields().at("reject").struct_value().fields();
  EXPECT_EQ(reject.at("peer").struct_value().fields().at("uid").number_value(), 65534);
  EXPECT_EQ(reject.count("namespaces"), 0u);
}

}  // namespace
}  // namespace nsbroker
