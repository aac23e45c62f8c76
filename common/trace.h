// MoE routing traces: which experts a model picked, decode step by decode step and layer
// by layer. A trace is loaded from files (prefix P: P.json for the shape and sequences,
// P.experts.u8.zst for uint8[steps][layers][top_k] expert ids, P.weights.f16.zst for the
// optional router weights) or generated (common/synthetic_trace.h); both give a Trace.
// Thread safety: immutable once built; any thread may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace moepool {

// Expert ids are stored as uint8, so a trace has at most this many experts per layer.
inline constexpr uint32_t kTraceMaxExperts = 256;

struct TraceShape {
  uint32_t layers = 0;
  uint32_t experts = 0;  // per layer
  uint32_t top_k = 0;    // experts picked per step and layer
  uint64_t steps = 0;    // decode steps (tokens)
};

// A run of consecutive steps of one prompt, in time order: steps [offset, offset+n_tokens).
struct TraceSequence {
  uint64_t offset = 0;
  uint64_t n_tokens = 0;
  std::string dataset;  // "" when the file does not say
};

class Trace {
 public:
  Trace() = default;

  // Loads the trace with file prefix `prefix`; router weights are read only if
  // `with_weights` (and then P.weights.f16.zst must exist). Errors name the file and the
  // field, byte offset, step or layer at fault.
  static Result<Trace> load(const std::string& prefix, bool with_weights = false);

  // Builds a trace from expert ids laid out [steps][layers][top_k]; checks the size
  // against `shape`, every id against shape.experts and every sequence against steps.
  // An empty `sequences` means one sequence covering every step.
  static Result<Trace> from_ids(std::string name, TraceShape shape,
                                std::vector<TraceSequence> sequences, std::vector<uint8_t> ids);

  const std::string& name() const { return name_; }  // the prefix's file name or a spec
  const TraceShape& shape() const { return shape_; }
  const std::vector<TraceSequence>& sequences() const { return sequences_; }

  // Returns the layers * top_k expert ids of step `s` (s < steps), layer-major.
  const uint8_t* step(size_t s) const { return ids_.data() + s * step_stride(); }
  // Returns the top_k expert ids of step `s` at layer `layer`.
  const uint8_t* step_layer(size_t s, uint32_t layer) const {
    return step(s) + size_t{layer} * shape_.top_k;
  }
  size_t step_stride() const { return size_t{shape_.layers} * shape_.top_k; }

  bool has_weights() const { return !weights_.empty(); }
  // Returns the layers * top_k router weights of step `s` as raw IEEE float16 bits, or
  // nullptr if the weights were not loaded.
  const uint16_t* step_weights(size_t s) const {
    return weights_.empty() ? nullptr : weights_.data() + s * step_stride();
  }

 private:
  std::string name_;
  TraceShape shape_;
  std::vector<TraceSequence> sequences_;
  std::vector<uint8_t> ids_;
  std::vector<uint16_t> weights_;
};

// Returns the float value of IEEE half-precision bits `h`.
float f16_to_float(uint16_t h);

// Decompresses a whole zstd file (one or more frames) into memory. Fails if the file is
// unreadable, truncated or corrupt, or if it would decompress to more than `max_bytes`.
Result<std::vector<uint8_t>> read_zstd_file(const std::string& path, uint64_t max_bytes);

}  // namespace moepool
