// The int8 activations of the Q4_K decode kernels (kernels/shaders/moe_act_i8.glsl) on the
// CPU: each block of 32 values becomes d * q with q = roundEven(v * (127 / amax)) in float
// (|q| <= 127) and d = amax / 127. x is quantized here, on the host, and uploaded that way
// (MoeGpu); h is quantized by the gate+up kernel with the same formula; the reference uses
// round_to_q8_blocks so it computes what the kernels compute. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <span>

namespace moepool::kernels {

// One quantized block, as the kernels hold it: q[0..32) and meta (d, d * sum q[0..16),
// d * sum q[16..32), 0) (the half sums are what Q4_K's min term multiplies).
struct Q8Block {
  int8_t q[32];
  float meta[4];
};

// Quantizes v[0..32) as the kernels do.
Q8Block quantize_q8_block(const float* v);

// Replaces every block of 32 values of v (its size a multiple of 32) by d * q, computed in
// float as the kernels do; the tail past the last whole block is left as it is.
void round_to_q8_blocks(std::span<double> v);

// x (n_blocks * 32 floats) quantized into the layout the int8 gate+up kernel reads: the
// blocks' quants (32 bytes each, in order) into `quants`, their meta (16 bytes each) into
// `meta`. Sizes: quants n_blocks * 32 bytes, meta n_blocks * 4 floats.
void quantize_q8_rows(std::span<const float> x, std::span<uint8_t> quants, std::span<float> meta);

}  // namespace moepool::kernels
