// Replays a stream through a ResidencyPolicy (daemon/policy.h, the daemon's own code) on
// a cache of `capacity` experts with simulated I/O time (IoModel), optionally with the
// daemon's online next-layer predictor issuing prefetches that enter through admit().
// Thread safety: a pure function over its arguments.
#pragma once

#include <cstdint>

#include "daemon/policy.h"
#include "tools/sim/replay_stream.h"
#include "tools/sim/sim_result.h"

namespace moepool::sim {

struct PrefetchOptions {
  bool enabled = false;
  uint32_t max_guesses = 0;      // per layer request; 0 = the request's top_k
  double min_probability = 0.5;  // guesses below this are not read
  uint32_t max_queued = 0;       // prefetch reads waiting per worker; 0 = (distance+1) x top_k
  // Guess layers L+1 .. L+distance after layer L (each from its own learned table), so a
  // read can start up to `distance` layers before its use; 1 = the next layer only.
  uint32_t distance = 1;
  // Skip a guess whose read, queued behind the channel's backlog, would arrive after its
  // layer is expected to start (the worker's average time between layers ahead).
  bool deadline = false;
};

SimResult run_policy(const ReplayStream& stream, ResidencyPolicy& policy, uint64_t capacity,
                     const IoModel& io, const PrefetchOptions& prefetch);

}  // namespace moepool::sim
