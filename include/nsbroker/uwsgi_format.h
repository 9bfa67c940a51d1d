// Owns the constants of uWSGI 2.0's setns-socket format, shared by the broker's listener,
// libnsjoin's client and the benchmarks. Never does I/O.
//
//   std::string greeting(nsbroker::kUwsgiMagic);  // then the count as a host-endian int
#pragma once

#include <cstddef>
#include <string_view>

namespace nsbroker {

// Right after accept the server sends, in one sendmsg, these 11 bytes (no NUL), the
// descriptor count as a host-endian int, and the descriptors as one SCM_RIGHTS message,
// then closes. uWSGI's client accepts at most 64 descriptors.
inline constexpr std::string_view kUwsgiMagic = "uwsgi-setns";
inline constexpr std::size_t kUwsgiGreetingSize = kUwsgiMagic.size() + sizeof(int);
inline constexpr std::size_t kUwsgiMaxFds = 64;

}  // namespace nsbroker
