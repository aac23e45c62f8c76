// Locality measures of a routing trace, defined as ../shared/traces/README.md measures
// them, so synthetic traces can be compared with real ones.
// Thread safety: a free function over an immutable Trace; any thread may call it.
#pragma once

#include <cstdint>

#include "common/trace.h"

namespace moepool {

struct TraceLocality {
  // Share of all selections taken by a layer's most used 10% / 25% of experts (fractional
  // expert counts interpolate), averaged over layers. Uniform routing gives 0.10 / 0.25.
  double top10_share = 0;
  double top25_share = 0;
  // Share of a step's experts that the previous step of the same sequence used at the
  // same layer. Uniform routing gives top_k / experts.
  double reuse = 0;
  // Share of a step's layer l+1 experts guessed by the top_k highest scores of a
  // transition table (counts of layer l expert a with layer l+1 expert b in one step,
  // built from the same steps) summed over the step's layer l experts.
  double xlayer = 0;
};

// Measures the first `max_steps` steps (all if 0) of `trace`.
TraceLocality measure_locality(const Trace& trace, uint64_t max_steps = 0);

}  // namespace moepool
