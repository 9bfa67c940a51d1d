// Containers are a Linux source; the config refuses them here (SourceSupported).
#include "resolution.h"

namespace nsbroker {

Result<std::unique_ptr<Resolution>> StartResolve(event_base*, const TargetSpec&, ResolveDone) {
  return MakeError(ErrorCode::kInvalidRequest, "oci targets need Linux");
}

}  // namespace nsbroker
