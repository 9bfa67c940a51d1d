#include "policy.h"

#include <algorithm>

namespace nsbroker {
namespace {

bool Matches(const Rule& rule, const PeerIdentity& peer) {
  if (rule.who == Rule::Who::kUid) return peer.uid == rule.id;
  return peer.gid == rule.id ||
         std::find(peer.groups.begin(), peer.groups.end(), rule.id) != peer.groups.end();
}

std::string Who(const PeerIdentity& peer) { return "uid " + std::to_string(peer.uid); }

constexpr KindSet kDirectoryKinds =
    KindBit(NsKind::kRoot) | KindBit(NsKind::kCwd) | KindBit(NsKind::kCgroupDir);

}  // namespace

Allowance AllowedKinds(const TargetSpec& spec, const PeerIdentity& peer) {
  if (peer.uid == 0) return {spec.expose, "root"};
  Allowance out;
  for (const Rule& rule : spec.rules) {
    if (!Matches(rule, peer) || (rule.kinds & ~out.kinds) == 0) continue;
    out.kinds |= rule.kinds;
    if (!out.reason.empty()) out.reason += ", ";
    out.reason += "allow " + rule.label;
  }
  return out;
}

JoinDecision DecideJoin(const TargetSpec& spec, const PeerIdentity& peer, KindSet requested) {
  Allowance allowed = AllowedKinds(spec, peer);
  const std::string quoted = "target '" + spec.name + "': ";
  KindSet wanted = requested;
  if ((requested & ~kDirectoryKinds) == 0) {
    // No namespace named: every namespace the peer may have (every exposed one, to word a
    // refusal), plus ROOT/CWD only if named. They are /proc path walks, the costliest part of
    // a grant, and a joiner without -r/-w never uses them (docs/BENCHMARKS.md). A target that
    // exposes nothing but directories still answers an empty Join with them.
    KindSet pool = allowed.kinds != 0 ? allowed.kinds : spec.expose;
    wanted = (pool & ~kDirectoryKinds) | requested;
    if (wanted == 0) wanted = pool;
  }
  KindSet refused = wanted & ~allowed.kinds;
  if (refused == 0) return {.granted = true, .kinds = wanted, .reason = allowed.reason};
  KindSet unexposed = refused & ~spec.expose;
  if (allowed.kinds != 0 && unexposed == refused) {
    // The peer may use the target; it asked for something the target does not have.
    std::string message = quoted + "does not expose " + KindSetString(unexposed);
    return {.kinds = unexposed, .reason = message, .error = {ErrorCode::kNotFound, 0, message}};
  }
  // Name the exposed kinds refused; what the target lacks is no business of a stranger.
  if ((refused & spec.expose) != 0) refused &= spec.expose;
  std::string message = quoted + Who(peer) + " may not join " + KindSetString(refused);
  return {
      .kinds = refused,
      .reason = allowed.kinds == 0 ? "no allow rule matches" : "not granted by " + allowed.reason,
      .error = {ErrorCode::kPermissionDenied, 0, message}};
}

}  // namespace nsbroker
