// The native client's reading of a broker's answer (Client::Join and Client::List, so nsjoin
// and jailme): a received datagram in, a checked Grant or target list out. Never does I/O.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "nsbroker/client.h"
#include "nsbroker/error.h"
#include "wire.h"

namespace nsbroker {

// The answer to a Join for `kinds` of `target`: a broker Error comes back with its code and
// message; anything but a grant of that target, holding only kinds asked for, each once,
// each descriptor what its entry says (platform::CheckEntry), is an error. Every descriptor
// of `datagram` is closed unless it is in the returned Grant.
[[nodiscard]] Result<Grant> DecodeGrant(Datagram datagram, std::string_view target,
                                        std::span<const NsKind> kinds);

// One page of the answer to a List: the broker's Error, or its targets with every kind known,
// and where the next page starts (0: this was the last).
struct TargetPage {
  std::vector<TargetInfo> targets;
  std::uint32_t next_start = 0;
};
[[nodiscard]] Result<TargetPage> DecodeTargetList(const Datagram& datagram);

}  // namespace nsbroker
