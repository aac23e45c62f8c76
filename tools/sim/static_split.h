// The best static split of one cache budget into private caches, one per model: the
// baseline a shared budget (every model's workers on one cache) must beat. Each private
// cache replays only its own model's stream (its own workers) through a fresh policy on
// its own simulated I/O channel; splits are searched in steps of 1/granularity of the
// budget, every model getting at least one step and one layer request's experts.
// Thread safety: a pure function over its arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/trace.h"
#include "tools/sim/cache_sim.h"
#include "tools/sim/sim_result.h"

namespace moepool::sim {

struct StaticSplitOptions {
  std::string policy = "default";  // make_policy() name each private cache runs
  PrefetchOptions prefetch;
  uint32_t workers = 1;            // per model, as build_stream() takes it
  uint64_t max_steps = 0;          // per worker, as build_stream() takes it
  uint32_t granularity = 16;       // the budget is split in steps of 1/granularity
};

struct StaticSplit {
  std::vector<uint64_t> capacities;  // experts per model, in trace order
  std::vector<SimResult> per_model;
  SimResult total;  // summed over the models (time_s too: the shared replay is serial)
};

// With io.budget_bytes > 0 the byte budget is split instead (each model's experts of
// io.bytes_of(model) bytes) and capacities are reported in experts.
// Returns the split of `capacity` experts over `traces` with the highest total demand
// hit rate (ties: stall-free rate). Fails if the policy name is unknown, or if no split
// gives every model room for one layer request (top_k).
Result<StaticSplit> best_static_split(const std::vector<const Trace*>& traces,
                                      uint64_t capacity, const IoModel& io,
                                      const StaticSplitOptions& options);

}  // namespace moepool::sim
