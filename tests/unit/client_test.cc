// The client against a scripted broker on a real UNIX socket: who serves it, the broker's
// errors, and that no descriptor is handed out (or leaked) before it is checked.
#include "nsbroker/client.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker::testing {
namespace {

// Answers one request on a socket at a temporary path with a scripted response; listens as
// `uid` (SO_PEERCRED reports whoever called listen).
class FakeBroker {
 public:
  FakeBroker(const v1::Response& response, std::vector<int> fds, std::optional<uid_t> uid = {}) {
    path_ = dir_.Join("broker.sock");
    UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    chmod(path_.c_str(), 0666);
    int ready[2];
    EXPECT_EQ(pipe2(ready, O_CLOEXEC), 0);
    UniqueFd ready_r(ready[0]), ready_w(ready[1]);
    pid_t pid = fork();
    if (pid == 0) {
      if (uid && (setgroups(0, nullptr) != 0 || setresgid(*uid, *uid, *uid) != 0 ||
                  setresuid(*uid, *uid, *uid) != 0)) {
        _exit(1);
      }
      if (listen(sock.get(), 4) != 0 || write(ready_w.get(), "r", 1) != 1) _exit(2);
      UniqueFd conn(accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid() || !ReceiveDatagram(conn, 0)) _exit(3);
      if (!SendMessage(conn, response, fds)) _exit(4);
      (void)ReceiveDatagram(conn, 0);  // until the client hangs up
      _exit(0);
    }
    child_ = ChildProcess(pid);
    ready_w.reset();
    char byte;
    EXPECT_EQ(read(ready_r.get(), &byte, 1), 1);
  }
  const std::string& path() const { return path_; }

