// The broker's platform-neutral jail logic (jail_target.cc, the handler's grant building)
// driven through a fake JailSystem. This fake is the one place the tests stand in for the
// kernel: FreeBSD's jail calls cannot run on Linux. Its "jail descriptors" are real pipe
// descriptors, so passing, duplicating and closing them is real.
#include "jail_target.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <memory>

#include "handler.h"
#include "opener.h"
#include "opener_client.h"
#include "test_util.h"
#include "wire.h"

namespace nsbroker {
namespace {

using testing::CountOpenFds;

class FakeJails : public JailSystem {
 public:
  explicit FakeJails(bool descriptors) : descriptors_(descriptors) {}

  void Create(std::int32_t jid, const std::string& name) { jails_[jid] = name; }
  // jail_get on a descriptor refused (its mode, after a run_as drop).
  void DenyDescriptorQueries() { deny_queries_ = true; }
  void DropRoot() { root_ = false; }  // the broker's run_as
  void Remove(std::int32_t jid) { jails_.erase(jid); }

  Result<std::int32_t> FindId(const std::string& name) const override {
    ++calls_;
    for (const auto& [jid, n] : jails_) {
      if (n == name) return jid;
    }
    return MakeError(ErrorCode::kNotFound, "jail \"" + name + "\" not found");
  }
  Result<std::string> FindName(std::int32_t jid) const override {
    ++calls_;
    auto it = jails_.find(jid);
    if (it == jails_.end()) return MakeError(ErrorCode::kNotFound, "jail not found");
    return it->second;
  }
  Result<std::optional<UniqueFd>> NewDescriptor(std::int32_t jid) const override {
    ++calls_;
    ++descriptors_made_;
    if (!descriptors_) return std::optional<UniqueFd>();
    if (!jails_.contains(jid)) return MakeError(ErrorCode::kNotFound, "jail not found");
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return SysError("pipe2");
    close(ends[1]);
    UniqueFd fd(ends[0]);
    // A descriptor refers to the jail (its jid *and* name) alive when it was made.
    bound_[Inode(fd.get())] = {jid, jails_.at(jid)};
    return std::optional<UniqueFd>(std::move(fd));
  }
  Result<std::int32_t> DescriptorJid(BorrowedFd descriptor) const override {
    ++calls_;
    if (deny_queries_) return MakeError(ErrorCode::kPermissionDenied, "Permission denied");
    auto it = bound_.find(Inode(descriptor.get()));
    if (it == bound_.end()) return MakeError(ErrorCode::kInvalidRequest, "not a jail descriptor");
    auto live = jails_.find(it->second.first);
    // The jail it was made for is gone, even if another jail took its jid.
    if (live == jails_.end() || live->second != it->second.second) {
      return MakeError(ErrorCode::kNotFound, "jail removed");
    }
    return it->second.first;
  }

  bool RunsAsRoot() const override { return root_; }

  static ino_t Inode(int fd) {
    struct stat st{};
    fstat(fd, &st);
    return st.st_ino;
  }
  int calls() const { return calls_; }
  int descriptors_made() const { return descriptors_made_; }

