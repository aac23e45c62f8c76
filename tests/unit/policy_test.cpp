// Residency policies (daemon/policy*.h) and the next-layer predictor.
#include "daemon/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "daemon/expert_predictor.h"
#include "daemon/policy_adaptive.h"
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
  for (const char* name : {"lru", "lrfu", "lfu", "default", "lrfu/2.5", "adaptive", "stale/4"}) {
    auto p = make_policy(name);
    ASSERT_TRUE(p.ok()) << name;
  }
  EXPECT_EQ((*make_policy("default"))->name(), std::string(default_policy_name()));
  auto bad = make_policy("arc");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("arc"), std::string::npos);
  EXPECT_FALSE(make_policy("lrfu/-1").ok());
  EXPECT_FALSE(make_policy("lrfu/x").ok());
  EXPECT_FALSE(make_policy("stale/0").ok());
}

TEST(Policy, AdaptiveSeedStartsTheScoreOfAKeyInsertedLater) {
  AdaptivePolicy p;
  p.set_capacity(0, 8);
  uint64_t t = 0;
  p.seed(k(1), 5.0, t);       // popular in an earlier run
  EXPECT_EQ(p.size(), 0u);    // a seed makes nothing resident
  EXPECT_GT(p.value(k(1)), p.value(k(2)));
  p.insert(k(1), 0, ++t);     // warm-up reads it
  t = use(p, k(2), 1, t);     // demanded once, after the warm-up
  EXPECT_EQ(p.victim(0, nullptr), k(2)) << "the seeded key keeps its prior popularity";
  // Without the seed, the key inserted first and never demanded goes first.
  AdaptivePolicy q;
  q.set_capacity(0, 8);
  t = 0;
  q.insert(k(1), 0, ++t);
  t = use(q, k(2), 1, t);
  EXPECT_EQ(q.victim(0, nullptr), k(1));
}

TEST(Policy, AdaptiveSeedIsAPriorNotABonus) {
  AdaptivePolicy p;
  p.set_capacity(0, 8);
  uint64_t t = use(p, k(1), 4, 0);
  double before = p.value(k(1));
  p.seed(k(1), 1.0, t);  // weaker than what was seen: no change
  EXPECT_DOUBLE_EQ(p.value(k(1)), before);
  p.seed(k(2), 1e12, t);  // capped at a key used at every access of its layer
  for (int i = 0; i < 400; ++i) p.on_access(k(3), ++t, true);
  EXPECT_GT(p.value(k(3)), p.value(k(2))) << "an old prior decays like any access";
  p.seed(k(4), 0.0, t);
  EXPECT_EQ(p.value(k(4)), -INFINITY);
}

// Replays `steps` steps of `layers` layers each demanding `experts` (the same every
// step) through `p` on `cap` slots, the request's keys protected; returns the hits.
uint64_t replay_cycle(ResidencyPolicy& p, uint64_t cap, uint32_t layers,
                      std::vector<uint32_t> experts, int steps) {
  p.set_capacity(0, cap);
  std::set<PolicyKey> resident;
  uint64_t t = 0, hits = 0;
  for (int s = 0; s < steps; ++s)
    for (uint32_t l = 0; l < layers; ++l) {
      std::vector<PolicyKey> held;
      for (uint32_t e : experts) {
        PolicyKey key = k(e, l);
        bool hit = resident.count(key) > 0;
        p.on_access(key, ++t, hit);
        held.push_back(key);
        if (hit) {
          ++hits;
          continue;
        }
        if (resident.size() >= cap) {
          auto v = p.victim(0, [&](const PolicyKey& x) {
            return std::find(held.begin(), held.end(), x) != held.end();
          });
          if (!v) return hits;
          p.erase(*v);
          resident.erase(*v);
        }
        p.insert(key, 0, t);
        resident.insert(key);
      }
    }
  return hits;
}

TEST(Policy, AdaptiveStaleClockDoesNotThrashWhereLruDoes) {
  // Two layers of two experts each, three slots: a step does not fit. LRU always evicts
  // what comes next and never hits; aged on each layer's own clock, with ties going to
  // the layer just passed, the policy keeps part of the cycle.
  LruResidencyPolicy lru;
  EXPECT_EQ(replay_cycle(lru, 3, 2, {0, 1}, 50), 0u);
  AdaptivePolicy stale(AdaptivePolicyOptions{{0.1}, 8, 0.01, "stale/0.1"});
  EXPECT_GT(replay_cycle(stale, 3, 2, {0, 1}, 50), 50u);
}

TEST(Policy, AdaptivePrefetchAdmissionNeedsToBeatTheVictim) {
  AdaptivePolicy p;
  p.set_capacity(0, 8);
  use(p, k(0), 6, 0);
  PolicyKey v = k(0);
  EXPECT_FALSE(p.admit(k(5), 0.5, &v));
  EXPECT_TRUE(p.admit(k(5), 0.5, nullptr));
  EXPECT_FALSE(p.admit(k(5), 0.0, nullptr));
}

