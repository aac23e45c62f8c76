// The CPU reference of one routed MoE FFN for a few tokens, the result the GPU kernels
// are checked against: for each token t and each of its routed experts e with router
// weight w, out[t] += w * down_e( silu(gate_e · x[t]) * (up_e · x[t]) ).
// Plain loops, double accumulation; pure function, any thread may call it.
#pragma once

#include <cstdint>
#include <span>

#include "common/ggml_types.h"
#include "moepool/status.h"

namespace moepool::kernels {

// The bytes of one expert's projection in its ggml type, row-major as in GGUF:
// gate and up are [n_ff rows][n_embd cols], down is [n_embd rows][n_ff cols]
// (the catalog's ProjTensor ne = {cols, rows, n_expert}).
struct ProjWeights {
  GgmlType type = GgmlType::F32;
  const void* data = nullptr;
};

// One routed expert's three projections.
struct ExpertWeights {
  ProjWeights gate;
  ProjWeights up;
  ProjWeights down;
};

struct MoeShape {
  uint32_t n_embd = 0;  // hidden size (columns of gate/up, rows of down)
  uint32_t n_ff = 0;    // expert FFN size (rows of gate/up, columns of down)
  uint32_t top_k = 0;   // experts per token
};

// Computes out[t][:] = sum_k weights[t][k] * FFN_{ids[t][k]}(x[t][:]) for every token.
// x and out are [n_tokens][n_embd] F32 (out is overwritten), ids and weights are
// [n_tokens][top_k], experts is indexed by expert id. Fails, naming the field, on an
// expert id out of range, a missing projection, an unsupported type or a row length
// that is not a multiple of its type's block size.
// int8_activations: x, and each h before down, are first rounded as the int8 decode kernels
// quantize them (kernels/act_q8.h), so the result is what those kernels compute, up to float
// rounding (and an h value rounding the other way at a tie).
Status moe_ffn_reference(const MoeShape& shape, std::span<const ExpertWeights> experts,
                         std::span<const float> x, std::span<const uint32_t> ids,
                         std::span<const float> weights, std::span<float> out,
                         bool int8_activations = false);

// The same result as moe_ffn_reference (equal to within rounding: only the order in which
// each token's top_k expert outputs are summed, in double, differs), computed the way the
// prefill GPU kernel is: expert-major over group_by_expert's tiles of at most `tile` routed
// (token, k) pairs; each tile dequantizes its expert's three projections once and applies
// them to every pair of the tile; results are accumulated per token in double. Fails as
// moe_ffn_reference does, and on tile == 0.
Status moe_prefill_reference(const MoeShape& shape, std::span<const ExpertWeights> experts,
                             std::span<const float> x, std::span<const uint32_t> ids,
                             std::span<const float> weights, uint32_t tile, std::span<float> out);

// Checks what every routed MoE FFN entry point takes: n_embd, n_ff and top_k > 0, x and
// out whole tokens of equal size, ids and weights n_tokens * top_k, every id in range, and
// each routed expert's projections present, of a dequant_supported type and whole blocks.
// The error names `fn` (the caller) and the bad field.
Status check_moe_args(const char* fn, const MoeShape& shape,
                      std::span<const ExpertWeights> experts, std::span<const float> x,
                      std::span<const uint32_t> ids, std::span<const float> weights,
                      std::span<float> out);

// Returns SiLU(v) = v / (1 + exp(-v)).
double silu(double v);

}  // namespace moepool::kernels
