// Synthetic routing traces with settable locality, for model shapes no real trace covers
// (DeepSeek, Qwen3, GLM: 128-256 experts per layer). Three properties can be set, as
// ../shared/traces/README.md measures them on real traces:
//   skew   popularity: layer l's experts are drawn from a Zipf(skew) law over a random
//          per-layer permutation, so each layer has its own hot experts (0 = uniform);
//   reuse  token-to-token reuse: each pick first takes, with this probability, an expert
//          the previous step used at the same layer;
//   xlayer cross-layer correlation: otherwise, with this probability, it takes the image
//          of one of this step's previous-layer experts under a fixed random map.
// Remaining picks come from the Zipf law. A step never picks one expert twice in a layer.
// The same spec and seed always give the same trace, on every platform.
// Thread safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/trace.h"

namespace moepool {

struct SyntheticTraceSpec {
  std::string preset = "custom";  // the named shape it started from
  uint32_t layers = 24;
  uint32_t experts = 32;
  uint32_t top_k = 4;
  uint64_t steps = 1000;
  double skew = 0.8;    // Zipf exponent, >= 0
  double reuse = 0.4;   // in [0, 1]
  double xlayer = 0.3;  // in [0, 1]
  uint64_t seed = 1;
  uint64_t sequence_tokens = 0;  // split into sequences this long; 0 = one sequence
};

// Parses "PRESET[,key=value...]" or "key=value[,key=value...]". Presets (MoE layers,
// experts, top-k): deepseek (58, 256, 8), qwen3 (94, 128, 8), gpt-oss (24, 32, 4),
// mixtral (32, 8, 2); their locality knobs are listed in synthetic_trace.cpp. Keys:
// layers, experts, top_k, steps, skew, reuse, xlayer, seed, seq. Errors name the key or
// value at fault.
Result<SyntheticTraceSpec> parse_synthetic_spec(std::string_view text);

// Returns the spec in the form parse_synthetic_spec() reads back.
std::string to_string(const SyntheticTraceSpec& spec);

// Generates the trace the spec describes; fails if a field is out of range (experts above
// kTraceMaxExperts, top_k above experts, probabilities outside [0, 1]).
Result<Trace> generate_synthetic_trace(const SyntheticTraceSpec& spec);

}  // namespace moepool
