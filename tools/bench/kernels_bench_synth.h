// The synthetic MoE layer `moepool-bench kernels` measures: named shapes (DeepSeek, Qwen3,
// a small one for lavapipe), the slot layout a pool would use (each expert's gate, up and
// down back to back in one slot, slots packed into segments), valid random expert bytes
// (finite f16 scales of sensible magnitude, random quants) and random routings.
// Everything is a pure function of its inputs and a seed; any thread may call them (the
// fill functions on disjoint output ranges in parallel).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/ggml_types.h"
#include "moepool/status.h"

namespace moepool::bench {

// One MoE layer's shape: n_experts experts of gate/up [n_ff][n_embd] and down [n_embd][n_ff].
struct LayerShape {
  std::string name;  // "deepseek", "qwen3", "small"
  uint32_t n_experts = 0;
  uint32_t top_k = 0;
  uint32_t n_embd = 0;
  uint32_t n_ff = 0;
};

// Returns the named shape: deepseek (256 experts, top-8, n_embd 7168, n_ff 2048),
// qwen3 (Qwen3-30B-A3B: 128, top-8, 2048, 768) or small (16, top-4, 256, 256);
// InvalidArgument naming the text otherwise.
Result<LayerShape> layer_shape(std::string_view name);

// Where the layer's experts live: slot e holds expert e's gate, up, down in that order,
// slots `slot_stride` bytes apart, `slots_per_segment` slots per segment (no slot crosses
// a segment's end).
struct SlotLayout {
  GgmlType type = GgmlType::Q4_K;
  uint64_t gate_bytes = 0;  // = up_bytes
  uint64_t down_bytes = 0;
  uint64_t expert_bytes = 0;  // gate + up + down: what one expert's FFN reads
  uint64_t slot_stride = 0;   // expert_bytes rounded up to kSlotAlignment
  uint32_t slots_per_segment = 0;
  uint32_t segments = 0;
  std::vector<uint64_t> segment_bytes;  // bytes used in each segment

  uint32_t segment_of(uint32_t expert) const { return expert / slots_per_segment; }
  uint64_t offset_of(uint32_t expert) const {
    return uint64_t{expert % slots_per_segment} * slot_stride;
  }
  uint64_t total_bytes() const;
};

inline constexpr uint64_t kSlotAlignment = 4096;

// Lays out `shape`'s experts of `type` (Q4_K, Q8_0 or F16) in segments of at most
// `max_segment_bytes`. InvalidArgument when a row is not whole blocks or one slot does not
// fit a segment (both named).
Result<SlotLayout> slot_layout(const LayerShape& shape, GgmlType type, uint64_t max_segment_bytes);

// Writes `bytes` bytes of projection data of `type` to `out`, `out` being at byte
// `offset` (a multiple of the type's block bytes) of the projection identified by `key`:
// random bytes from a counter-based generator (so any split of a projection into ranges
// gives the same bytes), then per block valid scales: Q4_K d and dmin in [2^-10, 2^-6),
// Q8_0 d in [2^-9, 2^-5), every F16 weight finite in [2^-7, 2^-3) in magnitude.
void fill_projection(GgmlType type, uint64_t key, uint64_t offset, std::span<uint8_t> out);

// The key of expert `expert`'s projection `proj` (0 gate, 1 up, 2 down) under `seed`.
uint64_t projection_key(uint64_t seed, uint32_t expert, uint32_t proj);

// Writes expert `expert`'s whole slot content (gate, up, down; expert_bytes) to `out`,
// splitting the work over `threads` threads.
void fill_expert(const SlotLayout& layout, uint64_t seed, uint32_t expert, uint8_t* out,
                 uint32_t threads);

// Random routings: `count` batches of `n_tokens` tokens, each token `top_k` distinct
// experts of `n_experts` with weights summing to 1. With skew > 0 experts are drawn from a
// Zipf(skew) law over a random permutation (popular experts). With avoid_previous, each
// batch draws from the experts the previous batch did not use, where enough remain (so a
// GPU's L2 cache does not serve one batch the previous batch's weights).
struct Routing {
  std::vector<uint32_t> ids;      // [n_tokens][top_k]
  std::vector<float> weights;     // [n_tokens][top_k]
  uint32_t distinct_experts = 0;  // experts this batch touches
};
std::vector<Routing> make_routings(uint32_t count, uint32_t n_tokens, uint32_t top_k,
                                   uint32_t n_experts, double skew, bool avoid_previous,
                                   uint64_t seed);

// `n` floats uniform in [-1, 1).
std::vector<float> random_activations(uint64_t n, uint64_t seed);

}  // namespace moepool::bench
