#include "daemon/policy_decayed.h"

#include <algorithm>
#include <cmath>

namespace moepool {
namespace {

// log2(2^a + w * 2^b) without overflow; w > 0.
double log2_add(double a, double b, double w) {
  double lb = b + std::log2(w);
  double m = std::max(a, lb);
  return m + std::log2(std::exp2(a - m) + std::exp2(lb - m));
}

}  // namespace

double DecayedFrequencyPolicy::half_life(uint32_t slot_class) const {
  if (slot_class < half_life_.size() && half_life_[slot_class] > 0) return half_life_[slot_class];
  return opt_.default_half_life;
}

void DecayedFrequencyPolicy::set_capacity(uint32_t slot_class, uint64_t slots) {
  if (half_life_.size() <= slot_class) half_life_.resize(slot_class + 1, 0);
  half_life_[slot_class] = std::max(1.0, opt_.half_life_per_slot * static_cast<double>(slots));
}

void DecayedFrequencyPolicy::credit(const PolicyKey& key, Entry& e, uint64_t tick, double weight) {
  if (e.resident) order_[e.slot_class].erase({e.lscore, key});
  double t = static_cast<double>(tick) / half_life(e.slot_class);
  e.lscore = e.lscore < -1e299 ? t + std::log2(weight) : log2_add(e.lscore, t, weight);
  e.last_tick = tick;
  if (e.resident) order_[e.slot_class].insert({e.lscore, key});
}

void DecayedFrequencyPolicy::on_access(const PolicyKey& key, uint64_t tick, bool hit) {
  now_ = std::max(now_, tick);
  Entry& e = entries_[key];
  credit(key, e, tick, 1.0);
}

bool DecayedFrequencyPolicy::admit(const PolicyKey& key, double p, const PolicyKey* victim) const {
  if (!victim) return p > 0;
  auto v = entries_.find(*victim);
  if (v == entries_.end()) return true;
  auto k = entries_.find(key);
  double base = k == entries_.end() ? -1e300 : k->second.lscore;
  double t = static_cast<double>(now_) / half_life(v->second.slot_class);
  double expect = p <= 0 ? base : (base < -1e299 ? t + std::log2(p) : log2_add(base, t, p));
  return expect > v->second.lscore + opt_.admit_margin;
}

void DecayedFrequencyPolicy::insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) {
  now_ = std::max(now_, tick);
  Entry& e = entries_[key];
  if (e.resident) {
    order_[e.slot_class].erase({e.lscore, key});
    --resident_;
  }
  e.slot_class = slot_class;
  e.resident = true;
  ++resident_;
  if (order_.size() <= slot_class) order_.resize(slot_class + 1);
  order_[slot_class].insert({e.lscore, key});
  // A key inserted without a demand at this tick (a prefetch) is credited as one access,
  // so it is not the very next victim before its use.
  if (e.last_tick != tick) credit(key, e, tick, 1.0);
}

std::optional<PolicyKey> DecayedFrequencyPolicy::victim(uint32_t slot_class,
                                                        const PolicyProtect& keep) const {
  if (slot_class >= order_.size()) return std::nullopt;
  for (const auto& [score, k] : order_[slot_class])
    if (!keep || !keep(k)) return k;
  return std::nullopt;
}

void DecayedFrequencyPolicy::erase(const PolicyKey& key) {
  auto it = entries_.find(key);
  if (it == entries_.end() || !it->second.resident) return;
  order_[it->second.slot_class].erase({it->second.lscore, key});
  it->second.resident = false;
  --resident_;
}

double DecayedFrequencyPolicy::log_score(const PolicyKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? -INFINITY : it->second.lscore;
}

}  // namespace moepool
