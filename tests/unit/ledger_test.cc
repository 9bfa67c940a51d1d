// The descriptor ledger alone: caps per uid and in all, root's reserve, in-flight room, and
// configs that cannot fit the budget.
#include "ledger.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace nsbroker {
namespace {

Config Limits(std::uint32_t max, std::uint32_t per_uid, std::uint32_t reserve,
              std::uint32_t inflight = 4096) {
  Config c;
  c.file = "l.conf";
  c.max_connections = max;
  c.max_connections_per_uid = per_uid;
  c.root_reserve = reserve;
  c.max_inflight_fds_per_uid = inflight;
  return c;
}

TEST(Ledger, PerUidCapCountsEveryConnectionOfThatUid) {
  Ledger ledger(1000);
  ledger.Apply(Limits(100, 2, 10));
  ASSERT_OK(ledger.OpenConnection(1000));
  ASSERT_OK(ledger.OpenConnection(1000));
  auto third = ledger.OpenConnection(1000);
  ASSERT_FALSE(third.has_value());
  EXPECT_EQ(third.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(third.error().message, "uid 1000 has too many connections (max_connections_per_uid 2)");
  EXPECT_OK(ledger.OpenConnection(1001));
  ledger.CloseConnection(1000);
  EXPECT_OK(ledger.OpenConnection(1000));
  EXPECT_EQ(ledger.held(Account::kConnections), 3u);
}

TEST(Ledger, RootAloneMayUseTheReserve) {
  Ledger ledger(1000);
  ledger.Apply(Limits(10, 10, 4));
  for (uid_t uid = 1; uid <= 6; ++uid) ASSERT_OK(ledger.OpenConnection(uid));
  auto refused = ledger.OpenConnection(7);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().message,
            "too many connections (max_connections 10, 4 of them reserved for root)");
  for (int i = 0; i < 4; ++i) ASSERT_OK(ledger.OpenConnection(0));
  EXPECT_EQ(ledger.OpenConnection(0).error().message, "too many connections (max_connections 10)");
  // A user leaving frees a slot for users, not one of root's.
  ledger.CloseConnection(3);
  EXPECT_OK(ledger.OpenConnection(7));
}

TEST(Ledger, InFlightRoomPerUidAndLeavingRootsReserve) {
  Ledger ledger(200);
  ledger.Apply(Limits(10, 10, 4, 100));  // root's in-flight reserve: 40
  EXPECT_EQ(ledger.Room(1000), 100u);
  ledger.Ship(1000, 90);
  EXPECT_EQ(ledger.Room(1000), 10u);
  ledger.Ship(1001, 60);
  // Users share 200 - 40 = 160 of which 150 are out.
  EXPECT_EQ(ledger.Room(1002), 10u);
  EXPECT_EQ(ledger.Room(0), 50u);
  ledger.Delivered(1000, 90);
  EXPECT_EQ(ledger.Room(1000), 100u);
  EXPECT_EQ(ledger.inflight_total(), 60u);
}

TEST(Ledger, ConfigThatCannotFitNamesTheNumbers) {
  Ledger ledger(2000);
  ledger.Set(Account::kListeners, 2);
  EXPECT_OK(ledger.Fit(Limits(1024, 64, 16, 1000), 900));
  auto tight = ledger.Fit(Limits(1024, 64, 16, 1000), 1000);
  ASSERT_FALSE(tight.has_value());
  EXPECT_EQ(tight.error().message,
            "l.conf: max_connections 1024 + 1000 target descriptors + 2 listeners + "
            "64 reserved = 2090 exceed the descriptor budget 2000 (RLIMIT_NOFILE)");
  // The grant cache (issue 13) is not a fixed cost: it gets what the rest leaves, and shrinks
  // to it, so a config fits whatever the cache holds now.
  ledger.Set(Account::kGrantCache, 100);
  EXPECT_OK(ledger.Fit(Limits(1024, 64, 16, 1000), 900));
  EXPECT_FALSE(Ledger(2000).Fit(Limits(1024, 64, 16, 1900), 0).has_value());
  EXPECT_FALSE(Ledger(2000).Fit(Limits(16, 4, 16, 1000), 0).has_value());
}

}  // namespace
}  // namespace nsbroker
