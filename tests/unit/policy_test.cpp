// Residency policies (daemon/policy*.h) and the next-layer predictor.
#include "daemon/policy.h"

#include <gtest/gtest.h>

#include <set>

#include "daemon/expert_predictor.h"
#include "daemon/policy_decayed.h"
#include "daemon/policy_lru.h"

namespace moepool {
namespace {

PolicyKey k(uint32_t expert, uint32_t layer = 0, uint64_t model = 0) {
  return PolicyKey{model, layer, expert};
}

// Demands `key` `times` times (a miss, then hits) and inserts it; returns the last tick.
uint64_t use(ResidencyPolicy& p, const PolicyKey& key, int times, uint64_t t) {
  for (int i = 0; i < times; ++i) p.on_access(key, ++t, i > 0);
  p.insert(key, 0, t);
  return t;
}

TEST(Policy, LruEvictsLeastRecentlyUsedFirst) {
  LruResidencyPolicy p;
  uint64_t t = 0;
  for (uint32_t e = 0; e < 3; ++e) {
    p.on_access(k(e), ++t, false);
    p.insert(k(e), 0, t);
  }
  p.on_access(k(0), ++t, true);  // 0 becomes the most recent: order 1, 2, 0
  EXPECT_EQ(p.victim(0, nullptr), k(1));
  p.erase(k(1));
  EXPECT_EQ(p.victim(0, nullptr), k(2));
  p.erase(k(2));
  EXPECT_EQ(p.victim(0, nullptr), k(0));
  p.erase(k(0));
  EXPECT_FALSE(p.victim(0, nullptr).has_value());
  EXPECT_EQ(p.size(), 0u);
}

TEST(Policy, LruKeepsSlotClassesApart) {
  LruResidencyPolicy p;
  p.insert(k(0), 0, 1);
  p.insert(k(1), 1, 2);
  EXPECT_EQ(p.victim(1, nullptr), k(1));
  EXPECT_EQ(p.victim(0, nullptr), k(0));
  EXPECT_FALSE(p.victim(2, nullptr).has_value());
}

// Whatever the caller protects (the current step's pins) is never a victim.
TEST(Policy, VictimSkipsProtectedKeys) {
  for (const char* name : {"lru", "default", "lfu"}) {
    auto p = make_policy(name);
    ASSERT_TRUE(p.ok()) << name;
    (*p)->set_capacity(0, 4);
    uint64_t t = 0;
    for (uint32_t e = 0; e < 4; ++e) {
      (*p)->on_access(k(e), ++t, false);
      (*p)->insert(k(e), 0, t);
    }
    std::set<PolicyKey> pinned{k(0), k(1), k(2)};
    auto keep = [&](const PolicyKey& key) { return pinned.count(key) != 0; };
    EXPECT_EQ((*p)->victim(0, keep), k(3)) << name;
    pinned.insert(k(3));
    EXPECT_FALSE((*p)->victim(0, keep).has_value()) << name;
  }
}

TEST(Policy, DecayedFrequencyKeepsAnExpertUsedOftenOverOneUsedOnceLater) {
  DecayedFrequencyPolicy p;
  p.set_capacity(0, 8);  // half-life 32 accesses
  uint64_t t = 0;
  p.on_access(k(0), ++t, false);
  p.insert(k(0), 0, t);
  for (int i = 0; i < 5; ++i) p.on_access(k(0), ++t, true);
  p.on_access(k(1), ++t, false);
  p.insert(k(1), 0, t);
  EXPECT_EQ(p.victim(0, nullptr), k(1));  // LRU would pick 0
}

TEST(Policy, DecayedFrequencyForgetsOldPopularity) {
  DecayedFrequencyPolicy p;
  p.set_capacity(0, 1);  // half-life 4 accesses
  uint64_t t = use(p, k(0), 6, 0);
  use(p, k(1), 1, t + 200);  // 50 half-lives later
  EXPECT_EQ(p.victim(0, nullptr), k(0));
}

TEST(Policy, DecayedFrequencyRemembersEvictedExperts) {
  DecayedFrequencyPolicy p;
  p.set_capacity(0, 8);
  uint64_t t = use(p, k(0), 6, 0);
  p.erase(k(0));
  double before = p.log_score(k(0));
  p.on_access(k(0), ++t, false);
  EXPECT_GT(p.log_score(k(0)), before);
  p.insert(k(0), 0, t);
  use(p, k(1), 1, t);
  EXPECT_EQ(p.victim(0, nullptr), k(1));
}

TEST(Policy, PrefetchAdmissionNeedsToBeatTheVictim) {
  DecayedFrequencyPolicy p;
  p.set_capacity(0, 8);
  use(p, k(0), 6, 0);
  PolicyKey v = k(0);
  EXPECT_FALSE(p.admit(k(5), 0.5, &v));  // an unproven guess never displaces a hot expert
  EXPECT_TRUE(p.admit(k(5), 0.5, nullptr));  // a free slot costs nothing
  EXPECT_FALSE(p.admit(k(5), 0.0, nullptr));
  LruResidencyPolicy lru;
  EXPECT_TRUE(lru.admit(k(5), 0.1, &v));
}

TEST(Policy, MakePolicyNamesAndErrors) {
  for (const char* name : {"lru", "lrfu", "lfu", "default", "lrfu/2.5"}) {
    auto p = make_policy(name);
    ASSERT_TRUE(p.ok()) << name;
  }
  EXPECT_EQ((*make_policy("default"))->name(), std::string(default_policy_name()));
  auto bad = make_policy("arc");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("arc"), std::string::npos);
  EXPECT_FALSE(make_policy("lrfu/-1").ok());
  EXPECT_FALSE(make_policy("lrfu/x").ok());
}

TEST(ExpertPredictor, LearnsWhichExpertsFollow) {
  ExpertPredictor pr;
  EXPECT_TRUE(pr.predict(0, 3, {1, 2}, 4).empty());
  for (int i = 0; i < 10; ++i) {
    pr.learn(0, 3, {1, 2}, {5, 6});
    pr.learn(0, 3, {7}, {0});
  }
  auto g = pr.predict(0, 3, {1, 2}, 4);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].expert, 5u);
  EXPECT_EQ(g[1].expert, 6u);
  EXPECT_DOUBLE_EQ(g[0].probability, 1.0);
  EXPECT_TRUE(pr.predict(1, 3, {1, 2}, 4).empty());  // another model learned nothing
  auto half = pr.predict(0, 3, {1, 7}, 4);  // 1 says {5, 6}, 7 says {0}
  ASSERT_EQ(half.size(), 3u);
  EXPECT_DOUBLE_EQ(half[0].probability, 0.5);
  EXPECT_TRUE(pr.predict(0, 3, {1, 7}, 4, 0.6).empty());
}

}  // namespace
}  // namespace moepool
