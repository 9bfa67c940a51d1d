// Owns the removal of a socket file this process (or the nsbrokerd that exec'd it) bound:
// unlinked at the end, unless another process has replaced it since. Never removes a file it
// did not record.
//
//   ScopedSocketFile file(config.socket);   // after bind(2): records the file now there
#pragma once

#include <sys/types.h>

#include <string>

#include "target_table.h"

namespace nsbroker {

class ScopedSocketFile {
 public:
  ScopedSocketFile() = default;
  explicit ScopedSocketFile(const std::string& path);  // records the file now at `path`
  // The file nsbrokerd recorded, handed over across the opener's exec (target_table.h).
  explicit ScopedSocketFile(SocketFileId id) : id_(std::move(id)) {}
  ScopedSocketFile(ScopedSocketFile&& other) noexcept;
  ScopedSocketFile& operator=(ScopedSocketFile&& other) noexcept;
  ~ScopedSocketFile();
  const std::string& path() const { return id_.path; }
  const SocketFileId& id() const { return id_; }
  // Never removes the file: it is another process's to remove (the opener's, after a fork).
  void Forget() { id_ = {}; }

 private:
  void Unlink();
  SocketFileId id_;
};

}  // namespace nsbroker
