// The runtime's state output: real runc output parses; anything that is not strict JSON, or
// not a running container with a pid, is an error that says why.
#include "oci_state.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace nsbroker {
namespace {

std::string Why(std::string_view json) {
  auto state = ParseOciState(json, "web1");
  EXPECT_FALSE(state.has_value()) << json;
  if (state) return {};
  EXPECT_EQ(state.error().code, ErrorCode::kUnavailable);
  return state.error().message;
}

TEST(OciState, RuncOutputParses) {
  // `runc state` as Debian 12's runc 1.1.5 prints it, annotations and all.
  auto state = ParseOciState(R"({
  "ociVersion": "1.0.2-dev",
  "id": "web1",
  "pid": 29186,
  "status": "running",
  "bundle": "/tmp/b",
  "rootfs": "/tmp/b/rootfs",
  "created": "2026-12-01T21:13:51.88925547Z",
  "owner": "",
  "annotations": {"a": [1, -2.5e3, true, false, null, "\u00e9\n"]}
})",
                             "web1");
  ASSERT_OK(state);
  EXPECT_EQ(state->pid, 29186);
}

TEST(OciState, StoppedAndPausedContainersAreNotServed) {
  EXPECT_EQ(Why(R"({"pid": 0, "status": "stopped"})"), "container web1 is stopped");
  EXPECT_EQ(Why(R"({"pid": 7, "status": "paused"})"), "container web1 is paused");
  EXPECT_EQ(Why(R"({"pid": 0, "status": "running"})"), "container web1 is running without a pid");
  EXPECT_EQ(Why(R"({"pid": 7, "status": "\u001b[2J"})"), "container web1 is ?[2J");
}

TEST(OciState, GarbageIsRefusedWithWhereItWent) {
  EXPECT_EQ(Why(""), "runtime output is not JSON: expected an object at byte 0");
  EXPECT_EQ(Why("[1]"), "runtime output is not JSON: expected an object at byte 0");
  EXPECT_EQ(Why(R"({"pid": 1, "status": "running"})"
                "x"),
            "runtime output is not JSON: text after the object at byte 31");
  EXPECT_EQ(Why(R"({"pid": 1, "pid": 2, "status": "running"})"),
            "runtime output is not JSON: duplicate key \"pid\" at byte 19");
  EXPECT_EQ(Why(R"({"pid": "1", "status": "running"})"),
            "runtime output is not JSON: \"pid\" is not a process id at byte 11");
  EXPECT_EQ(Why(R"({"pid": 1.5, "status": "running"})"),
            "runtime output is not JSON: \"pid\" is not a process id at byte 11");
  EXPECT_EQ(Why(R"({"pid": 99999999999, "status": "running"})"),
            "runtime output is not JSON: \"pid\" is not a process id at byte 19");
  EXPECT_EQ(Why(R"({"pid": 1, "status": 3})"),
            "runtime output is not JSON: \"status\" is not a string at byte 22");
  EXPECT_EQ(Why(R"({"pid": 1, "status": "running", "x": 01})"),
            "runtime output is not JSON: expected '}' at byte 38");
  EXPECT_EQ(Why("{\"pid\": 1, \"status\": \"run\nning\"}"),
            "runtime output is not JSON: control character in a string at byte 26");
  EXPECT_EQ(Why(R"({"pid": 1, "status": "running", "x": tru})"),
            "runtime output is not JSON: expected a value at byte 37");
  EXPECT_EQ(Why(std::string(40, '[')), "runtime output is not JSON: expected an object at byte 0");
  std::string deep = "{\"a\":" + std::string(40, '[') + std::string(40, ']') + "}";
  EXPECT_EQ(Why(deep).rfind("runtime output is not JSON: nested too deep", 0), 0u);
  EXPECT_EQ(Why(R"({"status": "running"})"), "runtime state has no \"pid\"");
  EXPECT_EQ(Why(R"({"pid": 4})"), "runtime state has no \"status\"");
}

}  // namespace
}  // namespace nsbroker
