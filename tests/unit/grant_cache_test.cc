// The grant cache over real pidfds of real processes: hits cost no fetch, the capacity is
// never exceeded, the least recently granted set goes first, refresh_ms bounds a set's age.
#include "grant_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "harness.h"
#include "test_util.h"

namespace nsbroker {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr KindSet kEight = KindBit(NsKind::kCgroup) | KindBit(NsKind::kIpc) |
                           KindBit(NsKind::kMnt) | KindBit(NsKind::kNet) | KindBit(NsKind::kPid) |
                           KindBit(NsKind::kTime) | KindBit(NsKind::kUser) | KindBit(NsKind::kUts);

class GrantCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      specs_[i].name = "t" + std::to_string(i);
      specs_[i].source = SourceType::kPid;
      specs_[i].pid = getpid();
      specs_[i].expose = kEight;
      auto handle = OpenTarget(specs_[i]);
      ASSERT_OK(handle);
      handles_[i] = std::move(*handle);
    }
  }
  Result<GrantSetPtr> Get(int i, KindSet kinds, milliseconds refresh = milliseconds(1000)) {
    return cache_.Get(*handles_[i], specs_[i], kinds, refresh, now_);
  }
  TargetSpec specs_[3];
  TargetHandlePtr handles_[3];
  std::vector<std::string> log_;
  GrantCache cache_{[this](const std::string& line) { log_.push_back(line); }};
  Clock::time_point now_ = Clock::now();
};

TEST_F(GrantCacheTest, AHitIsTheHeldSetItself) {
  cache_.SetCapacity(100);
  auto first = Get(0, kEight);
  ASSERT_OK(first);
  auto second = Get(0, KindBit(NsKind::kNet));
  ASSERT_OK(second);
  EXPECT_EQ(first->get(), second->get());  // the same descriptors, nothing fetched
  EXPECT_EQ(cache_.stats().hits, 1u);
  EXPECT_EQ(cache_.stats().misses, 1u);
  EXPECT_EQ(cache_.held(), 8u);
}

TEST_F(GrantCacheTest, NeverAboveCapacityAndTheLeastRecentlyGrantedGoesFirst) {
  cache_.SetCapacity(16);  // two sets of eight
  ASSERT_OK(Get(0, kEight));
  ASSERT_OK(Get(1, kEight));
  ASSERT_OK(Get(0, kEight));  // 0 is now the most recent
  ASSERT_OK(Get(2, kEight));  // evicts 1
  EXPECT_EQ(cache_.held(), 16u);
  EXPECT_EQ(cache_.stats().evictions, 1u);
  std::uint64_t hits = cache_.stats().hits;
  ASSERT_OK(Get(0, kEight));
  EXPECT_EQ(cache_.stats().hits, hits + 1);
  ASSERT_OK(Get(1, kEight));  // was evicted: a miss
  EXPECT_EQ(cache_.stats().hits, hits + 1);
  EXPECT_LE(cache_.held(), 16u);
  cache_.SetCapacity(8);
  EXPECT_LE(cache_.held(), 8u);
  cache_.SetCapacity(4);  // smaller than a set: served, not held
  auto set = Get(0, kEight);
  ASSERT_OK(set);
  EXPECT_EQ((*set)->entries.size(), 8u);
  EXPECT_EQ(cache_.held(), 0u);
}

TEST_F(GrantCacheTest, RefreshMsBoundsTheAgeOfASetAndZeroFetchesEveryTime) {
  cache_.SetCapacity(100);
  auto first = Get(0, kEight);
  ASSERT_OK(first);
  now_ += milliseconds(999);
  auto held = Get(0, kEight);
  ASSERT_OK(held);
  EXPECT_EQ(first->get(), held->get());
  now_ += milliseconds(1);
  auto refreshed = Get(0, kEight);
  ASSERT_OK(refreshed);
  EXPECT_NE(first->get(), refreshed->get());
  EXPECT_EQ(cache_.stats().refreshes, 1u);
  EXPECT_TRUE(log_.empty());  // the same namespaces: nothing changed
  // refresh_ms 0: a fetch per grant, nothing held.
  cache_.Forget(handles_[0]->serial());
  ASSERT_OK(Get(0, kEight, milliseconds(0)));
  ASSERT_OK(Get(0, kEight, milliseconds(0)));
  EXPECT_EQ(cache_.stats().hits, 1u);
  EXPECT_EQ(cache_.held(), 0u);
}

TEST_F(GrantCacheTest, ForgetAndRetainReleaseSets) {
  cache_.SetCapacity(100);
  ASSERT_OK(Get(0, kEight));
  ASSERT_OK(Get(1, kEight));
  ASSERT_OK(Get(2, kEight));
  cache_.Forget(handles_[1]->serial());
  EXPECT_EQ(cache_.held(), 16u);
  cache_.Retain({handles_[2]->serial()});
  EXPECT_EQ(cache_.held(), 8u);
  EXPECT_EQ(cache_.sets(), 1u);
}

}  // namespace
}  // namespace nsbroker
