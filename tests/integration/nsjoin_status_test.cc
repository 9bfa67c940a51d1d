// nsjoin --status [--json] and --prometheus against the real broker: counters, target states,
// valid JSON and exposition lines, and root only.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>

#include "harness.h"

namespace nsbroker::testing {
namespace {

class NsjoinStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RequireRoot());
    auto target = Target::Start({.hostname = "status-target"});
    ASSERT_TRUE(target.has_value()) << target.error().message;
    target_ = std::move(*target);
    target_pid_ = target_.pid();
    auto broker = Broker::Start(
        "socket_mode: \"0666\"\n"
        "target { name: \"up\" self: true }\n"
        "target { name: \"down\" pid: " +
        std::to_string(target_.pid()) + " }\n");
    ASSERT_TRUE(broker.has_value()) << broker.error().message;
    broker_ = std::make_unique<Broker>(std::move(*broker));
    // One grant, one denial, then the pid target goes away.
    EXPECT_EQ(Nsjoin({"-t", "up", "-u", "--", "/bin/true"}).status, 0);
    EXPECT_EQ(Nsjoin({"-t", "up", "-u", "--", "/bin/true"}, 65534).status, 125);
    target_.Kill();
    ASSERT_TRUE(broker_->WaitForLog("target 'down' is unavailable")) << broker_->log();
  }

  RunResult Nsjoin(std::vector<std::string> args, std::optional<uid_t> uid = {}) {
    args.insert(args.begin(), {NsjoinBinary(), "--socket", broker_->socket()});
    return RunCommand(args, {.uid = uid, .gid = uid});
  }

  Target target_;
  pid_t target_pid_ = 0;
  std::unique_ptr<Broker> broker_;
};

TEST_F(NsjoinStatusTest, TextJsonAndPrometheus) {
  auto text = Nsjoin({"--status"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("^uptime [0-9]+\\.[0-9]{3} s\n"))) << text.out;
  EXPECT_NE(text.out.find("\ngrants 1\ndenials 1\nerrors 0\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("target up available\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("target down unavailable: process " + std::to_string(target_pid_) +
                          " exited\n"),
            std::string::npos)
      << text.out;

  auto json = Nsjoin({"--status", "--json"});
  ASSERT_EQ(json.status, 0) << json.err;
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_EQ(parsed.fields().at("grants").number_value(), 1);
  EXPECT_EQ(parsed.fields().at("denials").number_value(), 1);
  const auto& targets = parsed.fields().at("targets").list_value().values();
  ASSERT_EQ(targets.size(), 2);
  EXPECT_EQ(targets[1].struct_value().fields().at("name").string_value(), "down");
  EXPECT_FALSE(targets[1].struct_value().fields().at("available").bool_value());

  auto prom = Nsjoin({"--prometheus"});
  ASSERT_EQ(prom.status, 0) << prom.err;
  // Text exposition 0.0.4: comment lines, or NAME[{LABELS}] VALUE.
  std::regex line(
      "# (HELP|TYPE) nsbroker_[a-z_]+ .+|nsbroker_[a-z_]+(\\{target=\"[^\"]*\"\\})? "
      "[0-9]+(\\.[0-9]+)?");
  std::istringstream lines(prom.out);
  for (std::string l; std::getline(lines, l);) EXPECT_TRUE(std::regex_match(l, line)) << l;
  EXPECT_NE(prom.out.find("\nnsbroker_grants_total 1\n"), std::string::npos) << prom.out;
  EXPECT_NE(prom.out.find("# TYPE nsbroker_denials_total counter\nnsbroker_denials_total 1\n"),
            std::string::npos)
      << prom.out;
  EXPECT_NE(prom.out.find("\nnsbroker_target_available{target=\"up\"} 1\n"), std::string::npos);
  EXPECT_NE(prom.out.find("\nnsbroker_target_available{target=\"down\"} 0\n"), std::string::npos);
}

TEST_F(NsjoinStatusTest, IsForRootOnlyAndTakesNoTarget) {
  auto user = Nsjoin({"--status"}, 65534);
  EXPECT_EQ(user.status, 125);
  EXPECT_NE(user.err.find("status is for root only, not uid 65534"), std::string::npos) << user.err;
  EXPECT_EQ(Nsjoin({"--prometheus"}, 65534).status, 125);
  auto bad = Nsjoin({"--status", "-t", "up"});
  EXPECT_EQ(bad.status, 125);
  EXPECT_NE(bad.err.find("--status and --prometheus take nothing but --socket"), std::string::npos)
      << bad.err;
  EXPECT_EQ(Nsjoin({"--prometheus", "--json"}).status, 125);
}

}  // namespace
}  // namespace nsbroker::testing
