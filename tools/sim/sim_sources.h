// The sources moepool-sim replays: recorded traces (--trace PREFIX) and synthetic ones
// (--synthetic SPEC, common/synthetic_trace.h, parsed as moepool-bench parses it).
// Thread safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <cstddef>
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

// Sequences [first, last] of a recorded trace (0-based, inclusive), in order.
struct SequenceRange {
  uint64_t first = 0;
  uint64_t last = UINT64_MAX;  // UINT64_MAX: through the trace's last sequence
  bool all() const { return first == 0 && last == UINT64_MAX; }
};

// Parses "A-B", "A-" or "A" (one sequence) into a range; errors name the text.
Result<SequenceRange> parse_sequence_range(const std::string& text);

// Returns a copy of `trace` holding only the sequences in `range` (offsets renumbered),
// so held-out sequences can be replayed. Fails if the range starts past the last
// sequence or is empty.
Result<Trace> select_sequences(const Trace& trace, const SequenceRange& range);

}  // namespace moepool::sim
