// Owns the one way bytes cross from one nsbroker process to another without a parser's
// stream: a memfd written once and sealed against writes, growth and shrinking, so that what
// the reader reads is what the writer wrote. Never reads a memfd that is not sealed so.
//
//   auto fd = nsbroker::SealedMemfd("nsbroker.conf", text);       // hand it over, then:
//   auto bytes = nsbroker::ReadSealed(fd, kMaxConfigBytes, "the opener's config");
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// A new memfd (close-on-exec) holding `bytes`, sealed.
[[nodiscard]] Result<UniqueFd> SealedMemfd(const char* name, std::string_view bytes);
// An empty memfd that allows sealing, for another process to fill with WriteSealed.
[[nodiscard]] Result<UniqueFd> EmptyMemfd(const char* name);
// Writes `bytes` to the empty memfd `fd` and seals it.
[[nodiscard]] Result<void> WriteSealed(BorrowedFd fd, std::string_view bytes);
// The whole content of a sealed memfd of at most `max` bytes; kInvalidRequest naming `what`
// when it is not sealed or too large.
[[nodiscard]] Result<std::string> ReadSealed(BorrowedFd fd, std::size_t max,
                                             const std::string& what);

}  // namespace nsbroker
