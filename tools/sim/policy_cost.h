// What a residency policy costs the daemon per demanded expert: the demand stream is
// replayed once on a cache of `capacity` slots (or io.budget_bytes) to record the calls
// ExpertCache makes under its lock (on_access for every expert; on a miss victim() with
// the request's keys protected, erase() of each victim, insert()), then that call log is
// replayed `runs` times against a fresh policy and only those calls are timed (thread CPU
// time, so preemption on a shared machine does not count).
// Thread safety: a pure function over its arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "tools/sim/replay_stream.h"
#include "tools/sim/sim_result.h"

namespace moepool::sim {

struct PolicyCost {
  std::string policy;
  uint64_t accesses = 0;          // demanded experts per run
  uint64_t misses = 0;            // of those, not resident (victim + erase + insert)
  std::vector<double> ns_per_access;  // one per timed run
  double median_ns() const;
};

// Fails if `policy` is not a make_policy() name or `runs` is 0.
Result<PolicyCost> measure_policy_cost(const ReplayStream& stream, const std::string& policy,
                                       uint64_t capacity, const IoModel& io, uint32_t runs);

}  // namespace moepool::sim
