// Budget (per-model weight/min/max and shares among active models) and ClassBalancer
// (ghost hits against segment hits): the pure bookkeeping the ExpertCache evicts by.
#include "daemon/budget.h"

#include <gtest/gtest.h>

#include "daemon/class_balancer.h"

namespace moepool {
namespace {

constexpr uint64_t kMiB = 1 << 20;

TEST(Budget, BadQuotasAreRefusedAndChangeNothing) {
  Budget b(100 * kMiB);
  ASSERT_TRUE(b.set_quota("a", {2.0, 10 * kMiB, 50 * kMiB}).ok());
  Status s = b.set_quota("a", {0.0, 0, 0});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("weight must be > 0"), std::string::npos) << s.message();
  s = b.set_quota("a", {1.0, 20 * kMiB, 10 * kMiB});
  EXPECT_NE(s.message().find("below min"), std::string::npos) << s.message();
  s = b.set_quota("b", {1.0, 95 * kMiB, 0});
  EXPECT_NE(s.message().find("minimums would sum"), std::string::npos) << s.message();
  EXPECT_EQ(b.set_quota("", {}).code(), Code::kInvalidArgument);
  EXPECT_EQ(b.quota("a"), (Quota{2.0, 10 * kMiB, 50 * kMiB}));
  EXPECT_EQ(b.quota("b"), Quota{});
}

TEST(Budget, SharesFollowWeightsAmongActiveModelsAndIdleOnesKeepTheirMinimum) {
  Budget b(120 * kMiB);
  b.set_idle_after(100);
  ASSERT_TRUE(b.set_quota("a", {2.0, 0, 0}).ok());
  ASSERT_TRUE(b.set_quota("c", {1.0, 12 * kMiB, 0}).ok());
  b.add_model(1, "a");
  b.add_model(2, "b");
  b.add_model(3, "c");
  // Nobody has demanded anything: nobody is active, everyone is entitled to their minimum.
  EXPECT_EQ(b.share(1, 0), 0u);
  EXPECT_EQ(b.share(3, 0), 12 * kMiB);
  b.on_access(1, 10);
  b.on_access(2, 20);
  // a and b active (weights 2:1) share the pool less c's idle minimum.
  EXPECT_EQ(b.share(1, 30), 72 * kMiB);
  EXPECT_EQ(b.share(2, 30), 36 * kMiB);
  EXPECT_TRUE(b.active(1, 30));
  EXPECT_FALSE(b.active(3, 30));
  // 100 ticks after its last demand, a is idle and b gets all but c's minimum.
  b.on_access(2, 115);
  EXPECT_FALSE(b.active(1, 115));
  EXPECT_EQ(b.share(2, 115), 108 * kMiB);
  // A maximum caps the share.
  ASSERT_TRUE(b.set_quota("b", {1.0, 0, 40 * kMiB}).ok());
  EXPECT_EQ(b.share(2, 115), 40 * kMiB);
}

TEST(Budget, DonorsLendUnusedShareAndReclaimIt) {
  Budget b(100 * kMiB);
  b.set_idle_after(1000);
  b.add_model(1, "a");
  b.add_model(2, "b");
  b.on_access(1, 1);
  b.charge(1, 90 * kMiB);  // a borrowed most of the pool while b was idle
  // a alone is active: within its share, nobody owes it memory; it evicts its own.
  auto d = b.donors(1, kMiB, 2);
  EXPECT_TRUE(d.first.empty());
  EXPECT_EQ(d.then, std::vector<uint64_t>({1}));
  // b starts: under its half, it reclaims from a (over its half) first, itself second.
  b.on_access(2, 3);
  d = b.donors(2, kMiB, 3);
  EXPECT_EQ(d.first, std::vector<uint64_t>({1}));
  EXPECT_EQ(d.then, std::vector<uint64_t>({2}));
  // a's minimum protects it: with min 90 MiB it cannot lose another byte.
  ASSERT_TRUE(b.set_quota("a", {1.0, 90 * kMiB, 0}).ok());
  d = b.donors(2, kMiB, 3);
  EXPECT_TRUE(d.first.empty());
  EXPECT_EQ(d.then, std::vector<uint64_t>({2}));
  // A model at its maximum only ever evicts its own.
  ASSERT_TRUE(b.set_quota("b", {1.0, 0, 4 * kMiB}).ok());
  b.charge(2, 4 * kMiB);
  EXPECT_FALSE(b.under_max(2, kMiB));
  d = b.donors(2, kMiB, 3);
  EXPECT_EQ(d.first, std::vector<uint64_t>({2}));
  EXPECT_TRUE(d.then.empty());
}

TEST(ClassBalancer, GhostHitsCountMissesOnRecentlyEvictedKeysOnly) {
  ClassBalancer cb;
  cb.set_ghost_capacity(0, 2, 2);
  cb.set_ghost_capacity(1, 2, 2);
  cb.on_evict(0, {1, 0, 1});
  cb.on_evict(0, {1, 0, 2});
  cb.on_evict(0, {1, 0, 3});  // pushes key 1 out: the ghost list holds one segment's worth
  cb.on_miss(0, {1, 0, 1});
  EXPECT_EQ(cb.ghost_hits(0), 0u);
  cb.on_miss(0, {1, 0, 3});
  cb.on_miss(0, {1, 0, 3});  // counted once: a ghost is consumed by its hit
  EXPECT_EQ(cb.ghost_hits(0), 1u);
  cb.on_miss(1, {1, 0, 2});  // another class's ghost does not count here
  EXPECT_EQ(cb.ghost_hits(1), 0u);
  EXPECT_EQ(cb.best_receiver(), 0);
  EXPECT_DOUBLE_EQ(cb.gain(0), 1.0);  // the ghost list is one segment's worth
  cb.end_window();
  EXPECT_EQ(cb.ghost_hits(0), 0u);  // halved
  EXPECT_EQ(cb.best_receiver(), -1);
}

TEST(ClassBalancer, GainSpreadsGhostHitsOverTheSegmentsTheGhostListSpans) {
  ClassBalancer cb;
  cb.set_ghost_capacity(0, 12, 3);  // remembers 4 segments' worth
  for (uint32_t e = 0; e < 12; ++e) cb.on_evict(0, {7, 1, e});
  for (uint32_t e = 0; e < 12; ++e) cb.on_miss(0, {7, 1, e});  // a cycle just past memory
  EXPECT_EQ(cb.ghost_hits(0), 12u);
  EXPECT_DOUBLE_EQ(cb.gain(0), 3.0);
}

TEST(ClassBalancer, WindowsAndSegmentHitsDecideMoves) {
  ClassBalancer cb;
  cb.set_window(3);
  EXPECT_FALSE(cb.tick());
  EXPECT_FALSE(cb.tick());
  EXPECT_TRUE(cb.tick());
  for (int i = 0; i < 8; ++i) cb.on_hit(2);
  EXPECT_EQ(cb.segment_hits(2), 8u);
  EXPECT_EQ(cb.segment_hits(5), 0u);
  cb.forget_segment(2);
  EXPECT_EQ(cb.segment_hits(2), 0u);
  EXPECT_FALSE(ClassBalancer::should_move(2, 0));   // too little evidence
  EXPECT_TRUE(ClassBalancer::should_move(3, 0));
  EXPECT_FALSE(ClassBalancer::should_move(12, 8));  // hysteresis: 12 <= 1.25 * 8 + 2
  EXPECT_TRUE(ClassBalancer::should_move(13, 8));
}

}  // namespace
}  // namespace moepool