TEST(Policy, AdaptiveFollowsTheShadowThatHitsMost) {
  // Four hot keys, each used once a round between eight keys never seen again, through 8
  // slots: recency keeps the one-off keys and never hits, frequency keeps the hot ones.
  // The live order starts at lambda 0.2 and must move to the shadow that hits: 64.
  AdaptivePolicy p(AdaptivePolicyOptions{{0.1, 0.2, 64}, 8, 0.01, "adaptive"});
  p.set_capacity(0, 8);
  uint64_t t = 0, late_hits = 0;
  uint32_t cold = 100;
  std::set<PolicyKey> resident;
  for (int round = 0; round < 300; ++round) {
    std::vector<PolicyKey> keys;
    for (uint32_t e = 0; e < 4; ++e) keys.push_back(k(e));
    for (int i = 0; i < 8; ++i) keys.push_back(k(cold++));
    for (const PolicyKey& key : keys) {
      bool hit = resident.count(key) > 0;
      p.on_access(key, ++t, hit);
      if (round >= 200) late_hits += hit;
      if (hit) continue;
      if (resident.size() >= 8) {
        auto v = p.victim(0, nullptr);
        ASSERT_TRUE(v.has_value());
        p.erase(*v);
        resident.erase(*v);
      }
      p.insert(key, 0, t);
      resident.insert(key);
    }
  }
  EXPECT_EQ(p.active_lambda(), 64);
  EXPECT_GE(late_hits, 100u * 4 * 9 / 10) << "the hot keys stay resident";
}

// Replays `keys` (one access each, in order) through `p` on a cache of `slots`, evicting
// the policy's victim on a miss; returns the victims chosen, in order.
std::vector<PolicyKey> replay_victims(ResidencyPolicy& p, const std::vector<PolicyKey>& keys,
                                      size_t slots) {
  std::set<PolicyKey> resident;
  std::vector<PolicyKey> victims;
  uint64_t t = 0;
  for (const PolicyKey& key : keys) {
    bool hit = resident.count(key) > 0;
    p.on_access(key, ++t, hit);
    if (hit) continue;
    if (resident.size() >= slots) {
      auto v = p.victim(0, [&](const PolicyKey& x) { return x == key; });
      if (!v) break;
      victims.push_back(*v);
      p.erase(*v);
      resident.erase(*v);
    }
    p.insert(key, 0, t);
    resident.insert(key);
  }
  return victims;
}

// Layer-by-layer steps of `layers` layers, two experts each out of `experts`, some
// reuse: a stream with a recency/frequency trade-off.
std::vector<PolicyKey> layered_stream(uint32_t layers, uint32_t experts, int steps) {
  std::vector<PolicyKey> keys;
  uint64_t x = 12345;
  for (int s = 0; s < steps; ++s)
    for (uint32_t l = 0; l < layers; ++l)
      for (int i = 0; i < 2; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t e = static_cast<uint32_t>((x >> 33) % experts);
        if (i == 1 && (x >> 20) % 4 == 0) e = (e * e) % experts;  // skew a little
        keys.push_back(k(e, l));
      }
  return keys;
}

TEST(Policy, AdaptiveWithFewLayersSamplesThemAllLikeFullShadows) {
  // A model with no more layers than shadow_min_layers: every layer is sampled, so the
  // sampled policy decides exactly as the one whose shadows replay everything.
  auto keys = layered_stream(6, 16, 300);
  AdaptivePolicy sampled, full(AdaptivePolicyOptions{.shadow_fraction = 1});
  sampled.set_capacity(0, 24);
  full.set_capacity(0, 24);
  EXPECT_EQ(replay_victims(sampled, keys, 24), replay_victims(full, keys, 24));
}

TEST(Policy, AdaptiveSampledShadowsStillFollowTheShadowThatHitsMost) {
  // As AdaptiveFollowsTheShadowThatHitsMost, over 32 layers of which the shadows replay
  // 8: each layer has 4 hot experts and one-off ones; only frequency (64) hits.
  AdaptivePolicyOptions o{{0.1, 0.2, 64}, 8, 0.01, "adaptive"};
  o.shadow_fraction = 0.25;
  o.shadow_min_layers = 4;
  AdaptivePolicy p(o);
  const uint32_t layers = 32;
  std::vector<PolicyKey> keys;
  uint32_t cold = 100;
  for (int round = 0; round < 200; ++round)
    for (uint32_t l = 0; l < layers; ++l) {
      for (uint32_t e = 0; e < 4; ++e) keys.push_back(k(e, l));
      for (int i = 0; i < 8; ++i) keys.push_back(k(cold++, l));
    }
  p.set_capacity(0, 8 * layers);
  replay_victims(p, keys, 8 * layers);
  EXPECT_EQ(p.active_lambda(), 64);
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

TEST(ExpertPredictor, KeepsATableForEachDistance) {
  ExpertPredictor pr;
  for (int i = 0; i < 4; ++i) {
    pr.learn(0, 3, {1}, {5}, 1);  // layer 4 follows with 5
    pr.learn(0, 3, {1}, {2}, 2);  // layer 5 with 2
  }
  auto one = pr.predict(0, 3, {1}, 4, 0, 1), two = pr.predict(0, 3, {1}, 4, 0, 2);
  ASSERT_EQ(one.size(), 1u);
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(one[0].expert, 5u);
  EXPECT_EQ(two[0].expert, 2u);
  EXPECT_EQ(pr.predict(0, 3, {1}, 4).front().expert, 5u);  // distance 1 by default
  EXPECT_TRUE(pr.predict(0, 3, {1}, 4, 0, 3).empty());
}

}  // namespace
}  // namespace moepool
