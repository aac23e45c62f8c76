#include "kernels/moe_reference.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/act_q8.h"
#include "kernels/dequant.h"
#include "kernels/expert_groups.h"

namespace moepool::kernels {
namespace {

// Returns the status of a projection that cannot be read as [rows][cols] of its type.
Status check_proj(const ProjWeights& p, uint32_t cols, uint32_t expert, const char* what) {
  const std::string name = "expert " + std::to_string(expert) + " " + what;
  if (p.data == nullptr) return InvalidArgument(name + ": no weights (data is null)");
  if (!dequant_supported(p.type)) {
    return InvalidArgument(name + ": weight type " + std::string(ggml_type_name(p.type)) +
                           " is not supported (f32, f16, q8_0, q4_K are)");
  }
  if (!ggml_row_bytes(p.type, cols)) {
    return InvalidArgument(name + ": row of " + std::to_string(cols) +
                           " columns is not a multiple of the " +
                           std::string(ggml_type_name(p.type)) + " block size");
  }
  return Status::Ok();
}

}  // namespace

Status check_moe_args(const char* fn, const MoeShape& shape,
                      std::span<const ExpertWeights> experts, std::span<const float> x,
                      std::span<const uint32_t> ids, std::span<const float> weights,
                      std::span<float> out) {
  const uint64_t embd = shape.n_embd, ff = shape.n_ff, k = shape.top_k;
  const std::string f = fn;
  if (embd == 0 || ff == 0 || k == 0) {
    return InvalidArgument(f + ": n_embd, n_ff and top_k must be > 0");
  }
  if (x.size() % embd != 0) {
    return InvalidArgument(f + ": x has " + std::to_string(x.size()) +
                           " floats, not a multiple of n_embd " + std::to_string(embd));
  }
  const uint64_t n_tokens = x.size() / embd;
  if (out.size() != x.size()) {
    return InvalidArgument(f + ": out has " + std::to_string(out.size()) + " floats, x has " +
                           std::to_string(x.size()));
  }
  if (ids.size() != n_tokens * k || weights.size() != n_tokens * k) {
    return InvalidArgument(f + ": ids (" + std::to_string(ids.size()) + ") and weights (" +
                           std::to_string(weights.size()) +
                           ") must hold n_tokens * top_k = " + std::to_string(n_tokens * k));
  }
  for (uint64_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= experts.size()) {
      return InvalidArgument(f + ": ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                             " is out of range (" + std::to_string(experts.size()) +
                             " experts)");
    }
    const ExpertWeights& e = experts[ids[i]];
    MOEPOOL_RETURN_IF_ERROR(check_proj(e.gate, shape.n_embd, ids[i], "gate"));
    MOEPOOL_RETURN_IF_ERROR(check_proj(e.up, shape.n_embd, ids[i], "up"));
    MOEPOOL_RETURN_IF_ERROR(check_proj(e.down, shape.n_ff, ids[i], "down"));
  }
  return Status::Ok();
}

namespace {

// Returns sum_c row[c] * v[c] in double, c ascending (the one dot product both functions use).
double dot(const float* row, const double* v, uint64_t cols) {
  double acc = 0.0;
  for (uint64_t c = 0; c < cols; ++c) acc += static_cast<double>(row[c]) * v[c];
  return acc;
}

// y[r] = sum_c W[r][c] * v[c] for W [rows][cols] in its ggml type; row by row dequantized.
void matvec(const ProjWeights& p, uint32_t rows, uint32_t cols, const double* v, double* y) {
  const uint64_t row_bytes = *ggml_row_bytes(p.type, cols);
  std::vector<float> row(cols);
  for (uint32_t r = 0; r < rows; ++r) {
    const auto* src = static_cast<const uint8_t*>(p.data) + r * row_bytes;
    (void)dequant_row(p.type, src, cols, row.data());  // checked in check_proj
    y[r] = dot(row.data(), v, cols);
  }
}

// Dequantizes a whole [rows][cols] projection into `m` (resized to rows * cols).
void dequant_matrix(const ProjWeights& p, uint32_t rows, uint32_t cols, std::vector<float>& m) {
  const uint64_t row_bytes = *ggml_row_bytes(p.type, cols);
  m.resize(uint64_t{rows} * cols);
  for (uint32_t r = 0; r < rows; ++r) {
    const auto* src = static_cast<const uint8_t*>(p.data) + r * row_bytes;
    (void)dequant_row(p.type, src, cols, m.data() + uint64_t{r} * cols);  // checked
  }
}

}  // namespace

double silu(double v) { return v / (1.0 + std::exp(-v)); }

Status moe_ffn_reference(const MoeShape& shape, std::span<const ExpertWeights> experts,
                         std::span<const float> x, std::span<const uint32_t> ids,
                         std::span<const float> weights, std::span<float> out,
                         bool int8_activations) {
  MOEPOOL_RETURN_IF_ERROR(
      check_moe_args("moe_ffn_reference", shape, experts, x, ids, weights, out));
  const uint64_t embd = shape.n_embd, ff = shape.n_ff, k = shape.top_k;
  const uint64_t n_tokens = x.size() / embd;
  std::vector<double> xt(embd), g(ff), u(ff), h(ff), d(embd), acc(embd);
  for (uint64_t t = 0; t < n_tokens; ++t) {
    for (uint64_t c = 0; c < embd; ++c) xt[c] = x[t * embd + c];
    if (int8_activations) round_to_q8_blocks(xt);
    std::fill(acc.begin(), acc.end(), 0.0);
    for (uint64_t j = 0; j < k; ++j) {
      const ExpertWeights& e = experts[ids[t * k + j]];
      const double w = weights[t * k + j];
      matvec(e.gate, shape.n_ff, shape.n_embd, xt.data(), g.data());
      matvec(e.up, shape.n_ff, shape.n_embd, xt.data(), u.data());
      for (uint64_t r = 0; r < ff; ++r) h[r] = silu(g[r]) * u[r];
      if (int8_activations) {
        for (double& v : h) v = static_cast<float>(v);  // the GPU's h is a float
        round_to_q8_blocks(h);
      }
      matvec(e.down, shape.n_embd, shape.n_ff, h.data(), d.data());
      for (uint64_t r = 0; r < embd; ++r) acc[r] += w * d[r];
    }
    for (uint64_t r = 0; r < embd; ++r) out[t * embd + r] = static_cast<float>(acc[r]);
  }
  return Status::Ok();
}

Status moe_prefill_reference(const MoeShape& shape, std::span<const ExpertWeights> experts,
                             std::span<const float> x, std::span<const uint32_t> ids,
                             std::span<const float> weights, uint32_t tile, std::span<float> out) {
  MOEPOOL_RETURN_IF_ERROR(
      check_moe_args("moe_prefill_reference", shape, experts, x, ids, weights, out));
  if (experts.size() > UINT32_MAX) {
    return InvalidArgument("moe_prefill_reference: more than 2^32-1 experts");
  }
  Result<ExpertGroups> groups =
      group_by_expert(ids, shape.top_k, static_cast<uint32_t>(experts.size()), tile);
  if (!groups.ok()) return groups.status();
  const uint64_t embd = shape.n_embd, ff = shape.n_ff, k = shape.top_k;
  const uint64_t n_tokens = x.size() / embd;
  std::vector<double> acc(n_tokens * embd, 0.0);
  std::vector<float> gate, up, down;
  std::vector<double> xt(embd), h(ff);
  for (const ExpertTile& t : groups->tiles) {
    const ExpertWeights& e = experts[t.expert];
    dequant_matrix(e.gate, shape.n_ff, shape.n_embd, gate);
    dequant_matrix(e.up, shape.n_ff, shape.n_embd, up);
    dequant_matrix(e.down, shape.n_embd, shape.n_ff, down);
    for (uint32_t p = t.first_pair; p < t.first_pair + t.n_pairs; ++p) {
      const RoutedPair pair = groups->pairs[p];
      const double w = weights[pair.token * k + pair.k];
      for (uint64_t c = 0; c < embd; ++c) xt[c] = x[pair.token * embd + c];
      for (uint64_t r = 0; r < ff; ++r) {
        const double g = dot(gate.data() + r * embd, xt.data(), embd);
        const double u = dot(up.data() + r * embd, xt.data(), embd);
        h[r] = silu(g) * u;
      }
      double* a = acc.data() + pair.token * embd;
      for (uint64_t r = 0; r < embd; ++r) a[r] += w * dot(down.data() + r * ff, h.data(), ff);
    }
  }
  for (uint64_t i = 0; i < acc.size(); ++i) out[i] = static_cast<float>(acc[i]);
  return Status::Ok();
}

}  // namespace moepool::kernels