 private:
  bool descriptors_;
  bool deny_queries_ = false;
  bool root_ = true;
  mutable int descriptors_made_ = 0;
  std::map<std::int32_t, std::string> jails_;
  mutable std::map<ino_t, std::pair<std::int32_t, std::string>> bound_;
  mutable int calls_ = 0;
};

TargetSpec JailSpec(const std::string& name, const std::string& jail) {
  TargetSpec spec{.name = name, .source = SourceType::kJail, .file = jail};
  spec.expose = KindBit(NsKind::kJail);
  return spec;
}

TEST(JailRef, NumericIsAJidAnythingElseAName) {
  auto by_name = ParseJailRef("www1");
  ASSERT_OK(by_name);
  EXPECT_FALSE(by_name->jid.has_value());
  EXPECT_EQ(by_name->name, "www1");
  auto by_jid = ParseJailRef("3");
  ASSERT_OK(by_jid);
  EXPECT_EQ(by_jid->jid, 3);
  EXPECT_EQ(by_jid->name, "");
  EXPECT_EQ(ParseJailRef("007")->jid, 7);
  EXPECT_EQ(ParseJailRef("parent.child")->name, "parent.child");
  EXPECT_EQ(ParseJailRef("3a")->name, "3a") << "not all digits: a name";
}

TEST(JailRef, RefusesWhatCannotNameAJail) {
  EXPECT_EQ(ParseJailRef("0").error().message, "jail jid 0 is the host, not a jail");
  EXPECT_EQ(ParseJailRef("2147483648").error().message, "jail jid 2147483648 is out of range");
  EXPECT_EQ(ParseJailRef("").error().code, ErrorCode::kInvalidRequest);
  EXPECT_NE(ParseJailRef("a b").error().message.find("[A-Za-z0-9._:@-]"), std::string::npos);
  EXPECT_FALSE(ParseJailRef("w\"1").has_value());
  EXPECT_FALSE(ParseJailRef(std::string(256, 'a')).has_value());
  EXPECT_TRUE(ParseJailRef(std::string(255, 'a')).has_value());
}

TEST(JailTarget, ByNameResolvesTheJid) {
  auto jails = std::make_shared<FakeJails>(false);
  jails->Create(3, "www1");
  jails->Create(4, "db");
  auto target = OpenJailTarget(JailSpec("web", "www1"), jails);
  ASSERT_OK(target);
  auto jail = (*target)->OpenJail(true);
  ASSERT_OK(jail);
  EXPECT_EQ(jail->jid, 3);
  EXPECT_EQ(jail->name, "www1");
  EXPECT_FALSE(jail->descriptor.valid()) << "FreeBSD 14: no jail descriptors, even for root";
  EXPECT_EQ((*target)->watch_fd(), -1);
}

TEST(JailTarget, ByJidLearnsTheName) {
  auto jails = std::make_shared<FakeJails>(false);
  jails->Create(4, "db");
  auto target = OpenJailTarget(JailSpec("db", "4"), jails);
  ASSERT_OK(target);
  auto jail = (*target)->OpenJail(false);
  ASSERT_OK(jail);
  EXPECT_EQ(jail->jid, 4);
  EXPECT_EQ(jail->name, "db");
}

TEST(JailTarget, MissingJailIsUnavailable) {
  auto jails = std::make_shared<FakeJails>(true);
  jails->Create(3, "www1");
  auto by_name = OpenJailTarget(JailSpec("x", "www2"), jails);
  ASSERT_FALSE(by_name.has_value());
  EXPECT_EQ(by_name.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(by_name.error().message, "no jail named 'www2'");
  auto by_jid = OpenJailTarget(JailSpec("x", "9"), jails);
  ASSERT_FALSE(by_jid.has_value());
  EXPECT_EQ(by_jid.error().message, "no jail has jid 9");
}

TEST(JailTarget, WithoutDescriptorsAReusedJidIsRefused) {
  auto jails = std::make_shared<FakeJails>(false);
  jails->Create(3, "www1");
  auto target = OpenJailTarget(JailSpec("web", "www1"), jails);
  ASSERT_OK(target);
  jails->Remove(3);
  auto gone = (*target)->OpenJail(false);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(gone.error().message, "jail 'www1' (jid 3) was removed");
  jails->Create(3, "evil");
  auto reused = (*target)->OpenJail(false);
  ASSERT_FALSE(reused.has_value());
  EXPECT_EQ(reused.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(reused.error().message,
            "jid 3 now names jail 'evil', not 'www1' (the jail was removed; reload the broker)");
}

TEST(JailTarget, HeldDescriptorPinsTheJail) {
  auto jails = std::make_shared<FakeJails>(true);
  jails->Create(3, "www1");
  std::size_t before = CountOpenFds();
  {
    auto target = OpenJailTarget(JailSpec("web", "www1"), jails);
    ASSERT_OK(target);
    EXPECT_EQ(CountOpenFds(), before + 1) << "one held jail descriptor";
    auto with = (*target)->OpenJail(true);
    ASSERT_OK(with);
    ASSERT_TRUE(with->descriptor.valid());
    EXPECT_EQ(fcntl(with->descriptor.get(), F_GETFD), FD_CLOEXEC);
    EXPECT_EQ(*jails->DescriptorJid(with->descriptor), 3);
    auto without = (*target)->OpenJail(false);
    ASSERT_OK(without);
    EXPECT_FALSE(without->descriptor.valid());
    // Removed and replaced under the same jid and name: the held descriptor knows.
    jails->Remove(3);
    jails->Create(3, "www1-new");
    auto gone = (*target)->OpenJail(true);
    ASSERT_FALSE(gone.has_value());
    EXPECT_EQ(gone.error().message, "jail 'www1' (jid 3) was removed");
  }
  EXPECT_EQ(CountOpenFds(), before) << "no descriptor leaked";
}

TEST(JailTarget, ARefusedDescriptorQueryFallsBackToTheName) {
  auto jails = std::make_shared<FakeJails>(true);
  jails->Create(3, "www1");
  auto target = OpenJailTarget(JailSpec("web", "www1"), jails);
  ASSERT_OK(target);
  jails->DenyDescriptorQueries();  // as after run_as, if the descriptor's mode says so
  auto jail = (*target)->OpenJail(true);
  ASSERT_OK(jail);
  EXPECT_TRUE(jail->descriptor.valid());
  jails->Remove(3);
  jails->Create(3, "evil");
  auto reused = (*target)->OpenJail(true);
  ASSERT_FALSE(reused.has_value());
  EXPECT_EQ(reused.error().code, ErrorCode::kUnavailable);
}

TEST(JailTarget, AfterRunAsNoDescriptorIsMadeAndRootAttachesByJid) {
  auto jails = std::make_shared<FakeJails>(true);
  jails->Create(3, "www1");
  auto held = OpenJailTarget(JailSpec("web", "www1"), jails);  // at start-up, as root
  ASSERT_OK(held);
  jails->DropRoot();
  std::size_t before = CountOpenFds();
  auto reloaded = OpenJailTarget(JailSpec("web", "www1"), jails);  // a reload after the drop
  ASSERT_OK(reloaded);
  EXPECT_EQ(jails->descriptors_made(), 1) << "none made by the unprivileged broker";
  EXPECT_EQ(CountOpenFds(), before);
  auto jail = (*reloaded)->OpenJail(true);
  ASSERT_OK(jail);
  EXPECT_EQ(jail->jid, 3);
  EXPECT_FALSE(jail->descriptor.valid()) << "root's jail_attach_jd would fail with EPERM";
  // The descriptor made while root is still handed out: the kernel judges it by its creator.
  auto kept = (*held)->OpenJail(true);
  ASSERT_OK(kept);
  EXPECT_TRUE(kept->descriptor.valid());
}

TEST(JailTarget, AJailHasNoNamespaces) {
  auto jails = std::make_shared<FakeJails>(false);
  jails->Create(3, "www1");
  auto target = OpenJailTarget(JailSpec("web", "www1"), jails);
  ASSERT_OK(target);
  EXPECT_EQ((*target)->Open(KindBit(NsKind::kNet)).error().code, ErrorCode::kInternal);
}

// ---- The handler's grant building over jail targets ----

std::string JoinBytes(const std::string& target) {
  v1::Request r;
  r.set_protocol_version(kProtocolVersion);
  r.mutable_join()->set_target(target);
  std::string out;
  r.SerializeToString(&out);
  return out;
}

class JailGrantTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    jails_ = std::make_shared<FakeJails>(GetParam());
    jails_->Create(3, "www1");
    Config config;
    config.file = "jails.conf";
    TargetSpec spec = JailSpec("www1", "www1");
    spec.rules.push_back({Rule::Who::kUid, 65534, "uid 65534", KindBit(NsKind::kJail)});
    config.targets.push_back(std::move(spec));
    JailSystemPtr system = jails_;
    auto catalog = Catalog::Open(
        std::move(config), [system](const TargetSpec& s) { return OpenJailTarget(s, system); });
    ASSERT_OK(catalog);
    catalog_ = std::move(*catalog);
  }
  Outcome Join(uid_t uid) {
    return HandleRequest(*catalog_, stats_, {.pid = 7, .uid = uid, .gid = uid}, JoinBytes("www1"),
                         4096);
  }
  std::shared_ptr<FakeJails> jails_;
  std::unique_ptr<Catalog> catalog_;
  Stats stats_;
};

TEST(JailGrant, OnlyRootMayHoldAJailDescriptor) {
  EXPECT_TRUE(MayHoldJailDescriptor({.pid = 1, .uid = 0, .gid = 0}));
  EXPECT_FALSE(MayHoldJailDescriptor({.pid = 1, .uid = 65534, .gid = 0}));
  EXPECT_FALSE(MayHoldJailDescriptor({.pid = 1, .uid = 1000, .gid = 0, .groups = {0}}))
      << "group wheel is not root";
}

TEST_P(JailGrantTest, RootGetsADescriptorWhereTheKernelHasThem) {
  Outcome out = Join(0);
  ASSERT_TRUE(out.response.has_grant()) << out.response.DebugString();
  const auto& grant = out.response.grant();
  ASSERT_EQ(grant.entries_size(), 1);
  const auto& entry = grant.entries(0);
  EXPECT_EQ(entry.kind(), v1::JAIL);
  EXPECT_EQ(entry.jid(), 3);
  EXPECT_EQ(entry.jail_name(), "www1");
  bool freebsd15 = GetParam();
  EXPECT_EQ(entry.has_fd_index(), freebsd15);
  ASSERT_EQ(out.fds.size(), freebsd15 ? 1u : 0u);
  if (freebsd15) {
    EXPECT_EQ(*jails_->DescriptorJid(out.fds[0]), 3);
  }
  std::string bytes;
  out.response.SerializeToString(&bytes);
  EXPECT_OK(DecodeResponse(bytes, out.fds.size()));
  ASSERT_TRUE(out.audit.has_value());
  EXPECT_EQ(out.audit->reason,
            freebsd15 ? "root; jid 3 with a jail descriptor" : "root; jid 3 without a descriptor");
  EXPECT_EQ(out.tally, Outcome::Tally::kGrant);
}

TEST_P(JailGrantTest, OthersGetTheJidAndNameNeverADescriptor) {
  std::size_t before = CountOpenFds();
  {
    Outcome out = Join(65534);
    ASSERT_TRUE(out.response.has_grant()) << out.response.DebugString();
    const auto& entry = out.response.grant().entries(0);
    EXPECT_EQ(entry.kind(), v1::JAIL);
    EXPECT_EQ(entry.jid(), 3);
    EXPECT_EQ(entry.jail_name(), "www1");
    EXPECT_FALSE(entry.has_fd_index());
    EXPECT_TRUE(out.fds.empty());
    EXPECT_EQ(out.audit->reason, "allow uid 65534; jid 3 without a descriptor");
  }
  EXPECT_EQ(CountOpenFds(), before) << "no jail descriptor was made for a non-root peer";
}

TEST_P(JailGrantTest, PolicyStillDecides) {
  Outcome out = Join(1000);
  ASSERT_TRUE(out.response.has_error());
  // uid 1000 may have nothing of it: to that peer the target does not exist.
  EXPECT_EQ(out.response.error().code(), v1::Error::NOT_FOUND);
  EXPECT_TRUE(out.fds.empty());
}

TEST_P(JailGrantTest, ARemovedJailIsUnavailable) {
  jails_->Remove(3);
  Outcome out = Join(0);
  ASSERT_TRUE(out.response.has_error());
  EXPECT_EQ(out.response.error().code(), v1::Error::UNAVAILABLE);
  EXPECT_EQ(out.response.error().message(),
            "target 'www1' is unavailable: jail 'www1' (jid 3) was removed");
  EXPECT_TRUE(out.fds.empty());
}

std::string KernelName(const ::testing::TestParamInfo<bool>& param) {
  return param.param ? "FreeBSD15" : "FreeBSD14";
}

INSTANTIATE_TEST_SUITE_P(Kernels, JailGrantTest, ::testing::Bool(), KernelName);

// Privilege separation (docs/PRIVSEP.md): a server that dropped root can make no jail
// descriptor a root peer could attach with; its root opener makes it, and the server adopts it.
// The opener here is the real one (opener.h) in a forked process, over the real socketpair;
// only the jail calls are the fake's.
TEST(JailTarget, APrivilegeSeparatedServerGetsItsJailDescriptorsFromTheRootOpener) {
  auto jails = std::make_shared<FakeJails>(true);
  jails->Create(7, "www1");
  Config config;
  config.file = "test.conf";
  config.targets.push_back({.name = "www1",
                            .source = SourceType::kJail,
                            .file = "www1",
                            .expose = KindBit(NsKind::kJail)});
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.has_value());
  pid_t opener = fork();
  ASSERT_GE(opener, 0);
  if (opener == 0) {
    pair->second.reset();
    // The opener reaps and stops its server: a stand-in child, since this test is the server.
    pid_t server = fork();
    if (server == 0) {
      pause();
      _exit(0);
    }
    OpenerSetup setup{
        .config = config,
        .channel = std::move(pair->first),
        .server = server,
        .open = [jails](const TargetSpec& spec) { return OpenJailTarget(spec, jails); }};
    _exit(Opener(std::move(setup)).Run());
  }
  pair->first.reset();
  // This process is the server after its drop: by itself it would hold no descriptor.
  jails->DropRoot();
  auto alone = OpenJailTarget(config.targets[0], jails);
  ASSERT_TRUE(alone.has_value());
  EXPECT_FALSE((*alone)->OpenJail(true)->descriptor.valid());

  OpenerClient client(std::move(pair->second), config,
                      [jails](std::int32_t jid, std::string name, UniqueFd fd) {
                        return AdoptJailTarget(jails, jid, std::move(name), std::move(fd));
                      });
  auto catalog = Catalog::Open(config, client.Opener());
  ASSERT_TRUE(catalog.has_value());
  const CatalogEntry& entry = (*catalog)->entries()[0];
  ASSERT_TRUE(entry.handle) << entry.gone;
  auto jail = entry.handle->OpenJail(true);
  ASSERT_TRUE(jail.has_value()) << jail.error().message;
  EXPECT_EQ(jail->jid, 7);
  EXPECT_EQ(jail->name, "www1");
  ASSERT_TRUE(jail->descriptor.valid());
  struct stat st{};
  ASSERT_EQ(fstat(jail->descriptor.get(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));  // the fake's descriptor, made in the opener
  // The jail removed and another under its jid: the adopted target is not served as it.
  jails->Remove(7);
  jails->Create(7, "other");
  EXPECT_FALSE(entry.handle->OpenJail(true).has_value());

  kill(opener, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(opener, &status, 0), opener);
  EXPECT_TRUE(WIFEXITED(status));
}

}  // namespace
}  // namespace nsbroker