 private:
  TempDir dir_;
  std::string path_;
  ChildProcess child_;
};

v1::Response Versioned() {
  v1::Response response;
  response.set_protocol_version(kProtocolVersion);
  return response;
}

v1::Grant::Entry* AddEntry(v1::Response& response, v1::Kind kind, BorrowedFd fd,
                           std::uint32_t index) {
  auto* entry = response.mutable_grant()->add_entries();
  entry->set_kind(kind);
  entry->set_fd_index(index);
  struct stat st{};
  fstat(fd.get(), &st);
  entry->set_inode(st.st_ino);
  entry->set_device(st.st_dev);
  return entry;
}

UniqueFd OpenOwn(const char* kind) {
  return UniqueFd(open((std::string("/proc/self/ns/") + kind).c_str(), O_RDONLY | O_CLOEXEC));
}

TEST(Client, RefusesASocketServedByAnotherUserUnlessTrusted) {
  ASSERT_TRUE(RequireRoot());
  v1::Response response = Versioned();
  response.mutable_targets();
  {
    FakeBroker broker(response, {}, 65534);
    auto client = Client::Connect(broker.path());
    ASSERT_FALSE(client.has_value());
    EXPECT_EQ(client.error().code, ErrorCode::kPermissionDenied);
    EXPECT_NE(client.error().message.find("uid 65534"), std::string::npos)
        << client.error().message;
  }
  FakeBroker broker(response, {}, 65534);
  auto client = Client::Connect(broker.path(), {.trusted_server_uids = {65534}});
  ASSERT_OK(client);
  EXPECT_EQ(client->server_uid(), 65534u);
  EXPECT_OK(client->List());
}

TEST(Client, MissingSocketIsUnavailable) {
  TempDir dir;
  auto client = Client::Connect(dir.Join("none.sock"));
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(client.error().message.find(dir.Join("none.sock")), std::string::npos);
}

TEST(Client, PassesTheBrokersErrorOn) {
  v1::Response response = Versioned();
  response.mutable_error()->set_code(v1::Error::PERMISSION_DENIED);
  response.mutable_error()->set_message("uid 1000 may not have net of 'web1'");
  FakeBroker broker(response, {});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  auto grant = client->Join("web1");
  ASSERT_FALSE(grant.has_value());
  EXPECT_EQ(grant.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(grant.error().message, "uid 1000 may not have net of 'web1'");
}

// Found by client_fuzz: an Error without a message printed "target 'web1': " and nothing.
TEST(Client, AnErrorWithoutAMessageStillSaysSomething) {
  v1::Response response = Versioned();
  response.mutable_error()->set_code(v1::Error::UNAVAILABLE);
  FakeBroker broker(response, {});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  auto grant = client->Join("web1");
  ASSERT_FALSE(grant.has_value());
  EXPECT_EQ(grant.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(grant.error().message, "the broker refused without a reason");
}

TEST(Client, HandsOutCheckedEntries) {
  UniqueFd net = OpenOwn("net");
  UniqueFd cwd(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  v1::Response response = Versioned();
  response.mutable_grant()->set_target("web1");
  AddEntry(response, v1::NET, net, 0);
  AddEntry(response, v1::CWD, cwd, 1);
  FakeBroker broker(response, {net.get(), cwd.get()});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  auto grant = client->Join("web1");
  ASSERT_OK(grant);
  EXPECT_EQ(grant->target, "web1");
  ASSERT_EQ(grant->entries.size(), 2u);
  const GrantEntry* entry = grant->Find(NsKind::kNet);
  ASSERT_NE(entry, nullptr);
  EXPECT_TRUE(entry->fd.valid());
  EXPECT_EQ(entry->inode, NsInode("/proc/self/ns/net"));
  EXPECT_NE(grant->Find(NsKind::kCwd), nullptr);
  EXPECT_EQ(grant->Find(NsKind::kUts), nullptr);
}

TEST(Client, RefusesADescriptorOfAnotherKindAndLeaksNothing) {
  UniqueFd uts = OpenOwn("uts");
  v1::Response response = Versioned();
  response.mutable_grant()->set_target("web1");
  AddEntry(response, v1::NET, uts, 0)->clear_inode();  // a lying broker
  FakeBroker broker(response, {uts.get()});
  std::size_t before = CountOpenFds();
  {
    auto client = Client::Connect(broker.path());
    ASSERT_OK(client);
    auto grant = client->Join("web1");
    ASSERT_FALSE(grant.has_value());
    EXPECT_EQ(grant.error().code, ErrorCode::kInvalidRequest);
    EXPECT_NE(grant.error().message.find("the 'net' descriptor is a 'uts' namespace"),
              std::string::npos)
        << grant.error().message;
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(Client, RefusesARootThatIsNotADirectory) {
  UniqueFd file(open("/dev/null", O_PATH | O_CLOEXEC));
  v1::Response response = Versioned();
  response.mutable_grant()->set_target("web1");
  AddEntry(response, v1::ROOT, file, 0);
  FakeBroker broker(response, {file.get()});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  auto grant = client->Join("web1");
  ASSERT_FALSE(grant.has_value());
  EXPECT_NE(grant.error().message.find("not a directory"), std::string::npos);
}

TEST(Client, RefusesKindsThatWereNotAskedFor) {
  UniqueFd net = OpenOwn("net");
  v1::Response response = Versioned();
  response.mutable_grant()->set_target("web1");
  AddEntry(response, v1::NET, net, 0);
  FakeBroker broker(response, {net.get()});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  std::vector<NsKind> kinds = {NsKind::kUts};
  auto grant = client->Join("web1", kinds);
  ASSERT_FALSE(grant.has_value());
  EXPECT_NE(grant.error().message.find("'net', which was not asked for"), std::string::npos);
}

TEST(Client, AskingOnlyForRootMeansEveryNamespaceWithIt) {
  UniqueFd net = OpenOwn("net");
  UniqueFd root(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  UniqueFd cwd(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  std::vector<NsKind> kinds = {NsKind::kRoot};
  {
    v1::Response response = Versioned();
    response.mutable_grant()->set_target("web1");
    AddEntry(response, v1::NET, net, 0);
    AddEntry(response, v1::ROOT, root, 1);
    FakeBroker broker(response, {net.get(), root.get()});
    auto client = Client::Connect(broker.path());
    ASSERT_OK(client);
    auto grant = client->Join("web1", kinds);
    ASSERT_OK(grant);
    EXPECT_NE(grant->Find(NsKind::kNet), nullptr);
    EXPECT_NE(grant->Find(NsKind::kRoot), nullptr);
  }
  // CWD still has to be named.
  v1::Response response = Versioned();
  response.mutable_grant()->set_target("web1");
  AddEntry(response, v1::CWD, cwd, 0);
  FakeBroker broker(response, {cwd.get()});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  auto grant = client->Join("web1", kinds);
  ASSERT_FALSE(grant.has_value());
  EXPECT_NE(grant.error().message.find("'cwd', which was not asked for"), std::string::npos);
}

TEST(Client, ListsTargetsWithTheirKinds) {
  v1::Response response = Versioned();
  auto* target = response.mutable_targets()->add_targets();
  target->set_name("web1");
  target->add_kinds(v1::NET);
  target->add_kinds(v1::UTS);
  FakeBroker broker(response, {});
  auto client = Client::Connect(broker.path());
  ASSERT_OK(client);
  auto list = client->List();
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "web1");
  EXPECT_EQ((*list)[0].kinds, (std::vector<NsKind>{NsKind::kNet, NsKind::kUts}));
}

}  // namespace
}  // namespace nsbroker::testing
