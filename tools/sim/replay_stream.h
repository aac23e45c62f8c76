// The demand stream moepool-sim replays: every worker's layer requests (one per step and
// layer: the experts the router picked), interleaved round-robin one layer at a time
// across the workers that still have steps, so concurrent workers share one cache.
// Worker w of a trace replays the w-th of N contiguous groups of its sequences.
// Thread safety: immutable once built.
#pragma once

#include <cstdint>
#include <vector>

#include "common/trace.h"

namespace moepool::sim {

struct LayerRequest {
  uint32_t worker = 0;  // global worker index (over all traces)
  uint32_t model = 0;   // trace index, the PolicyKey's model
  uint32_t layer = 0;
  uint32_t first = 0;  // index of its first expert in ReplayStream::experts
  uint32_t count = 0;  // top_k
  bool last_layer = false;  // the step ends with this request
};

struct ReplayStream {
  std::vector<LayerRequest> requests;
  std::vector<uint32_t> experts;
  uint32_t workers = 0;
  uint64_t steps = 0;           // decode steps over all workers
  uint64_t total_experts = 0;   // distinct (model, layer, expert) keys the models have
  std::vector<uint64_t> model_steps;  // steps per model
};

// Builds the stream for `traces` (each `workers` workers), at most `max_steps` steps per
// worker (0 = all of its sequences).
ReplayStream build_stream(const std::vector<const Trace*>& traces, uint32_t workers,
                          uint64_t max_steps);

}  // namespace moepool::sim
