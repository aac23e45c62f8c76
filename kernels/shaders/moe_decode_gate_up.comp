// variants: Q4_K Q8_0 F16 Q4_K_I8
// Decode, first half: for each routed (token, k) pair (workgroup y) and each of the
// workgroup's ROWS rows r of n_ff, h[pair][r] = silu(gate_e[r] . x[t]) * (up_e[r] . x[t]).
// One subgroup per NR rows at a time: its lanes split the rows' units (16-byte loads of
// quant data, consecutive lanes on consecutive bytes), then subgroupAdd.
// Q4_K_I8 (int8 activations, moe_act_i8.glsl): x comes quantized by the host (MoeGpu, with
// kernels/act_q8.h) and is read from there or from a copy in shared memory (XSH); at the end
// the workgroup quantizes its ROWS (a multiple of 32) values of h into the int8 blocks the
// down kernel reads, so no separate dispatch quantizes anything. (Each workgroup quantizing
// x itself cost 2 us of a 92 us call for one DeepSeek token and 10 of 326 for four.)
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

layout(push_constant) uniform Push {
  uint n_embd;
  uint n_ff;
  uint top_k;
  uint n_tokens;
  uint act_meta;  // ACT_I8: uvec4 index of h's meta in HQ (2 * its blocks)
  uint x_meta;    // ACT_I8: uvec4 index of x's meta in XQ
} pc;

#if defined(ACT_I8)
// x quantized by the host: [n_tokens][n_embd] in moe_act_i8.glsl's blocks, meta from x_meta.
layout(set = 0, binding = 2) readonly buffer XQ { uvec4 xq[]; };
// h quantized: [n_pairs][n_ff] in moe_act_i8.glsl's blocks, meta from act_meta on.
layout(set = 0, binding = 3) writeonly buffer HQ { uvec4 hq[]; };
// XSH: the workgroup copies x[t]'s blocks into shared memory first (XQ16 = n_embd / 16
// uvec4s of quants); else every step reads them from XQ (through L1).
layout(constant_id = 8) const uint XQ16 = 1;
layout(constant_id = 9) const bool XSH = false;
shared uvec4 sxq[XSH ? XQ16 : 1u];
shared vec4 sxm[XSH ? XQ16 / 2u : 1u];
shared float sh[ROWS];
uvec4 load_aq(uint i) { return XSH ? sxq[i] : xq[i]; }
vec4 load_am(uint b) { return XSH ? sxm[b] : uintBitsToFloat(xq[pc.x_meta + b]); }
#else
layout(set = 0, binding = 2) readonly buffer X { vec4 xv[]; };  // [n_tokens][n_embd]
layout(set = 0, binding = 3) writeonly buffer H { float h[]; };  // [n_pairs][n_ff]
vec4 load_xv(uint i) { return xv[i]; }
#endif

float silu(float v) { return v / (1.0 + exp(-v)); }

void main() {
  const uint p = gl_WorkGroupID.y;
  const uint lane = gl_SubgroupInvocationID;
  const uint token = pairs[8u * p];
  const uint gs = pairs[8u * p + 2u], go = pairs[8u * p + 3u];
  const uint us = pairs[8u * p + 4u], uo = pairs[8u * p + 5u];
  const uint rb = row_bytes(pc.n_embd);
  const uint units = units_per_row(pc.n_embd);
  const uint row0 = gl_WorkGroupID.x * ROWS;
  const uint row_end = min(row0 + ROWS, pc.n_ff);
  const UnitSel lane_sel = unit_sel(lane);
#if defined(ACT_I8)
  uint x0 = token * pc.n_embd;
  if (XSH) {  // x[t]'s blocks into shared memory
    const uint q0 = x0 / 16u, m0 = pc.x_meta + x0 / 32u;
    for (uint i = gl_LocalInvocationIndex; i < XQ16; i += gl_WorkGroupSize.x) {
      sxq[i] = xq[q0 + i];
      if (i < XQ16 / 2u) sxm[i] = uintBitsToFloat(xq[m0 + i]);
    }
    barrier();
    x0 = 0u;  // x[t] is all that shared memory holds
  }
#else
  const uint x0 = token * pc.n_embd;
#endif
  for (uint r0 = row0 + gl_SubgroupID * NR; r0 < row_end; r0 += gl_NumSubgroups * NR) {
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
      const UnitAct a = unit_act(x0, i);
      [[unroll]] for (uint j = 0u; j < NR; ++j) {
        g[j] += unit_dot(unit_load(gs, gr[j], i), sel, a);
        u[j] += unit_dot(unit_load(us, ur[j], i), sel, a);
      }
    }
    [[unroll]] for (uint j = 0u; j < NR; ++j) {
      const float gj = subgroupAdd(g[j]);
      const float uj = subgroupAdd(u[j]);
      if (subgroupElect() && r0 + j < row_end) {
#if defined(ACT_I8)
        sh[r0 + j - row0] = silu(gj) * uj;
#else
        h[p * pc.n_ff + r0 + j] = silu(gj) * uj;
#endif
      }
    }
  }
#if defined(ACT_I8)
  // ROWS is a multiple of 32 and n_ff of 256, so the workgroup's rows are whole blocks of h.
  barrier();
  for (uint b = gl_LocalInvocationIndex; b < ROWS / 32u; b += gl_WorkGroupSize.x) {
    vec4 v[8];
    [[unroll]] for (uint m = 0u; m < 8u; ++m) {
      v[m] = vec4(sh[32u * b + 4u * m], sh[32u * b + 4u * m + 1u], sh[32u * b + 4u * m + 2u],
                  sh[32u * b + 4u * m + 3u]);
    }
    const uint hb = (p * pc.n_ff + row0) / 32u + b;
    vec4 meta;
    quantize_block(v, hq[2u * hb], hq[2u * hb + 1u], meta);
    hq[pc.act_meta + hb] = floatBitsToUint(meta);
  }
#endif
}
