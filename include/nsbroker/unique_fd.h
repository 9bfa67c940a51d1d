// Owns one file descriptor: UniqueFd closes it exactly once; BorrowedFd only uses it.
// Never converts implicitly to int and never retries close(2).
//
//   nsbroker::UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
//   if (!fd.valid()) return nsbroker::SysError(ErrorCode::kNotFound, "open " + path);
//   Use(fd);  // BorrowedFd parameter
#pragma once

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace nsbroker {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }

  // Hands ownership to C code; the caller now closes it.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  // close(2) once, keeping errno: on Linux the descriptor is gone even when close
  // reports EINTR, so a retry could close a descriptor another thread just opened.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) {
      int saved = errno;
      ::close(fd_);
      errno = saved;
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// "Use, don't own": the descriptor version of std::string_view.
class BorrowedFd {
 public:
  BorrowedFd(int fd) noexcept : fd_(fd) {}                    // NOLINT: implicit by design
  BorrowedFd(const UniqueFd& fd) noexcept : fd_(fd.get()) {}  // NOLINT: implicit by design
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

}  // namespace nsbroker
