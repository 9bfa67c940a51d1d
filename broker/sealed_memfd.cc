#include "sealed_memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace nsbroker {
namespace {

constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

}  // namespace

Result<UniqueFd> EmptyMemfd(const char* name) {
  UniqueFd fd(memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return SysError("memfd_create");
  return fd;
}

Result<void> WriteSealed(BorrowedFd fd, std::string_view bytes) {
  for (std::size_t at = 0; at < bytes.size();) {
    ssize_t n = pwrite(fd.get(), bytes.data() + at, bytes.size() - at, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return SysError("write memfd");
    at += static_cast<std::size_t>(n);
  }
  if (fcntl(fd.get(), F_ADD_SEALS, kSeals | F_SEAL_SEAL) != 0) return SysError("seal memfd");
  return {};
}

Result<UniqueFd> SealedMemfd(const char* name, std::string_view bytes) {
  auto fd = EmptyMemfd(name);
  if (!fd) return fd;
  if (auto written = WriteSealed(*fd, bytes); !written) {
    return std::unexpected(std::move(written.error()));
  }
  return fd;
}

Result<std::string> ReadSealed(BorrowedFd fd, std::size_t max, const std::string& what) {
  int seals = fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0 || (seals & kSeals) != kSeals) {
    return MakeError(ErrorCode::kInvalidRequest, what + " is not a sealed memfd");
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + what);
  auto size = static_cast<std::size_t>(st.st_size);
  if (st.st_size < 0 || size > max) {
    return MakeError(ErrorCode::kInvalidRequest, what + " is too large");
  }
  std::string bytes(size, '\0');
  for (std::size_t at = 0; at < size;) {
    ssize_t n = pread(fd.get(), bytes.data() + at, size - at, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return SysError(ErrorCode::kInternal, "read " + what);
    at += static_cast<std::size_t>(n);
  }
  return bytes;
}

}  // namespace nsbroker
