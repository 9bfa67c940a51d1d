// Owns who may enter what: the allow rules of a target applied to the kernel-reported peer
// identity (peer.h). Never opens a descriptor and never trusts what a client says about itself.
//
//   auto peer = nsbroker::ReadPeerIdentity(conn);   // SO_PEERCRED + SO_PEERGROUPS
//   auto d = nsbroker::DecideJoin(spec, *peer, KindBit(NsKind::kNet));
//   if (!d.granted) return d.error;  // "target 'web1': uid 65534 may not join net"
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "config.h"
#include "nsbroker/error.h"
#include "peer.h"

namespace nsbroker {

// The kinds of `spec` this peer may have (uid 0: everything exposed), and the rule that said
// so ("root", "uid 1000", "group webdev, uid 1000" when several rules add up).
struct Allowance {
  KindSet kinds = 0;
  std::string reason;
};
Allowance AllowedKinds(const TargetSpec& spec, const PeerIdentity& peer);

// Decides a Join for `requested` kinds. Naming no namespace kind means every namespace the peer
// may have; ROOT and CWD are granted only when named.
struct JoinDecision {
  bool granted = false;
  KindSet kinds = 0;   // granted kinds, or the refused ones
  std::string reason;  // for the audit line
  Error error;         // when refused: kPermissionDenied or kNotFound, naming target and kinds
};
JoinDecision DecideJoin(const TargetSpec& spec, const PeerIdentity& peer, KindSet requested);

}  // namespace nsbroker
