// Locality measures of a routing trace (skew, step-to-step reuse, cross-layer guessing).
#include "common/trace_locality.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moepool {
namespace {

// Share of `counts`' total held by its top `fraction` entries (fractional entry counts
// interpolate between the whole entries around them).
double top_share(std::vector<uint64_t> counts, double fraction) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0;
  std::sort(counts.begin(), counts.end(), std::greater<>());
  double want = fraction * static_cast<double>(counts.size());
  double whole = std::floor(want);
  double sum = 0;
  size_t i = 0;
  for (; i < static_cast<size_t>(whole) && i < counts.size(); ++i) sum += counts[i];
  if (i < counts.size()) sum += (want - whole) * counts[i];
  return sum / static_cast<double>(total);
}

}  // namespace

TraceLocality measure_locality(const Trace& trace, uint64_t max_steps) {
  const TraceShape& sh = trace.shape();
  const uint64_t steps = max_steps && max_steps < sh.steps ? max_steps : sh.steps;
  const uint32_t k = sh.top_k, n = sh.experts, layers = sh.layers;
  TraceLocality out;
  if (steps == 0) return out;

  std::vector<uint8_t> seq_start(steps, 0);
  seq_start[0] = 1;
  for (const TraceSequence& s : trace.sequences())
    if (s.offset < steps) seq_start[s.offset] = 1;

  // Popularity.
  double top10 = 0, top25 = 0;
  for (uint32_t l = 0; l < layers; ++l) {
    std::vector<uint64_t> counts(n, 0);
    for (uint64_t s = 0; s < steps; ++s) {
      const uint8_t* ids = trace.step_layer(s, l);
      for (uint32_t j = 0; j < k; ++j) ++counts[ids[j]];
    }
    top10 += top_share(counts, 0.10);
    top25 += top_share(counts, 0.25);
  }
  out.top10_share = top10 / layers;
  out.top25_share = top25 / layers;

  // Step-to-step reuse at the same layer.
  uint64_t reused = 0, compared = 0;
  for (uint64_t s = 1; s < steps; ++s) {
    if (seq_start[s]) continue;
    for (uint32_t l = 0; l < layers; ++l) {
      const uint8_t* cur = trace.step_layer(s, l);
      const uint8_t* prev = trace.step_layer(s - 1, l);
      for (uint32_t j = 0; j < k; ++j) {
        compared++;
        if (std::find(prev, prev + k, cur[j]) != prev + k) reused++;
      }
    }
  }
  out.reuse = compared ? static_cast<double>(reused) / static_cast<double>(compared) : 0;

  // Cross-layer guessing from an in-sample transition table.
  if (layers >= 2) {
    uint64_t guessed = 0, total = 0;
    std::vector<uint64_t> table(size_t{n} * n);
    std::vector<uint64_t> score(n);
    std::vector<uint32_t> order(n);
    for (uint32_t l = 0; l + 1 < layers; ++l) {
      std::fill(table.begin(), table.end(), 0);
      for (uint64_t s = 0; s < steps; ++s) {
        const uint8_t* a = trace.step_layer(s, l);
        const uint8_t* b = trace.step_layer(s, l + 1);
        for (uint32_t i = 0; i < k; ++i)
          for (uint32_t j = 0; j < k; ++j) ++table[size_t{a[i]} * n + b[j]];
      }
      for (uint64_t s = 0; s < steps; ++s) {
        const uint8_t* a = trace.step_layer(s, l);
        const uint8_t* b = trace.step_layer(s, l + 1);
        std::fill(score.begin(), score.end(), 0);
        for (uint32_t i = 0; i < k; ++i)
          for (uint32_t e = 0; e < n; ++e) score[e] += table[size_t{a[i]} * n + e];
        for (uint32_t e = 0; e < n; ++e) order[e] = e;
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](uint32_t x, uint32_t y) {
                            return score[x] != score[y] ? score[x] > score[y] : x < y;
                          });
        for (uint32_t j = 0; j < k; ++j) {
          total++;
          if (std::find(order.begin(), order.begin() + k, b[j]) != order.begin() + k) guessed++;
        }
      }
    }
    out.xlayer = total ? static_cast<double>(guessed) / static_cast<double>(total) : 0;
  }
  return out;
}

}  // namespace moepool
