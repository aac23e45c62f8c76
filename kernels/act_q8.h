// The int8 activations of the Q4_K decode kernels (kernels/shaders/moe_act_i8.glsl) on the
// CPU, so the reference can compute exactly what those kernels compute: each block of 32
// values becomes d * q with q = roundEven(v * (127 / amax)) in float (|q| <= 127) and
// d = amax / 127. Pure functions; any thread.
#pragma once

#include <span>

namespace moepool::kernels {

// Replaces every block of 32 values of v (its size a multiple of 32) by d * q, computed in
// float as the GPU does; the tail past the last whole block is left as it is.
void round_to_q8_blocks(std::span<double> v);

}  // namespace moepool::kernels
