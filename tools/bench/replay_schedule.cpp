// Worker step schedules over a trace's sequences.
#include "tools/bench/replay_schedule.h"

namespace moepool::bench {

std::vector<uint64_t> replay_schedule(const Trace& trace, uint64_t first_sequence, uint64_t steps) {
  std::vector<uint64_t> out;
  const auto& seqs = trace.sequences();
  uint64_t covered = 0;
  for (const TraceSequence& s : seqs) covered += s.n_tokens;
  if (covered == 0) return out;  // every sequence is empty: nothing to replay
  out.reserve(steps);
  for (size_t i = first_sequence % seqs.size(); out.size() < steps; i = (i + 1) % seqs.size()) {
    const TraceSequence& s = seqs[i];
    for (uint64_t t = 0; t < s.n_tokens && out.size() < steps; ++t) out.push_back(s.offset + t);
  }
  return out;
}

}  // namespace moepool::bench
