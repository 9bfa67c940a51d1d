#include "nsbroker/unique_fd.h"

#include <fcntl.h>

#include <utility>

#include "test_util.h"

namespace nsbroker {
namespace {

using testing::CountOpenFds;

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnDestruction) {
  int raw;
  {
    UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    raw = fd.get();
    ASSERT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFd, MoveTransfersOwnership) {
  std::size_t before = CountOpenFds();
  UniqueFd a(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_TRUE(b.valid());
  UniqueFd c(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int old_c = c.get();
  c = std::move(b);
  EXPECT_FALSE(IsOpen(old_c)) << "move assignment closes what it replaces";
  EXPECT_EQ(CountOpenFds(), before + 1);
  c.reset();
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int raw = fd.release();
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(IsOpen(raw));
  close(raw);
}

TEST(UniqueFd, ResetKeepsErrno) {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  errno = ENOENT;
  fd.reset();
  EXPECT_EQ(errno, ENOENT);
}

TEST(BorrowedFd, BorrowsWithoutOwning) {
  UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  BorrowedFd borrowed = fd;
  EXPECT_EQ(borrowed.get(), fd.get());
  BorrowedFd from_int = 0;
  EXPECT_EQ(from_int.get(), 0);
}

}  // namespace
}  // namespace nsbroker
