// peer.h's accounting of descriptors in flight: the rule for both kernels, fed what each
// kernel can report (FreeBSD's cannot run here), and the probe of this kernel on real sockets.
#include "peer.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "wire.h"

namespace nsbroker {
namespace {

TEST(SendQueue, WhereTheKernelCountsAResponseIsInFlightUntilRead) {  // Linux: SIOCOUTQ
  EXPECT_TRUE(MayBeUnread({.unread_bytes = 40, .peer_closed = false}));
  EXPECT_FALSE(MayBeUnread({.unread_bytes = 0, .peer_closed = false}));
}

TEST(SendQueue, WhereItCannotCountAResponseIsInFlightUntilThePeerCloses) {  // FreeBSD
  EXPECT_TRUE(MayBeUnread({.unread_bytes = std::nullopt, .peer_closed = false}))
      << "FIONWRITE's 0 must not release the budget";
  EXPECT_FALSE(MayBeUnread({.unread_bytes = std::nullopt, .peer_closed = true}));
  EXPECT_FALSE(MayBeUnread({.unread_bytes = 40, .peer_closed = true}));
}

TEST(SendQueue, ThisKernelSeesUnreadDescriptorsUntilThePeerCloses) {
  auto pair = SeqpacketPair();
  ASSERT_OK(pair);
  EXPECT_FALSE(MayBeUnread(ProbeSendQueue(pair->first)));
  EXPECT_EQ(QueuedBytes(pair->first), 0u);
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int fds[] = {null.get()};
  ASSERT_OK(SendDatagram(pair->first, "grant", fds));
  EXPECT_TRUE(MayBeUnread(ProbeSendQueue(pair->first)));
  EXPECT_GT(QueuedBytes(pair->first), 0u);
  pair->second.reset();  // the peer closes without reading: the kernel disposes of it all
  EXPECT_FALSE(MayBeUnread(ProbeSendQueue(pair->first)));
  EXPECT_EQ(QueuedBytes(pair->first), 0u);
}

}  // namespace
}  // namespace nsbroker
