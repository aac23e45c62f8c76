// Which trace steps a worker replays: starting at one sequence and continuing into the
// following ones (wrapping around the trace) until it has the steps it was asked for.
// Thread safety: a pure function.
#pragma once

#include <cstdint>
#include <vector>

#include "common/trace.h"

namespace moepool::bench {

// Returns `steps` step indices of `trace`, starting at the first step of sequence
// `first_sequence` (modulo the sequence count) and running through the sequences in
// order. Steps not covered by any sequence are never replayed.
std::vector<uint64_t> replay_schedule(const Trace& trace, uint64_t first_sequence, uint64_t steps);

}  // namespace moepool::bench
