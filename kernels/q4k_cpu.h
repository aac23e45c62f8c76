// The CPU fast path of one routed MoE FFN for decode (one or a few tokens) with Q4_K experts,
// in the manner of ggml's CPU Q4_K x Q8_K dot product (written anew, not copied):
//  - each activation row (x for gate/up, then silu(gate)*up for down) is quantized to
//    "Q8_K-like" blocks of 256: one float scale d = max|v| / 127 and 256 int8 values
//    q = round(v / d), plus the sum of the q of each 32-value sub-block;
//  - a Q4_K row times such a row is, per 256-block, two exact integer sums:
//    sumi = sum_j scale_j * sum_l q4 * q8 and summ = sum_j min_j * sum_l q8 (sub-blocks j),
//    combined in float as d8 * (d4 * sumi - dmin4 * summ) and summed over the blocks in order;
//  - the AVX2 path computes the same integer sums with vpmaddubsw/vpmaddwd, then combines
//    them with the same scalar float code, so scalar and AVX2 give bit-identical results.
// Error: the 8-bit activation quantization (the error ggml's CPU path has too) makes the result
// differ from moe_ffn_reference by an NMSE of about 3e-4 on random Gaussian activations, 1e-3
// with outliers in x; mostly from quantizing the heavy-tailed h (see kernels_cpu_test).
// One thread; pure function, any thread may call it.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/moe_reference.h"
#include "moepool/status.h"

namespace moepool::kernels {

enum class CpuPath {
  kAuto,    // AVX2 when the CPU has AVX2 and FMA, else scalar
  kScalar,  // portable C++
  kAvx2,    // AVX2 (FailedPrecondition on a CPU without AVX2 and FMA)
};

// Returns whether this CPU can run CpuPath::kAvx2.
bool cpu_has_avx2();

// Returns "scalar" or "avx2": the path kAuto picks on this CPU.
const char* cpu_auto_path_name();

// Computes out[t][:] = sum_k weights[t][k] * FFN_{ids[t][k]}(x[t][:]) like moe_ffn_reference
// (same layouts; out is overwritten), for experts whose gate, up and down are all Q4_K.
// Fails with InvalidArgument (naming the field, expert and projection) on bad shapes or spans,
// an expert id out of range, a null projection, a projection not Q4_K, or n_embd or n_ff not a
// multiple of 256; with FailedPrecondition on kAvx2 where the CPU lacks AVX2/FMA.
Status moe_ffn_q4k_cpu(const MoeShape& shape, std::span<const ExpertWeights> experts,
                       std::span<const float> x, std::span<const uint32_t> ids,
                       std::span<const float> weights, std::span<float> out,
                       CpuPath path = CpuPath::kAuto);

}  // namespace moepool::kernels
