// Owns KindSet, the set of NsKind both the broker and the joiners test and build (a bit
// mask, bit = wire number). Never allocates except to list or print a set.
//
//   KindSet asked = nsbroker::KindSetOf(options.kinds);    // from a span or vector of kinds
//   if (nsbroker::KindSetHas(asked, NsKind::kNet)) { ... }
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nsbroker/ns_kind.h"

namespace nsbroker {

using KindSet = std::uint32_t;
constexpr KindSet KindBit(NsKind kind) { return KindSet{1} << static_cast<int>(kind); }
constexpr bool KindSetHas(KindSet set, NsKind kind) { return (set & KindBit(kind)) != 0; }
constexpr int KindSetSize(KindSet set) { return std::popcount(set); }

// The set of the kinds named (a kind named twice counts once).
constexpr KindSet KindSetOf(std::span<const NsKind> kinds) {
  KindSet set = 0;
  for (NsKind kind : kinds) set |= KindBit(kind);
  return set;
}

// The kinds of `set` in wire order.
inline std::vector<NsKind> KindSetList(KindSet set) {
  std::vector<NsKind> out;
  for (NsKind kind : kAllKinds) {
    if (KindSetHas(set, kind)) out.push_back(kind);
  }
  return out;
}

// "net,uts" in wire order; "" for the empty set.
inline std::string KindSetString(KindSet set) {
  std::string out;
  for (NsKind kind : kAllKinds) {
    if (!KindSetHas(set, kind)) continue;
    if (!out.empty()) out += ',';
    out += KindName(kind);
  }
  return out;
}

}  // namespace nsbroker
