// Decayed frequency with recency (LRFU, Lee et al. 2001): every demand adds
// 2^(tick / H) to a key's score, so the score is its access count with each access
// weighted by 2^-(age / H). A small H orders like LRU, a large H like LFU. H is
// `half_life_per_slot` times the class's capacity in slots, so the balance adapts to the
// cache size: what matters is how an access's age compares with how long the cache can
// keep a key. Scores of evicted keys are remembered (a ghost history, as TinyLFU's
// sketch does), so an expert that comes back keeps its popularity. Since every score
// scales by the same factor over time, the eviction order only changes on access, and
// victims come from an ordered set.
// Prefetches are admitted only when their expected score beats the victim's by
// `admit_margin` (anti-thrash hysteresis: a guess never displaces a proven expert).
// Thread safety: not thread-safe (see policy.h).
#pragma once

#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/policy.h"

namespace moepool {

struct DecayedFrequencyOptions {
  double half_life_per_slot = 6.0;   // H in accesses = this * capacity in slots
  double default_half_life = 4096;   // H when set_capacity was never called
  double admit_margin = 0.0;         // log2 units a prefetch must beat its victim by
  std::string name = "lrfu";
};

class DecayedFrequencyPolicy final : public ResidencyPolicy {
 public:
  explicit DecayedFrequencyPolicy(DecayedFrequencyOptions opt = {}) : opt_(std::move(opt)) {}

  std::string name() const override { return opt_.name; }
  void set_capacity(uint32_t slot_class, uint64_t slots) override;
  void on_access(const PolicyKey& key, uint64_t tick, bool hit) override;
  bool admit(const PolicyKey& key, double p, const PolicyKey* victim) const override;
  void insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) override;
  std::optional<PolicyKey> victim(uint32_t slot_class, const PolicyProtect& keep) const override;
  void erase(const PolicyKey& key) override;
  size_t size() const override { return resident_; }

  // log2 of the key's score (-inf if never seen); for tests and the simulator's reports.
  double log_score(const PolicyKey& key) const;

 private:
  struct Entry {
    double lscore = -1e300;  // log2(sum over accesses of 2^(tick / H))
    uint32_t slot_class = 0;
    bool resident = false;
    uint64_t last_tick = ~0ull;  // tick of the last credited access
  };
  double half_life(uint32_t slot_class) const;
  // Adds weight * 2^(tick / H) to e's score, keeping the resident order in step.
  void credit(const PolicyKey& key, Entry& e, uint64_t tick, double weight);

  DecayedFrequencyOptions opt_;
  std::vector<double> half_life_;  // per class; 0 = not set
  std::unordered_map<PolicyKey, Entry, PolicyKeyHash> entries_;  // resident and ghosts
  std::vector<std::set<std::pair<double, PolicyKey>>> order_;  // per class, victim first
  size_t resident_ = 0;
  uint64_t now_ = 0;
};

}  // namespace moepool
