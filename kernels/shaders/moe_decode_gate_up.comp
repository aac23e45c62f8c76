// variants: Q4_K Q8_0 F16
// Decode, first half: for each routed (token, k) pair (workgroup y) and each of the
// workgroup's ROWS rows r of n_ff, h[pair][r] = silu(gate_e[r] . x[t]) * (up_e[r] . x[t]).
// One subgroup per NR rows at a time: its lanes split the rows' units (16-byte loads of
// quant data, consecutive lanes on consecutive bytes), then subgroupAdd.
#version 450
#include "moe_weights.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 2) const uint ROWS = 8;  // rows per workgroup
// Rows one subgroup computes at once: each x value loaded is used NR times (x reads, not
// weight reads, would otherwise bound the kernel on L1 bandwidth), and 4 * NR independent
// 16-byte weight loads per lane are in flight before the math.
layout(constant_id = 5) const uint NR = 2;

// Per pair (t * top_k + k), 8 words: token, router weight bits, gate seg, gate byte offset,
// up seg, up offset, down seg, down offset.
layout(set = 0, binding = 1) readonly buffer Pairs { uint pairs[]; };
layout(set = 0, binding = 2) readonly buffer X { vec4 xv[]; };  // [n_tokens][n_embd]
layout(set = 0, binding = 3) writeonly buffer H { float h[]; };  // [n_pairs][n_ff]

layout(push_constant) uniform Push {
  uint n_embd;
  uint n_ff;
} pc;

vec4 load_xv(uint i) { return xv[i]; }

float silu(float v) { return v / (1.0 + exp(-v)); }

void main() {
  const uint p = gl_WorkGroupID.y;
  const uint lane = gl_SubgroupInvocationID;
  const uint token = pairs[8u * p];
  const uint gs = pairs[8u * p + 2u], go = pairs[8u * p + 3u];
  const uint us = pairs[8u * p + 4u], uo = pairs[8u * p + 5u];
  const uint rb = row_bytes(pc.n_embd);
  const uint units = units_per_row(pc.n_embd);
  const uint x0 = token * pc.n_embd;
  const uint row_end = min((gl_WorkGroupID.x + 1u) * ROWS, pc.n_ff);
  const UnitSel lane_sel = unit_sel(lane);
  for (uint r0 = gl_WorkGroupID.x * ROWS + gl_SubgroupID * NR; r0 < row_end;
       r0 += gl_NumSubgroups * NR) {
    // Rows past row_end are clamped to it (computed twice, written once).
    uint gr[NR], ur[NR];
    float g[NR], u[NR];
    [[unroll]] for (uint j = 0u; j < NR; ++j) {
      const uint r = min(r0 + j, row_end - 1u);
      gr[j] = go + r * rb;
      ur[j] = uo + r * rb;
      g[j] = 0.0;
      u[j] = 0.0;
    }
    for (uint i = lane; i < units; i += gl_SubgroupSize) {
      const UnitSel sel = SG8 ? lane_sel : unit_sel(i);
      vec4 xs[XV];
      vec2 sums;
      unit_x(x0, i, xs, sums);
      [[unroll]] for (uint j = 0u; j < NR; ++j) {
        g[j] += unit_dot(gs, gr[j], i, sel, xs, sums);
        u[j] += unit_dot(us, ur[j], i, sel, xs, sums);
      }
    }
    [[unroll]] for (uint j = 0u; j < NR; ++j) {
      const float gj = subgroupAdd(g[j]);
      const float uj = subgroupAdd(u[j]);
      if (subgroupElect() && r0 + j < row_end) h[p * pc.n_ff + r0 + j] = silu(gj) * uj;
    }
  }
}
