// Fuzzes the broker's request path as the server runs it: bytes from a peer whose identity
// (uid, gid, groups) and descriptor budget come from the first four input bytes, through
// HandleRequest (decode, policy, descriptor opening, response). Checks, against a policy
// table written out here independently of policy.cc, that a grant goes only to a peer the
// config allows, only for kinds it allows, within the budget, and that the descriptors
// match the entries one for one. Targets are this process's own namespaces (`self`).
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "catalog.h"
#include "config.h"
#include "google/protobuf/stubs/logging.h"
#include "handler.h"
#include "wire.h"

namespace nsbroker {
namespace {

constexpr char kConfig[] = R"(
target {
  name: "web1"
  self: true
  expose: [NET, UTS, IPC, ROOT]
  allow { uid: 1000 kinds: [NET] }
  allow { gid: 2000 kinds: [UTS] }
  allow { uid: 1001 }
}
target {
  name: "db"
  self: true
  expose: [NET, MNT, CWD]
  allow { gid: 3000 }
  allow { uid: 1000 kinds: [MNT] }
}
target {
  name: "rootonly"
  self: true
  expose: [UTS]
}
)";

// The same policy, written out by hand: what each target exposes and who may have what.
struct OracleRule {
  bool by_uid;
  std::uint32_t id;
  KindSet kinds;
};
struct OracleTarget {
  std::string_view name;
  KindSet expose;
  std::vector<OracleRule> rules;
};

constexpr KindSet K(NsKind kind) { return KindBit(kind); }

const std::vector<OracleTarget>& Oracle() {
  static const auto* table = new std::vector<OracleTarget>{
      {"web1",
       K(NsKind::kNet) | K(NsKind::kUts) | K(NsKind::kIpc) | K(NsKind::kRoot),
       {{true, 1000, K(NsKind::kNet)},
        {false, 2000, K(NsKind::kUts)},
        {true, 1001, K(NsKind::kNet) | K(NsKind::kUts) | K(NsKind::kIpc) | K(NsKind::kRoot)}}},
      {"db",
       K(NsKind::kNet) | K(NsKind::kMnt) | K(NsKind::kCwd),
       {{false, 3000, K(NsKind::kNet) | K(NsKind::kMnt) | K(NsKind::kCwd)},
        {true, 1000, K(NsKind::kMnt)}}},
      {"rootonly", K(NsKind::kUts), {}},
  };
  return *table;
}

const OracleTarget* OracleFind(std::string_view name) {
  for (const auto& t : Oracle()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

KindSet OracleAllowed(const OracleTarget& t, const PeerIdentity& peer) {
  if (peer.uid == 0) return t.expose;
  KindSet out = 0;
  for (const auto& r : t.rules) {
    bool match = r.by_uid ? peer.uid == r.id : peer.gid == r.id;
    for (gid_t g : peer.groups) match = match || (!r.by_uid && g == r.id);
    if (match) out |= r.kinds;
  }
  return out;
}

[[noreturn]] void Violation(const std::string& what) {
  std::fprintf(stderr, "request_fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

const Catalog& TheCatalog() {
  static const Catalog* catalog = [] {
    auto config = ParseConfig(kConfig, "<request_fuzz>");
    if (!config) Violation("config: " + config.error().message);
    auto opened = Catalog::Open(std::move(*config));
    if (!opened) Violation("catalog: " + opened.error().message);
    return opened->release();
  }();
  return *catalog;
}

PeerIdentity PeerFrom(const std::uint8_t* data) {
  static constexpr uid_t kUids[] = {0, 1000, 1001, 65534, 2000, 3000};
  static constexpr gid_t kGids[] = {0, 1000, 2000, 3000, 65534, 4000};
  static constexpr gid_t kGroups[] = {2000, 3000, 4000, 0};
  PeerIdentity peer{.pid = 4242,
                    .uid = kUids[data[0] % std::size(kUids)],
                    .gid = kGids[data[1] % std::size(kGids)]};
  for (std::size_t i = 0; i < std::size(kGroups); ++i) {
    if (data[2] & (1u << i)) peer.groups.push_back(kGroups[i]);
  }
  return peer;
}

void CheckGrant(const Outcome& out, const PeerIdentity& peer, std::size_t budget) {
  const v1::Grant& grant = out.response.grant();
  const OracleTarget* t = OracleFind(grant.target());
  if (t == nullptr) Violation("grant for unknown target '" + grant.target() + "'");
  KindSet allowed = OracleAllowed(*t, peer);
  if (allowed == 0) {
    Violation("uid " + std::to_string(peer.uid) + " granted '" + grant.target() + "'");
  }
  if (out.fds.size() != static_cast<std::size_t>(grant.entries_size())) {
    Violation(std::to_string(out.fds.size()) + " fds for " + std::to_string(grant.entries_size()) +
              " entries");
  }
  if (out.fds.size() > budget) Violation("grant exceeds the descriptor budget");
  std::vector<bool> used(out.fds.size());
  for (const auto& entry : grant.entries()) {
    auto kind = KindFromWire(entry.kind());
    if (!kind || !KindSetHas(allowed, *kind)) {
      Violation("kind " + std::to_string(entry.kind()) + " not allowed for uid " +
                std::to_string(peer.uid));
    }
    if (!entry.has_fd_index() || entry.fd_index() >= out.fds.size() || used[entry.fd_index()]) {
      Violation("bad or repeated fd_index");
    }
    used[entry.fd_index()] = true;
    struct stat st;
    BorrowedFd fd = out.fds[entry.fd_index()];
    if (fd.get() < 0 || fstat(fd.get(), &st) != 0 || st.st_ino != entry.inode()) {
      Violation("descriptor does not match its entry");
    }
  }
  if (!out.audit || !out.audit->granted) Violation("grant without a granting audit record");
}

void CheckList(const Outcome& out, const PeerIdentity& peer) {
  for (const auto& listed : out.response.targets().targets()) {
    const OracleTarget* t = OracleFind(listed.name());
    if (t == nullptr) Violation("listed unknown target");
    KindSet allowed = OracleAllowed(*t, peer);
    KindSet shown = 0;
    for (int k : listed.kinds()) {
      auto kind = KindFromWire(k);
      if (!kind) Violation("listed an unknown kind");
      shown |= KindBit(*kind);
    }
    if (shown != allowed) Violation("list shows other kinds than the policy allows");
  }
}

}  // namespace
}  // namespace nsbroker

// protobuf logs every string field with invalid UTF-8 to stderr; at fuzzing rates that
// is most of the run time, and says nothing the decoder's result does not.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nsbroker;
  if (size < 4) return 0;
  const Catalog& catalog = TheCatalog();
  static const Stats stats;
  PeerIdentity peer = PeerFrom(data);
  // 255 stands for "plenty"; anything else is the budget left in this peer's uid.
  std::size_t budget = data[3] == 255 ? 4096 : data[3] % 8;
  std::string_view bytes(reinterpret_cast<const char*>(data + 4), size - 4);

  Outcome out = HandleRequest(catalog, stats, peer, bytes, budget);
  const v1::Response& r = out.response;
  if (r.protocol_version() != kProtocolVersion) Violation("response without protocol_version");
  if (r.has_grant()) {
    CheckGrant(out, peer, budget);
  } else if (!out.fds.empty()) {
    Violation("descriptors on a response that is not a grant");
  }
  if (r.has_targets()) CheckList(out, peer);
  if (r.has_status() && peer.uid != 0) Violation("status for a non-root peer");
  if (r.has_error() && r.error().code() == v1::Error::CODE_UNSPECIFIED) {
    Violation("error without a code");
  }
  if (r.body_case() == v1::Response::BODY_NOT_SET) Violation("response without a body");
  if (out.audit && out.audit->granted != r.has_grant()) Violation("audit disagrees");
  // The response must go out the way the server sends it.
  std::string wire;
  if (!r.SerializeToString(&wire) || wire.size() > kMaxMessageSize) {
    Violation("response does not fit a datagram");
  }
  return 0;
}
