#include "socket_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "log.h"

namespace nsbroker {

ScopedSocketFile::ScopedSocketFile(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  id_ = {.path = path, .dev = st.st_dev, .ino = st.st_ino};
}

ScopedSocketFile::ScopedSocketFile(ScopedSocketFile&& other) noexcept
    : id_(std::exchange(other.id_, {})) {}

ScopedSocketFile& ScopedSocketFile::operator=(ScopedSocketFile&& other) noexcept {
  if (this != &other) {
    Unlink();
    id_ = std::exchange(other.id_, {});
  }
  return *this;
}

ScopedSocketFile::~ScopedSocketFile() { Unlink(); }

void ScopedSocketFile::Unlink() {
  struct stat st;
  if (id_.path.empty() || lstat(id_.path.c_str(), &st) != 0) return;
  if (st.st_dev != id_.dev || st.st_ino != id_.ino) return;
  if (unlink(id_.path.c_str()) != 0) LogLine("unlink " + id_.path + ": " + std::strerror(errno));
  id_ = {};
}

}  // namespace nsbroker
