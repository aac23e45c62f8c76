#include "daemon/class_balancer.h"

#include <algorithm>

namespace moepool {

ClassBalancer::ClassGhosts& ClassBalancer::cls(uint32_t c) {
  if (classes_.size() <= c) classes_.resize(c + 1);
  return classes_[c];
}

void ClassBalancer::set_ghost_capacity(uint32_t c, uint64_t slots, double per_segment) {
  cls(c).capacity = slots ? slots : 1;
  cls(c).per_segment = per_segment > 0 ? per_segment : 1;
}

double ClassBalancer::gain(uint32_t c) const {
  if (c >= classes_.size()) return 0;
  const ClassGhosts& g = classes_[c];
  return static_cast<double>(g.ghost_hits) * std::min(1.0, g.per_segment / g.capacity);
}

void ClassBalancer::on_evict(uint32_t c, const PolicyKey& key) {
  ClassGhosts& g = cls(c);
  if (g.capacity == 0) return;
  if (auto it = g.where.find(key); it != g.where.end()) g.order.erase(it->second);
  g.where[key] = g.order.insert(g.order.end(), key);
  while (g.order.size() > g.capacity) {
    g.where.erase(g.order.front());
    g.order.pop_front();
  }
}

void ClassBalancer::on_miss(uint32_t c, const PolicyKey& key) {
  ClassGhosts& g = cls(c);
  auto it = g.where.find(key);
  if (it == g.where.end()) return;
  g.order.erase(it->second);
  g.where.erase(it);
  g.ghost_hits++;
}

void ClassBalancer::on_hit(uint32_t seg) {
  if (segment_hits_.size() <= seg) segment_hits_.resize(seg + 1, 0);
  segment_hits_[seg]++;
}

bool ClassBalancer::tick() {
  if (++in_window_ < window_) return false;
  in_window_ = 0;
  return true;
}

void ClassBalancer::end_window() {
  for (ClassGhosts& g : classes_) g.ghost_hits /= 2;
  for (uint64_t& h : segment_hits_) h /= 2;
}

void ClassBalancer::forget_segment(uint32_t seg) {
  if (seg < segment_hits_.size()) segment_hits_[seg] = 0;
}

uint64_t ClassBalancer::segment_hits(uint32_t seg) const {
  return seg < segment_hits_.size() ? segment_hits_[seg] : 0;
}

int ClassBalancer::best_receiver() const {
  int best = -1;
  for (uint32_t c = 0; c < classes_.size(); ++c)
    if (classes_[c].ghost_hits > 0 && (best < 0 || gain(c) > gain(static_cast<uint32_t>(best))))
      best = static_cast<int>(c);
  return best;
}

}  // namespace moepool
