// Owns resolving targets in the background from the event loop: oci targets, whose runtime is
// asked (oci_state.h) with its pipes, pidfd and timeout watched by libevent. Never blocks the
// loop, and never opens a target any other way than targets.h does.
//
//   auto r = nsbroker::StartResolve(base, spec, [](Result<TargetHandlePtr> h) { ... });
#pragma once

#include <event2/event.h>

#include <functional>
#include <memory>

#include "config.h"
#include "nsbroker/error.h"
#include "targets.h"

namespace nsbroker {

// Targets resolved by running something (oci: the runtime's `state`), never in the loop's own
// time: StartResolve watches the work from the loop and calls `done` from it, once.
constexpr bool ResolvesInBackground(SourceType source) { return source == SourceType::kOci; }
class Resolution {
 public:
  virtual ~Resolution() = default;  // abandons the work (a runtime still running is killed)
};
using ResolveDone = std::function<void(Result<TargetHandlePtr>)>;
// `done` must not destroy the Resolution (it runs inside one of its events). The blocking
// counterpart is ResolveNow (targets.h).
[[nodiscard]] Result<std::unique_ptr<Resolution>> StartResolve(event_base* base,
                                                               const TargetSpec& spec,
                                                               ResolveDone done);

}  // namespace nsbroker
