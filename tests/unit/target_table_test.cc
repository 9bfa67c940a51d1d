// The codec between nsbrokerd and its opener (broker/target_table.h): what is encoded comes
// back, and truncated, garbled or out-of-range bytes are refused with a reason.
#include "target_table.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "nsbroker/kind_set.h"
#include "test_util.h"

namespace nsbroker {
namespace {

Config Sample() {
  Config c;
  c.file = "/etc/nsbroker/nsbroker.conf";
  c.audit_log = "/var/log/nsbroker.audit";
  c.audit_format = AuditFormat::kJson;
  c.run_as = RunAs{.name = "nsbroker", .uid = 998, .gid = 997, .groups = {997, 4}};
  c.targets.push_back({.name = "web1",
                       .source = SourceType::kPid,
                       .pid = 4242,
                       .expose = KindBit(NsKind::kNet) | KindBit(NsKind::kUts),
                       .rules = {{.who = Rule::Who::kUid, .id = 1000, .kinds = 1}},
                       .location = {.line = 7, .column = 3}});
  TargetSpec oci{.name = "box", .source = SourceType::kOci, .expose = KindBit(NsKind::kMnt)};
  oci.oci = {.id = "c1", .runtime = "/usr/bin/crun", .root = "/run/crun", .timeout_ms = 250};
  c.targets.push_back(oci);
  c.targets.push_back({.name = "paths",
                       .source = SourceType::kPaths,
                       .paths = {{NsKind::kNet, "/run/netns/a"}, {NsKind::kCgroupDir, "/sys/x"}},
                       .expose = KindBit(NsKind::kNet) | KindBit(NsKind::kCgroupDir)});
  c.targets.push_back(
      {.name = "unit", .source = SourceType::kCgroup, .file = "/system.slice/web.service"});
  return c;
}

void ExpectSameTable(const Config& a, const Config& b) {
  EXPECT_EQ(a.file, b.file);
  EXPECT_EQ(a.audit_log, b.audit_log);
  EXPECT_EQ(a.audit_format, b.audit_format);
  ASSERT_EQ(a.run_as.has_value(), b.run_as.has_value());
  if (a.run_as) {
    EXPECT_EQ(a.run_as->name, b.run_as->name);
    EXPECT_EQ(a.run_as->uid, b.run_as->uid);
    EXPECT_EQ(a.run_as->gid, b.run_as->gid);
    EXPECT_EQ(a.run_as->groups, b.run_as->groups);
  }
  ASSERT_EQ(a.targets.size(), b.targets.size());
  for (std::size_t i = 0; i < a.targets.size(); ++i) {
    const TargetSpec& x = a.targets[i];
    const TargetSpec& y = b.targets[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_TRUE(SameSource(x, y)) << x.name;
    EXPECT_EQ(x.location.line, y.location.line);
    EXPECT_EQ(x.location.column, y.location.column);
  }
}

TEST(TargetTable, RoundTripsWhatTheOpenerNeedsAndLeavesPolicyOut) {
  Config sample = Sample();
  auto decoded = DecodeTargetTable(EncodeTargetTable(sample));
  ASSERT_OK(decoded);
  ExpectSameTable(sample, *decoded);
  EXPECT_TRUE(decoded->targets[0].rules.empty());  // allow rules are the server's
}

TEST(TargetTable, EveryTruncationIsRefused) {
  std::string bytes = EncodeTargetTable(Sample());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto decoded = DecodeTargetTable(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(decoded.has_value()) << n << " of " << bytes.size() << " bytes";
    EXPECT_EQ(decoded.error().code, ErrorCode::kInvalidRequest);
  }
}

TEST(TargetTable, TrailingBytesAreRefused) {
  auto decoded = DecodeTargetTable(EncodeTargetTable(Sample()) + "x");
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().message, "target table: 1 bytes after the end");
}

TEST(TargetTable, GarbageIsRefusedNeverTrusted) {
  std::mt19937 random(18);
  std::string good = EncodeTargetTable(Sample());
  for (int round = 0; round < 2000; ++round) {
    std::string bytes = good;
    // A few bytes flipped past the magic, or noise of any length: decoding either refuses or
    // yields a table within the decoder's bounds, and never reads out of range (ASan builds).
    for (int flips = 0; flips < 1 + round % 4; ++flips) {
      bytes[8 + random() % (bytes.size() - 8)] = static_cast<char>(random());
    }
    if (auto decoded = DecodeTargetTable(bytes)) {
      EXPECT_LE(decoded->targets.size(), 4u);
    }
    std::string noise(random() % 256, '\0');
    for (char& c : noise) c = static_cast<char>(random());
    EXPECT_FALSE(DecodeTargetTable(noise).has_value());
  }
}

// The single target of this config starts at byte 30: magic, version, "f", "-", the format,
// the run_as flag and the count come first; its oci runtime is the default "runc".
Config OneTarget() {
  Config c;
  c.file = "f";
  c.audit_log = "-";
  c.targets.push_back({.name = "t", .source = SourceType::kSelf, .expose = KindBit(NsKind::kNet)});
  return c;
}
constexpr std::size_t kFormat = 18, kCount = 26, kSource = 35, kPathCount = 67, kExpose = 71;

std::string With(std::size_t offset, std::uint32_t value) {
  std::string bytes = EncodeTargetTable(OneTarget());
  std::memcpy(bytes.data() + offset, &value, sizeof value);
  return bytes;
}

std::string Refusal(const std::string& bytes) {
  auto decoded = DecodeTargetTable(bytes);
  return decoded ? "accepted" : decoded.error().message;
}

TEST(TargetTable, OutOfRangeFieldsAreRefusedByName) {
  ASSERT_OK(DecodeTargetTable(EncodeTargetTable(OneTarget())));
  ASSERT_EQ(With(kExpose, KindBit(NsKind::kNet)),
            EncodeTargetTable(OneTarget()));  // the offsets are right
  EXPECT_EQ(Refusal(With(0, 0x12345678)), "target table: not a target table");
  EXPECT_EQ(Refusal(With(4, 2)), "target table: a target table of version 2, not 1");
  EXPECT_EQ(Refusal(With(kFormat, 2)), "target table: audit format 2");
  EXPECT_EQ(Refusal(With(kSource, 8)), "target table: source type 8");
  EXPECT_EQ(Refusal(With(kExpose, 1u << 13)), "target table: expose 8192");
  EXPECT_EQ(Refusal(With(kCount, 2)), "target table: 2 targets");
  EXPECT_EQ(Refusal(With(kCount, 0xffffffff)), "target table: 4294967295 targets");
  EXPECT_EQ(Refusal(With(kPathCount, 13)), "target table: 13 paths");
  EXPECT_EQ(Refusal(With(8, 1u << 30)), "target table: file name of 1073741824 bytes");
}

TEST(TargetTable, UnknownKindsInPathsAreRefused) {
  Config c = OneTarget();
  c.targets[0].paths = {{NsKind::kNet, "/run/netns/a"}};
  std::string bytes = EncodeTargetTable(c);
  std::uint32_t zero = 0;
  std::memcpy(bytes.data() + kPathCount + 4, &zero, sizeof zero);
  EXPECT_EQ(Refusal(bytes), "target table: kind 0");
}

TEST(CompiledConfig, RoundTripsTheTextAndItsTable) {
  CompiledConfig compiled{.text = "target { name: \"web1\" pid: 4242 }\n", .table = Sample()};
  auto decoded = DecodeCompiledConfig(EncodeCompiledConfig(compiled));
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->text, compiled.text);
  ExpectSameTable(compiled.table, decoded->table);
  // A table is not a compiled config, nor the other way round.
  EXPECT_FALSE(DecodeCompiledConfig(EncodeTargetTable(Sample())).has_value());
  EXPECT_FALSE(DecodeTargetTable(EncodeCompiledConfig(compiled)).has_value());
}

TEST(Handover, RoundTripsAndRefusesImpossibleDescriptorsAndPids) {
  Handover h{.config_path = "/etc/nsbroker/nsbroker.conf",
             .channel = 5,
             .self_exe = 6,
             .server = 4321,
             .socket_file = {.path = "/run/nsbroker/nsbroker.sock", .dev = 23, .ino = 99},
             .config = Sample()};
  auto decoded = DecodeHandover(EncodeHandover(h));
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->config_path, h.config_path);
  EXPECT_EQ(decoded->channel, 5);
  EXPECT_EQ(decoded->self_exe, 6);
  EXPECT_EQ(decoded->server, 4321);
  EXPECT_EQ(decoded->socket_file.path, h.socket_file.path);
  EXPECT_EQ(decoded->socket_file.dev, 23u);
  EXPECT_EQ(decoded->socket_file.ino, 99u);
  EXPECT_TRUE(decoded->uwsgi_file.path.empty());
  ExpectSameTable(h.config, decoded->config);
  std::string bytes = EncodeHandover(h);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    ASSERT_FALSE(DecodeHandover(std::string_view(bytes).substr(0, n)).has_value()) << n;
  }
  Handover bad = h;
  bad.server = 0;
  EXPECT_FALSE(DecodeHandover(EncodeHandover(bad)).has_value());
  bad = h;
  bad.self_exe = bad.channel;
  EXPECT_FALSE(DecodeHandover(EncodeHandover(bad)).has_value());
}

}  // namespace
}  // namespace nsbroker
