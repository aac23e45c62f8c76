// Measures what memory is worth to each slot size class, so that the ExpertCache can move
// whole segments between classes by measured benefit (the way memcached's slab automover
// and CacheLib's pool rebalancer do). The gain of giving class c one more segment is
// estimated from its ghost hits: demand misses on keys c evicted recently. The ghost list
// remembers as many keys as the class could hold in the whole pool, and the gain per
// segment is the ghost hits spread over that many segments' worth — an average marginal
// gain that also sees past a cliff (a cycle a little larger than memory gains nothing from
// one segment but everything from a few). The loss of taking a segment away is the hits
// its slots served. Both are counted over a window of demanded experts and halve at each window's
// end, so old measurements fade. The cache moves a segment when the best class's ghost
// hits clearly exceed the cheapest segment's hits (see should_move).
// Thread safety: not thread-safe; the ExpertCache calls it under its lock.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "daemon/policy.h"

namespace moepool {

class ClassBalancer {
 public:
  // Class c's ghost list remembers the last `slots` keys it evicted; `per_segment` of its
  // slots fit in one segment.
  void set_ghost_capacity(uint32_t c, uint64_t slots, double per_segment);
  // Demanded experts per window (at least 1).
  void set_window(uint64_t accesses) { window_ = accesses ? accesses : 1; }

  // Class c evicted `key` (to make room or because a segment moved away).
  void on_evict(uint32_t c, const PolicyKey& key);
  // A demand miss of `key` in class c: a ghost hit if c evicted it recently.
  void on_miss(uint32_t c, const PolicyKey& key);
  // A demand hit served from a slot starting in segment `seg`.
  void on_hit(uint32_t seg);
  // Counts one demanded expert; true when a window just ended (then call end_window()
  // after deciding on a move).
  bool tick();
  // Halves every counter (old measurements fade).
  void end_window();
  // Segment `seg` changed class: its hits no longer describe it.
  void forget_segment(uint32_t seg);

  uint64_t ghost_hits(uint32_t c) const { return c < classes_.size() ? classes_[c].ghost_hits : 0; }
  // Ghost hits one more segment of class c is estimated to turn into hits (per window).
  double gain(uint32_t c) const;
  uint64_t segment_hits(uint32_t seg) const;
  // The class with the highest gain, if any has a ghost hit.
  int best_receiver() const;
  // Whether moving a segment that served `donor_hits` to a class whose gain is `gain`
  // pays, with hysteresis so that two classes of equal worth do not trade segments back
  // and forth: gain > 1.25 * donor_hits + 2.
  static bool should_move(double gain, uint64_t donor_hits) {
    return gain > 1.25 * static_cast<double>(donor_hits) + 2.0;
  }

 private:
  struct ClassGhosts {
    uint64_t capacity = 0;
    double per_segment = 1;
    std::list<PolicyKey> order;  // evicted keys still remembered, oldest first
    std::unordered_map<PolicyKey, std::list<PolicyKey>::iterator, PolicyKeyHash> where;
    uint64_t ghost_hits = 0;
  };
  ClassGhosts& cls(uint32_t c);
  std::vector<ClassGhosts> classes_;
  std::vector<uint64_t> segment_hits_;
  uint64_t window_ = 1024;
  uint64_t in_window_ = 0;
};

}  // namespace moepool
