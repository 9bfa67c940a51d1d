#include "handler.h"

#include "wire.h"

namespace nsbroker {
namespace {

Outcome Fail(const Error& error, Tally tally) {
  Outcome out;
  out.response = ErrorResponse(error);
  out.tally = tally;
  return out;
}

AuditRecord Record(bool granted, std::string_view target, KindSet kinds, const PeerIdentity& peer,
                   std::string reason) {
  return {.granted = granted,
          .target = std::string(target),
          .kinds = kinds,
          .peer_pid = peer.pid,
          .peer_uid = peer.uid,
          .peer_gid = peer.gid,
          .reason = std::move(reason),
          .peer_groups = peer.groups};
}

Decision Deny(const Error& error, std::string_view target, KindSet kinds, const PeerIdentity& peer,
              std::string reason, Tally tally) {
  Decision out;
  out.target = std::string(target);
  out.error = error;
  out.tally = tally;
  out.audit = Record(false, target, kinds, peer, std::move(reason));
  return out;
}

// Each entry costs its own bytes plus its tag and length (at most 4 bytes).
template <typename Message>
std::size_t EntryBytes(const Message& m) {
  return m.ByteSizeLong() + 4;
}

Outcome List(const Catalog& catalog, const PeerIdentity& peer, std::uint32_t start) {
  Outcome out;
  out.response.set_protocol_version(kProtocolVersion);
  auto* list = out.response.mutable_targets();
  const auto& entries = catalog.entries();
  std::size_t bytes = 0;
  for (std::size_t i = start; i < entries.size(); ++i) {
    const CatalogEntry& entry = entries[i];
    KindSet kinds = AllowedKinds(*entry.spec, peer).kinds;
    if (kinds == 0) continue;
    v1::TargetList::Target t;
    t.set_name(entry.spec->name);
    for (NsKind kind : KindSetList(kinds)) t.add_kinds(static_cast<v1::Kind>(KindToWire(kind)));
    // Why a target is down may name paths and owners: root's business only.
    if (peer.uid == 0 && !entry.gone.empty()) {
      t.set_unavailable(true);
      t.set_reason(entry.gone);
    }
    bytes += EntryBytes(t);
    if (bytes > kPageBytes && list->targets_size() > 0) {
      list->set_next_start(static_cast<std::uint32_t>(i));
      break;
    }
    *list->add_targets() = std::move(t);
  }
  return out;
}

Outcome Status(const Catalog& catalog, const Stats& stats, const PeerIdentity& peer,
               std::uint32_t start) {
  if (peer.uid != 0) {
    return Fail({ErrorCode::kPermissionDenied, 0,
                 "status is for root only, not uid " + std::to_string(peer.uid)},
                Tally::kDenial);
  }
  Outcome out;
  out.response.set_protocol_version(kProtocolVersion);
  auto* s = out.response.mutable_status();
  auto uptime = std::chrono::steady_clock::now() - stats.started;
  s->set_uptime_ms(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count()));
  s->set_grants(stats.grants);
  s->set_denials(stats.denials);
  s->set_errors(stats.errors);
  s->set_connections(stats.connections);
  s->set_active_connections(stats.active_connections);
  s->set_descriptor_budget(stats.descriptor_budget);
  s->set_descriptors_held(stats.descriptors_held);
  s->set_descriptors_in_flight(stats.descriptors_in_flight);
  s->set_cache_descriptors(stats.cache_descriptors);
  s->set_cache_hits(stats.cache_hits);
  s->set_cache_misses(stats.cache_misses);
  const auto& entries = catalog.entries();
  std::size_t bytes = 0;
  for (std::size_t i = start; i < entries.size(); ++i) {
    const CatalogEntry& entry = entries[i];
    v1::Status::TargetState t;
    t.set_name(entry.spec->name);
    t.set_available(entry.gone.empty());
    t.set_reason(entry.gone);
    if (entry.handle) t.set_pid(entry.handle->pid());
    t.set_since_unix_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(entry.since.time_since_epoch())
            .count());
    t.set_restarts(entry.restarts);
    bytes += EntryBytes(t);
    if (bytes > kPageBytes && s->targets_size() > 0) {
      s->set_next_start(static_cast<std::uint32_t>(i));
      break;
    }
    *s->add_targets() = std::move(t);
  }
  return out;
}

// The platform could not open what policy granted: UNAVAILABLE (gone) and RESOURCE_EXHAUSTED
// keep their codes, anything else is our INTERNAL problem. Audited as an error.
Decision OpenFailed(const Error& error, const PeerIdentity& peer, std::string_view target,
                    KindSet kinds) {
  const std::string quoted = "target '" + std::string(target) + "'";
  Error e = error;
  e.message = e.code == ErrorCode::kUnavailable ? quoted + " is unavailable: " + e.message
                                                : quoted + ": " + e.message;
  if (e.code != ErrorCode::kUnavailable && e.code != ErrorCode::kResourceExhausted) {
    e.code = ErrorCode::kInternal;
  }
  std::string reason = e.message;
  return Deny(e, target, kinds, peer, std::move(reason), Tally::kError);
}

