// The daemon's own prefetch: after each Acquire of layer L by a session, learns which of
// layer L's experts followed that session's layer L-1 experts (ExpertPredictor, one table
// for all sessions) and prefetches the experts layer L+1 will likely want: up to as many
// guesses as the request named, each with p >= min_probability, handed to `issue` with
// their probabilities (the cache admits them through the policy). This is what
// moepool-sim does with prefetch on (tools/sim/cache_sim.cpp), so bench/policy applies.
// Thread safety: every method may be called from any thread (one internal mutex); `issue`
// is called without it held.
#pragma once

#include <cstdint>
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
  Prefetcher(double min_probability, Issue issue);

  // Session `session` demanded `experts` of `layer` of `model`. Experts the layer does not
  // have make the call do nothing (the Acquire fails with the reason).
  void on_acquire(uint64_t session, const std::shared_ptr<Model>& model, uint32_t layer,
                  const std::vector<uint32_t>& experts);
  // Forgets the routing of sessions `alive` says are gone.
  void forget_sessions(const std::function<bool(uint64_t)>& alive);

 private:
  struct Prev {
    uint32_t layer = ~0u;
    std::vector<uint32_t> experts;
  };
  double min_probability_;
  Issue issue_;
  std::mutex mu_;
  ExpertPredictor predictor_;
  std::map<std::pair<uint64_t, uint64_t>, Prev> prev_;  // by (session, model id)
};

}  // namespace moepool
