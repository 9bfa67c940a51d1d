// Helpers shared by the tests: Result assertions and descriptor accounting.
// Never used by production code.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>

#include <cstddef>

#include "nsbroker/error.h"

// Prints the error's message when a Result holds an error [libbase ASSERT_RESULT_OK].
#define ASSERT_OK(result) ASSERT_TRUE((result).has_value()) << "error: " << (result).error().message
#define EXPECT_OK(result) EXPECT_TRUE((result).has_value()) << "error: " << (result).error().message

namespace nsbroker::testing {

// Open descriptors of this process, counted in /proc/self/fd (less the directory's own); on
// FreeBSD in /dev/fd, which lists every descriptor once fdescfs(4) is mounted there.
inline std::size_t CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) dir = opendir("/dev/fd");
  if (dir == nullptr) return 0;
  std::size_t n = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;
}

}  // namespace nsbroker::testing