// A jail grant: one JAIL entry with the jid and name, and a jail descriptor for root only.
Decision GrantJail(const CatalogEntry& entry, const PeerIdentity& peer, std::string_view target,
                   const JoinDecision& decision) {
  auto jail = entry.handle->OpenJail(MayHoldJailDescriptor(peer));
  if (!jail) return OpenFailed(jail.error(), peer, target, decision.kinds);
  Decision out;
  out.target = std::string(target);
  JoinEntry g{.kind = NsKind::kJail, .jid = jail->jid, .jail_name = jail->name};
  bool by_descriptor = jail->descriptor.valid();
  if (by_descriptor) {
    g.fd = jail->descriptor.get();
    out.owned.push_back(std::move(jail->descriptor));
  }
  out.entries.push_back(std::move(g));
  out.audit = Record(true, target, decision.kinds, peer,
                     decision.reason + "; jid " + std::to_string(jail->jid) +
                         (by_descriptor ? " with a jail descriptor" : " without a descriptor"));
  out.tally = Tally::kGrant;
  return out;
}

JoinEntry Describe(const EntryFd& e, const PeerIdentity& peer) {
  JoinEntry g{.kind = e.kind,
              .fd = e.fd.get(),
              .inode = e.inode,
              .device = e.device,
              .ns_id = e.ns_id,
              .jid = e.jid,
              .jail_name = e.jail_name};
  // A jail descriptor also lets its holder remove or reconfigure the jail: root only;
  // everyone else attaches by jid (DESIGN.md, FreeBSD).
  if (e.kind == NsKind::kJail && peer.uid != 0) g.fd = -1;
  return g;
}

constexpr KindSet kNotNamespaces =
    KindBit(NsKind::kRoot) | KindBit(NsKind::kCwd) | KindBit(NsKind::kJail);

std::chrono::milliseconds RefreshOf(const Catalog& catalog, const TargetSpec& spec) {
  return std::chrono::milliseconds(spec.refresh_ms.value_or(catalog.config().refresh_ms));
}

}  // namespace

bool MayHoldJailDescriptor(const PeerIdentity& peer) { return peer.uid == 0; }

KindSet UsableKinds(const TargetSpec* spec, const PeerIdentity& peer, KindSet usable) {
  if (spec == nullptr) return usable;  // Join reports the unknown target
  KindSet allowed = AllowedKinds(*spec, peer).kinds & usable;
  if (allowed != 0) return allowed;
  KindSet exposed = spec->expose & usable;
  return exposed != 0 ? exposed : usable;
}

Decision Join(const Catalog& catalog, GrantCache* cache, const PeerIdentity& peer,
              const JoinAsk& ask, std::size_t fd_budget,
              std::chrono::steady_clock::time_point now) {
  std::string_view target = ask.target;
  const CatalogEntry* entry = catalog.Find(target);
  KindSet requested = ask.usable != 0
                          ? UsableKinds(entry != nullptr ? entry->spec : nullptr, peer, ask.usable)
                          : ask.kinds;
  if (entry == nullptr && target.size() > 64) {
    // Names are at most 64 characters; don't copy a peer's 64 KiB into the audit log.
    std::string message = "unknown target (name of " + std::to_string(target.size()) + " bytes)";
    return Deny({ErrorCode::kNotFound, 0, message}, "?", requested, peer, message, Tally::kError);
  }
  if (entry == nullptr) {
    std::string message = "unknown target '" + std::string(target) + "'";
    return Deny({ErrorCode::kNotFound, 0, message}, target, requested, peer, message,
                Tally::kError);
  }
  if (AllowedKinds(*entry->spec, peer).kinds == 0) {
    // A target this peer may have nothing of does not exist for it, as List says: the
    // answer is the unknown target's, word for word; the audit line tells the truth.
    std::string message = "unknown target '" + std::string(target) + "'";
    return Deny({ErrorCode::kNotFound, 0, message}, target, requested, peer,
                "no allow rule matches", Tally::kDenial);
  }
  JoinDecision decision = DecideJoin(*entry->spec, peer, requested);
  if (!decision.granted) {
    return Deny(
        decision.error, target, decision.kinds, peer, decision.reason,
        decision.error.code == ErrorCode::kPermissionDenied ? Tally::kDenial : Tally::kError);
  }
  const std::string quoted = "target '" + std::string(target) + "'";
  if (!entry->gone.empty()) {
    // Set by the target's pidfd event the moment it exits: no poll per grant.
    std::string message = quoted + " is unavailable: " + entry->gone;
    return Deny({ErrorCode::kUnavailable, 0, message}, target, decision.kinds, peer, message,
                Tally::kError);
  }
  auto count = static_cast<std::size_t>(KindSetSize(decision.kinds));
  if (count > fd_budget) {
    std::string message = quoted + ": uid " + std::to_string(peer.uid) +
                          " has too many descriptors in unread responses";
    return Deny({ErrorCode::kResourceExhausted, 0, message}, target, decision.kinds, peer, message,
                Tally::kError);
  }
  if (KindSetHas(decision.kinds, NsKind::kJail)) {
    return GrantJail(*entry, peer, target, decision);
  }
  Decision out;
  out.target = std::string(target);
  if (GrantSetPtr held = entry->handle->held()) {
    out.held = std::move(held);
  } else if (cache != nullptr) {
    // Every namespace the target exposes, whatever this grant asked: one set per target
    // whose size does not depend on the order of requests. ROOT and CWD once asked for.
    KindSet fetch = decision.kinds | (entry->spec->expose & ~kNotNamespaces);
    auto set =
        cache->Get(*entry->handle, *entry->spec, fetch, RefreshOf(catalog, *entry->spec), now);
    if (!set) return OpenFailed(set.error(), peer, target, decision.kinds);
    out.held = std::move(*set);
  } else {
    auto fresh = entry->handle->Open(decision.kinds);
    if (!fresh) return OpenFailed(fresh.error(), peer, target, decision.kinds);
    for (EntryFd& e : *fresh) {
      out.entries.push_back(Describe(e, peer));
      out.owned.push_back(std::move(e.fd));
    }
  }
  if (out.held) {
    for (const EntryFd& e : out.held->entries) {
      if (KindSetHas(decision.kinds, e.kind)) out.entries.push_back(Describe(e, peer));
    }
  }
  // A target found by name says what it was resolved to: "; pid 1234 of container web1".
  std::string resolved = entry->handle->Resolved();
  out.audit = Record(true, target, decision.kinds, peer,
                     resolved.empty() ? decision.reason : decision.reason + "; " + resolved);
  out.audit->target_pid = entry->handle->pid();
  for (const JoinEntry& e : out.entries) {
    out.audit->namespaces.push_back({e.kind, e.ns_id, e.inode});
  }
  out.tally = Tally::kGrant;
  return out;
}

