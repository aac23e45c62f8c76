// Belady's MIN, the offline optimum of demand caching: on a miss with a full cache it
// evicts the resident expert whose next demand lies farthest in the future, never one of
// the current layer request's (working-set protection, as the online policies get).
// Demand-only, so its stall-free rate equals its hit rate.
// Thread safety: a pure function.
#pragma once

#include <cstdint>

#include "tools/sim/replay_stream.h"
#include "tools/sim/sim_result.h"

namespace moepool::sim {

SimResult run_belady(const ReplayStream& stream, uint64_t capacity, const IoModel& io);

}  // namespace moepool::sim
