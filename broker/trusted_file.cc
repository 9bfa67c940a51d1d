#include "trusted_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>

namespace nsbroker {
namespace {

constexpr int kMaxLinks = 16;

bool TrustedOwner(uid_t uid) { return uid == 0 || uid == geteuid(); }

std::string Owner(const struct stat& st) {
  return st.st_uid == 0 ? "root" : "uid " + std::to_string(st.st_uid);
}

std::unexpected<Error> Untrusted(const std::string& what, const std::string& why) {
  return MakeError(ErrorCode::kPermissionDenied, what + " " + why);
}

// Checks one object on the way; `dir` says whether it is a directory we pass through.
Result<void> Check(const std::string& what, const struct stat& st, bool dir) {
  if (!TrustedOwner(st.st_uid)) return Untrusted(what, "is owned by " + Owner(st) + ", not root");
  bool writable = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  if (writable && !(dir && (st.st_mode & S_ISVTX))) {
    return Untrusted(
        what, "is writable by group or others (mode " + std::to_string((st.st_mode >> 6) & 7) +
                  std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) + ")");
  }
  return {};
}

std::deque<std::string> Split(const std::string& path) {
  std::deque<std::string> out;
  std::size_t at = 0;
  while (at < path.size()) {
    std::size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    if (end > at) out.push_back(path.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

// Walks `path` to its last component; returns the directory holding it and that name.
struct Walked {
  UniqueFd dir;
  std::string name;
  std::string where;  // the path walked, for messages
};

Result<Walked> Walk(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return MakeError(ErrorCode::kInvalidRequest, path + " is not an absolute path");
  }
  std::deque<std::string> rest = Split(path);
  int links = 0;
  Walked w;
  auto restart = [&]() -> Result<void> {
    w.dir.reset(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!w.dir.valid()) return SysError(ErrorCode::kInternal, "open /");
    struct stat st;
    if (fstat(w.dir.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat /");
    w.where = "";
    return Check("/", st, true);
  };
  if (auto r = restart(); !r) return std::unexpected(std::move(r.error()));
  if (rest.empty()) return MakeError(ErrorCode::kInvalidRequest, path + " names no file");
  while (rest.size() > 1) {
    std::string name = rest.front();
    rest.pop_front();
    if (name == ".") continue;
    std::string here = w.where + "/" + name;
    UniqueFd next(openat(w.dir.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return SysError(CodeForErrno(errno), "open " + here);
    struct stat st;
    if (fstat(next.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + here);
    if (S_ISLNK(st.st_mode)) {
      if (!TrustedOwner(st.st_uid)) return Untrusted(here, "is a link owned by " + Owner(st));
      if (++links > kMaxLinks)
        return MakeError(ErrorCode::kInvalidRequest, path + ": too many links");
      char target[4096];
      ssize_t n = readlinkat(next.get(), "", target, sizeof target - 1);
      if (n < 0) return SysError(ErrorCode::kInternal, "readlink " + here);
      std::string to(target, static_cast<std::size_t>(n));
      auto parts = Split(to);
      rest.insert(rest.begin(), parts.begin(), parts.end());
      if (!to.empty() && to[0] == '/') {
        if (auto r = restart(); !r) return std::unexpected(std::move(r.error()));
      }
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidRequest, here + " is not a directory");
    }
    if (auto r = Check(here, st, true); !r) return std::unexpected(std::move(r.error()));
    w.dir = std::move(next);
    w.where = here;
  }
  w.name = rest.front();
  return w;
}

}  // namespace

Result<UniqueFd> OpenTrusted(const std::string& path, int flags) {
  auto walked = Walk(path);
  if (!walked) return std::unexpected(std::move(walked.error()));
  // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer
  // (fifo(7)), and fstat then refuses it. O_NOFOLLOW: the last component is never a link.
  UniqueFd fd(openat(walked->dir.get(), walked->name.c_str(),
                     flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0640));
  if (!fd.valid()) {
    int err = errno;
    return SysError(err == ELOOP ? ErrorCode::kPermissionDenied : CodeForErrno(err),
                    "open " + path + (err == ELOOP ? " (a symbolic link)" : ""));
  }
  if (auto r = CheckTrustedFile(fd, path); !r) return std::unexpected(std::move(r.error()));
  return fd;
}

Result<void> CheckTrustedFile(BorrowedFd fd, const std::string& path) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + path);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kPermissionDenied, path + " is not a regular file");
  }
  return Check(path, st, false);
}

Result<void> CheckTrustedDirectory(const std::string& path) {
  auto walked = Walk(path);
  if (!walked) return std::unexpected(std::move(walked.error()));
  UniqueFd fd(openat(walked->dir.get(), walked->name.c_str(),
                     O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return SysError(CodeForErrno(errno), "open " + path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return SysError(ErrorCode::kInternal, "fstat " + path);
  return Check(path, st, true);
}

}  // namespace nsbroker