Outcome EncodeResponse(Decision decision) {
  Outcome out;
  out.audit = std::move(decision.audit);
  out.tally = decision.tally;
  if (decision.error) {
    out.response = ErrorResponse(*decision.error);
    return out;
  }
  out.response.set_protocol_version(kProtocolVersion);
  auto* grant = out.response.mutable_grant();
  grant->set_target(std::move(decision.target));
  for (const JoinEntry& e : decision.entries) {
    auto* g = grant->add_entries();
    g->set_kind(static_cast<v1::Kind>(KindToWire(e.kind)));
    g->set_inode(e.inode);
    g->set_device(e.device);
    g->set_ns_id(e.ns_id);
    if (e.kind == NsKind::kJail) {
      g->set_jid(e.jid);
      g->set_jail_name(e.jail_name);
    }
    if (e.fd < 0) continue;
    g->set_fd_index(static_cast<std::uint32_t>(out.fds.size()));
    out.fds.emplace_back(e.fd);
  }
  out.held = std::move(decision.held);
  out.owned = std::move(decision.owned);
  return out;
}

Outcome HandleRequest(const Catalog& catalog, const Stats& stats, const PeerIdentity& peer,
                      std::string_view bytes, std::size_t fd_budget, GrantCache* cache) {
  auto request = DecodeRequest(bytes);
  if (!request) {
    // It may have been a Join (one with a name that is not UTF-8 fails to parse): every
    // request that cannot be read gets its line too, naming nothing the peer sent.
    return EncodeResponse(Deny(request.error(), "?", 0, peer,
                               "unreadable request: " + request.error().message, Tally::kError));
  }
  switch (request->body_case()) {
    case v1::Request::kJoin: {
      const auto& join = request->join();
      KindSet requested = 0;
      for (int wire : join.kinds()) {
        auto kind = KindFromWire(wire);
        if (!kind) {
          // Malformed, and still a Join decision: it gets its audit line. A name no target
          // can have (over 64 bytes) is not copied into the log.
          std::string name = join.target().size() > 64 ? "?" : join.target();
          std::string message = "target '" + name + "': unknown kind " + std::to_string(wire);
          return EncodeResponse(Deny({ErrorCode::kInvalidRequest, 0, message}, name, requested,
                                     peer, message, Tally::kError));
        }
        requested |= KindBit(*kind);
      }
      return EncodeResponse(
          Join(catalog, cache, peer, {.target = join.target(), .kinds = requested}, fd_budget));
    }
    case v1::Request::kList:
      return List(catalog, peer, request->list().start());
    case v1::Request::kStatus:
      return Status(catalog, stats, peer, request->status().start());
    case v1::Request::BODY_NOT_SET:
      break;
  }
  return Fail({ErrorCode::kInvalidRequest, 0, "request has no body"}, Tally::kError);
}

void Count(Stats& stats, Tally tally) {
  switch (tally) {
    case Tally::kGrant:
      ++stats.grants;
      break;
    case Tally::kDenial:
      ++stats.denials;
      break;
    case Tally::kError:
      ++stats.errors;
      break;
    case Tally::kNone:
      break;
  }
}

std::vector<int> FdNumbers(const std::vector<BorrowedFd>& fds) {
  std::vector<int> out;
  out.reserve(fds.size());
  for (BorrowedFd fd : fds) out.push_back(fd.get());
  return out;
}

}  // namespace nsbroker
