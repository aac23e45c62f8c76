// Bit-exact dequantization to float of one row of ggml weights (Q4_K, Q8_0, F16), per
// ggml's block layouts: the CPU reference the GPU kernels' dequantization is checked against.
// Pure functions; any thread may call them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/ggml_types.h"
#include "moepool/status.h"

namespace moepool::kernels {

// ggml's block layouts (little-endian, packed, no padding).
// Q8_0: 32 weights; w[i] = d * qs[i].
inline constexpr uint32_t kQ8_0BlockSize = 32;
inline constexpr uint32_t kQ8_0BlockBytes = 2 + 32;  // f16 d, int8 qs[32]
// Q4_K: 256 weights in 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min;
// w = d * scale[s] * q - dmin * min[s], q a 4-bit value.
inline constexpr uint32_t kQ4_KBlockSize = 256;
inline constexpr uint32_t kQ4_KScaleBytes = 12;
inline constexpr uint32_t kQ4_KBlockBytes = 2 + 2 + kQ4_KScaleBytes + 128;  // d, dmin, scales, qs

// Returns the float value of IEEE half `h`, exactly: subnormals, +-0 and +-inf kept,
// a NaN stays a NaN with its payload (made quiet, as F16C hardware does).
float f16_to_f32(uint16_t h);

// Returns the 6-bit scale and min of sub-block `j` (0..7) of a Q4_K block's 12 scale bytes.
void q4_k_scale_min(uint32_t j, const uint8_t* scales, uint8_t* scale, uint8_t* min);

// Dequantizes one block of each type into `out` (block_size floats).
void dequant_block_q8_0(const uint8_t* block, float* out);
void dequant_block_q4_k(const uint8_t* block, float* out);

// Dequantizes `n` elements of type `type` starting at `row` into `out`. Fails on a type
// other than F32, F16, Q8_0 and Q4_K or an `n` not a multiple of the type's block size.
Status dequant_row(GgmlType type, const void* row, size_t n, float* out);

// Returns whether dequant_row supports `type`.
bool dequant_supported(GgmlType type);

}  // namespace moepool::kernels
