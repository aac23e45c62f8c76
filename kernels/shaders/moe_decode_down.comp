// variants: Q4_K Q8_0 F16
// Decode, second half: for each of the workgroup's ROWS rows r of n_embd and each token t,
// out[t][r] = sum over k (in k order) of w[t][k] * (down_e[r] . h[t * top_k + k]).
// One subgroup per row; each lane keeps its share of the weighted sum over k, one
// subgroupAdd per token. No atomics: every out element is written once.
#version 450
#include "moe_weights.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 2) const uint ROWS = 4;

layout(set = 0, binding = 1) readonly buffer Pairs { uint pairs[]; };  // as in gate_up
layout(set = 0, binding = 2) readonly buffer H { vec4 hv[]; };         // [n_pairs][n_ff]
layout(set = 0, binding = 3) writeonly buffer Out { float o[]; };      // [n_tokens][n_embd]

layout(push_constant) uniform Push {
  uint n_embd;
  uint n_ff;
  uint top_k;
  uint n_tokens;
} pc;

vec4 load_xv(uint i) { return hv[i]; }

void main() {
  const uint rb = row_bytes(pc.n_ff);
  const uint units = units_per_row(pc.n_ff);
  const uint row_end = min((gl_WorkGroupID.x + 1u) * ROWS, pc.n_embd);
  for (uint r = gl_WorkGroupID.x * ROWS + gl_SubgroupID; r < row_end; r += gl_NumSubgroups) {
    for (uint t = 0u; t < pc.n_tokens; ++t) {
      float acc = 0.0;
      for (uint k = 0u; k < pc.top_k; ++k) {
        const uint p = t * pc.top_k + k;
        const float w = uintBitsToFloat(pairs[8u * p + 1u]);
        const uint ds = pairs[8u * p + 6u], dof = pairs[8u * p + 7u];
        float part = 0.0;
        for (uint i = gl_SubgroupInvocationID; i < units; i += gl_SubgroupSize) {
          vec4 xs[XV];
          vec2 sums;
          unit_x(p * pc.n_ff, i, xs, sums);
          part += unit_dot(ds, dof + r * rb, i, xs, sums);
        }
        acc += w * part;
      }
      acc = subgroupAdd(acc);
      if (subgroupElect()) o[t * pc.n_embd + r] = acc;
    }
  }
}
