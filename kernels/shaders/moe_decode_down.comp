// variants: Q4_K Q8_0 F16 Q4_K_I8
// Decode, second half: for each of workgroup (x, y)'s ROWS rows r of n_embd and token t = y,
// out[t][r] = sum over k of w[t][k] * (down_e[r] . h[t * top_k + k]). One workgroup per
// token and row block, not one walking every token: with a few tokens that fills the GPU
// instead of leaving each subgroup a chain of n_tokens walks (H100: bench/kernels/RESULTS.md).
// One subgroup per NR rows at a time (each h value loaded serves NR rows). The lanes walk
// the token's top_k * units (pair, unit) steps as one flat range (no serial loop over k
// with a short unit loop inside), each lane keeping its share of the weighted sum; one
// subgroupAdd per token and row. No atomics: every out element is written once.
#version 450
#include "moe_weights.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 2) const uint ROWS = 8;  // rows per workgroup
layout(constant_id = 5) const uint NR = 2;    // rows per subgroup at once (h reuse)

layout(set = 0, binding = 1) readonly buffer Pairs { uint pairs[]; };  // as in gate_up
layout(set = 0, binding = 3) writeonly buffer Out { float o[]; };      // [n_tokens][n_embd]

layout(push_constant) uniform Push {
  uint n_embd;
  uint n_ff;
  uint top_k;
  uint n_tokens;
  uint act_meta;  // ACT_I8: uvec4 index of h's meta (2 * its blocks)
} pc;

// h: [n_pairs][n_ff], F32 or (ACT_I8) quantized by the gate+up kernel.
#if defined(ACT_I8)
layout(set = 0, binding = 2) readonly buffer H { uvec4 av[]; };
uvec4 load_aq(uint i) { return av[i]; }
vec4 load_am(uint b) { return uintBitsToFloat(av[pc.act_meta + b]); }
#else
layout(set = 0, binding = 2) readonly buffer H { vec4 hv[]; };
vec4 load_xv(uint i) { return hv[i]; }
#endif

void main() {
  const uint lane = gl_SubgroupInvocationID;
  const uint sg = gl_SubgroupSize;
  const uint rb = row_bytes(pc.n_ff);
  const uint units = units_per_row(pc.n_ff);
  const uint row_end = min((gl_WorkGroupID.x + 1u) * ROWS, pc.n_embd);
  // A lane's first step (k0, u0) and its stride (dk, du) through the flat (k, unit) range.
  const uint k0 = lane / units, u0 = lane % units;
  const uint dk = sg / units, du = sg % units;
  const UnitSel lane_sel = unit_sel(lane);
  const uint t = gl_WorkGroupID.y;
  for (uint r0 = gl_WorkGroupID.x * ROWS + gl_SubgroupID * NR; r0 < row_end;
       r0 += gl_NumSubgroups * NR) {
    uint rr[NR];
    [[unroll]] for (uint j = 0u; j < NR; ++j) rr[j] = min(r0 + j, row_end - 1u) * rb;
    float acc[NR];
    [[unroll]] for (uint j = 0u; j < NR; ++j) acc[j] = 0.0;
    uint k = k0, u = u0;
    while (k < pc.top_k) {
      const uint p = t * pc.top_k + k;
      const float w = uintBitsToFloat(pairs[8u * p + 1u]);
      const uint ds = pairs[8u * p + 6u], dof = pairs[8u * p + 7u];
      const UnitSel sel = SG8 ? lane_sel : unit_sel(u);
      const UnitAct a = unit_act(p * pc.n_ff, u);
      [[unroll]] for (uint j = 0u; j < NR; ++j) {
        // clamped rows: computed, not written
        acc[j] += w * unit_dot(unit_load(ds, dof + rr[j], u), sel, a);
      }
      u += du;
      k += dk;
      if (u >= units) {
        u -= units;
        ++k;
      }
    }
    [[unroll]] for (uint j = 0u; j < NR; ++j) {
      const float s = subgroupAdd(acc[j]);
      if (subgroupElect() && r0 + j < row_end) o[t * pc.n_embd + r0 + j] = s;
    }
  }
}
