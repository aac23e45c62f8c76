// The sources moepool-sim replays: recorded traces (--trace PREFIX) and synthetic ones
// (--synthetic SPEC, common/synthetic_trace.h, parsed as moepool-bench parses it).
// Thread safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/trace.h"

namespace moepool::sim {

// Steps per worker of a synthetic source when neither --steps nor the spec's steps= says.
inline constexpr uint64_t kDefaultSyntheticSteps = 5000;

// Generates the synthetic trace `spec_text` describes for `workers` workers replaying
// `steps_per_worker` steps each (0 = the spec's steps= if it has one, else
// kDefaultSyntheticSteps). Unless the spec sets seq=, the trace is one sequence per worker,
// so build_stream() gives worker w the w-th of them: workers of one model share its
// popularity law, as replicas of one model do. Errors name the spec and the key at fault.
Result<Trace> make_synthetic_source(const std::string& spec_text, uint64_t steps_per_worker,
                                    uint32_t workers);

}  // namespace moepool::sim
