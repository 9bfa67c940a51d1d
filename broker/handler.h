// Owns the request path as a pure function: bytes from an identified peer in, a response, its
// descriptors and the audit record out. Never touches a socket, so it can be fuzzed alone.
//
//   nsbroker::Outcome out = nsbroker::HandleRequest(catalog, stats, peer, bytes, fd_budget,
//   &cache); if (out.audit) audit.Stage(*out.audit);   // committed before the response is sent
//   SendMessage(conn, out.response, FdNumbers(out.fds));
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "audit.h"
#include "catalog.h"
#include "grant_cache.h"
#include "nsbroker.pb.h"
#include "nsbroker/unique_fd.h"
#include "policy.h"

namespace nsbroker {

// Server counters, reported by Status.
struct Stats {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::uint64_t grants = 0;
  std::uint64_t denials = 0;
  std::uint64_t errors = 0;
  std::uint64_t connections = 0;
  std::uint64_t active_connections = 0;
  // The ledger's figures, as the server last set them.
  std::uint64_t descriptor_budget = 0;
  std::uint64_t descriptors_held = 0;
  std::uint64_t descriptors_in_flight = 0;
  // The grant cache's.
  std::uint64_t cache_descriptors = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;  // fetches: first grants, evicted sets, refreshes
};

// A List or Status page stops before its entries pass this many bytes, leaving room under
// kMaxMessageSize for the rest of the message.
inline constexpr std::size_t kPageBytes = 60 * 1024;

enum class Tally { kNone, kGrant, kDenial, kError };

// One entry of a granted Join, as every wire format describes it.
struct JoinEntry {
  NsKind kind = NsKind::kNet;
  int fd = -1;  // the descriptor to send; -1 for a jail granted by jid only
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  std::uint64_t ns_id = 0;
  std::int32_t jid = 0;
  std::string jail_name;
};

// What the core decided about one Join, before any wire format: the entries (their
// descriptors kept open by `held` or `owned` until the Decision is gone) or the error, and
// the audit line. The native codec (EncodeResponse) and the uWSGI one encode it.
struct Decision {
  std::string target;
  std::optional<Error> error;  // set when refused
  std::vector<JoinEntry> entries;
  GrantSetPtr held;             // a held set the entries' descriptors belong to
  std::vector<UniqueFd> owned;  // fresh descriptors (jail, refresh_ms 0, a set too big to hold)
  std::optional<AuditRecord> audit;
  Tally tally = Tally::kNone;
  bool granted() const { return !error.has_value(); }
};

// A native response: the protobuf, its SCM_RIGHTS array in fd_index order (open as long as
// `held` and `owned` are), the audit record, the counter.
struct Outcome {
  using Tally = nsbroker::Tally;
  v1::Response response;
  std::vector<BorrowedFd> fds;
  GrantSetPtr held;
  std::vector<UniqueFd> owned;
  std::optional<AuditRecord> audit;  // one per Join decision
  Tally tally = Tally::kNone;
};

// How a Join names its kinds: the kinds themselves (native), or "everything the policy lets
// this peer have of `usable`" (uWSGI, whose clients cannot ask): then a peer allowed none of
// them is asked as for the target's exposed usable kinds, so that it is refused and audited
// exactly as a native request would be.
struct JoinAsk {
  std::string_view target;
  KindSet kinds = 0;
  KindSet usable = 0;  // nonzero: `kinds` is chosen as above
};

// The one Join of every listener: catalog lookup, policy, availability, `fd_budget` (how
// many more descriptors this peer's uid may have in unread responses, RESOURCE_EXHAUSTED
// beyond it), the descriptors (held sets as they are; the cache's, fetched at most every
// refresh_ms, when `cache` is given, else fresh ones), the audit record and the counter.
Decision Join(const Catalog& catalog, GrantCache* cache, const PeerIdentity& peer,
              const JoinAsk& ask, std::size_t fd_budget,
              std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

// The kinds JoinAsk::usable stands for (see there).
KindSet UsableKinds(const TargetSpec* spec, const PeerIdentity& peer, KindSet usable);

// The native codec of a Decision.
Outcome EncodeResponse(Decision decision);

// Decodes `bytes`, applies policy and builds the response.
Outcome HandleRequest(const Catalog& catalog, const Stats& stats, const PeerIdentity& peer,
                      std::string_view bytes, std::size_t fd_budget, GrantCache* cache = nullptr);

// Whether a peer may be handed a jail descriptor (FreeBSD 15+): root only. The kernel checks a
// jail descriptor's privilege against its *creator* (the broker), so whoever holds one may not
// only attach but also remove or reconfigure the jail (jail_remove_jd, jail_set with
// JAIL_USE_DESC), and Capsicum rights cannot narrow that. Others get the jid and name, and
// attach as root through jailme, which checks the name first.
bool MayHoldJailDescriptor(const PeerIdentity& peer);

// Adds a decision to the counters.
void Count(Stats& stats, Tally tally);

// The descriptor numbers of `fds`, for SendMessage.
std::vector<int> FdNumbers(const std::vector<BorrowedFd>& fds);

}  // namespace nsbroker
