// The daemon's own prefetch: after each Acquire of MoE layer L by a session, learns which
// of layer L's experts followed that session's experts of the `distance` MoE layers
// before it in the same step (ExpertPredictor, one table per layer and distance for all
// sessions), and prefetches what the next `distance` MoE layers will likely want, nearest
// first: per layer up to as many guesses as the request named, each with p >=
// min_probability, handed to `issue` with their probabilities (the cache admits them
// through the policy). This is what moepool-sim does with prefetch on
// (tools/sim/cache_sim.cpp, --prefetch-distance), so bench/policy applies.
// Thread safety: every method may be called from any thread (one internal mutex); `issue`
// is called without it held.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "daemon/expert_predictor.h"
#include "daemon/model.h"

namespace moepool {

class Prefetcher {
 public:
  using Issue = std::function<void(const std::shared_ptr<Model>& model, uint32_t layer,
                                   std::vector<uint32_t> experts,
                                   std::vector<double> probabilities)>;
  Prefetcher(double min_probability, uint32_t distance, Issue issue);

  // Session `session` demanded `experts` of `layer` of `model`. Experts the layer does not
  // have make the call do nothing (the Acquire fails with the reason).
  void on_acquire(uint64_t session, const std::shared_ptr<Model>& model, uint32_t layer,
                  const std::vector<uint32_t>& experts);
  // Forgets the routing of sessions `alive` says are gone.
  void forget_sessions(const std::function<bool(uint64_t)>& alive);

 private:
  struct Prev {
    int pos = -1;  // MoE layer position (index into catalog.layers())
    std::vector<uint32_t> experts;
  };
  double min_probability_;
  uint32_t distance_;
  Issue issue_;
  std::mutex mu_;
  ExpertPredictor predictor_;
  // By (session, model id): that session's last `distance_` requests of this step.
  std::map<std::pair<uint64_t, uint64_t>, std::deque<Prev>> prev_;
};

}  // namespace moepool
