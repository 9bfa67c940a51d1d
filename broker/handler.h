// Owns the request path as a pure function: bytes from an identified peer in, a response, its
// descriptors and the audit record out. Never touches a socket, so it can be fuzzed alone.
//
//   nsbroker::Outcome out = nsbroker::HandleRequest(catalog, stats, peer, bytes, fd_budget);
//   SendMessage(conn, out.response, FdNumbers(out.fds));
//   if (out.audit) audit.Write(*out.audit);
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "audit.h"
#include "catalog.h"
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
};

// A List or Status page stops before its entries pass this many bytes, leaving room under
// kMaxMessageSize for the rest of the message.
inline constexpr std::size_t kPageBytes = 60 * 1024;

struct Outcome {
  enum class Tally { kNone, kGrant, kDenial, kError };
  v1::Response response;
  std::vector<UniqueFd> fds;         // the SCM_RIGHTS array, in fd_index order
  std::optional<AuditRecord> audit;  // one per Join decision
  Tally tally = Tally::kNone;        // which Stats counter this request adds to
};

// Decodes `bytes`, applies policy and builds the response. `fd_budget` is how many more
// descriptors this peer's uid may have in unread responses (RESOURCE_EXHAUSTED beyond it).
Outcome HandleRequest(const Catalog& catalog, const Stats& stats, const PeerIdentity& peer,
                      std::string_view bytes, std::size_t fd_budget);

// The same path for a request already decoded (other listeners, e.g. uWSGI compatibility,
// build a Join themselves and reuse policy, audit and descriptor opening).
Outcome HandleJoin(const Catalog& catalog, const PeerIdentity& peer, std::string_view target,
                   KindSet requested, std::size_t fd_budget);

// Whether a peer may be handed a jail descriptor (FreeBSD 15+): root only. The kernel checks a
// jail descriptor's privilege against its *creator* (the broker), so whoever holds one may not
// only attach but also remove or reconfigure the jail (jail_remove_jd, jail_set with
// JAIL_USE_DESC), and Capsicum rights cannot narrow that. Others get the jid and name, and
// attach as root through jailme, which checks the name first.
bool MayHoldJailDescriptor(const PeerIdentity& peer);

// Adds an outcome to the counters.
void Count(Stats& stats, const Outcome& outcome);

// The descriptor numbers of `fds`, for SendMessage.
std::vector<int> FdNumbers(const std::vector<UniqueFd>& fds);

}  // namespace nsbroker
