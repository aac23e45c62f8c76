// variants: Q4_K Q8_0 F16
// Prefill, one expert tile per workgroup row (y): the tile's TILE routed pairs times BM
// weight rows (x), K in steps of 32 columns. Each step dequantizes the BM x 32 weights once
// into shared memory and applies them to every pair of the tile (the reason wide tiles are
// faster). 256 threads as TR x TC: thread (tr, tc) owns the 4 consecutive rows 4 tr.. and
// the CN consecutive pairs CN tc.., so each k step reads its weights and activations from
// shared memory as whole vec4s (one 16-byte load serves 4 rows, not 1) and does
// 4 * CN (gate_up: 8 * CN) FMAs per 2..3 loads: the kernel is bound by FMAs, not by loads.
// The host runs each tile with the narrowest TILE that holds its pairs (tiles of one width
// per dispatch, from tile_base on), so a half-empty tile costs no more than a narrower one.
//   MODE_DOWN = 0 (gate_up): act = x[token], K = n_embd, rows = n_ff,
//       h[first_pair + c][r] = silu(gate[r] . x) * (up[r] . x)
//   MODE_DOWN = 1 (down): act = h[first_pair + c], K = n_ff, rows = n_embd,
//       partial[token * top_k + k][r] = down[r] . h
#version 450
#include "moe_weights.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 2) const uint BM = 64;         // weight rows per workgroup: 32 or 64
layout(constant_id = 3) const uint TILE = 128;      // pairs per tile: 32, 64 or 128
layout(constant_id = 4) const uint MODE_DOWN = 0;

const uint BK = 32u;
const uint TR = BM / 4u;     // thread rows (4 weight rows each)
const uint TC = 256u / TR;   // thread columns
const uint CN = TILE / TC;   // pairs per thread: 1..8
const uint BM4 = BM / 4u;
const uint T4 = TILE / 4u;

// Per tile, 8 words: gate seg, gate offset, up seg, up offset, down seg, down offset,
// first pair, pair count.
layout(set = 0, binding = 1) readonly buffer Tiles { uint tiles[]; };
layout(set = 0, binding = 2) readonly buffer Pairs { uvec2 pairs[]; };  // sorted (token, k)
layout(set = 0, binding = 3) readonly buffer Act { vec4 act[]; };
layout(set = 0, binding = 4) writeonly buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint n_embd;
  uint n_ff;
  uint top_k;
  uint tile_base;  // this dispatch's first tile
} pc;

shared vec4 w_a[BK * BM4];                            // [k][row / 4]: gate (or down)
shared vec4 w_b[BK * (MODE_DOWN == 1u ? 1u : BM4)];  // [k][row / 4]: up
shared vec4 xs[BK * T4];                             // [k][pair / 4]

vec4 load_xv(uint i) { return act[i]; }  // unused here; moe_weights.glsl declares it

float silu(float v) { return v / (1.0 + exp(-v)); }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint tile = pc.tile_base + gl_WorkGroupID.y;
  const bool down = MODE_DOWN == 1u;
  const uint sa = tiles[8u * tile + (down ? 4u : 0u)];
  const uint oa = tiles[8u * tile + (down ? 5u : 1u)];
  const uint sb = tiles[8u * tile + 2u];
  const uint ob = tiles[8u * tile + 3u];
  const uint first = tiles[8u * tile + 6u];
  const uint n_pairs = tiles[8u * tile + 7u];
  const uint K = down ? pc.n_ff : pc.n_embd;
  const uint n_rows = down ? pc.n_embd : pc.n_ff;
  const uint rb = row_bytes(K);
  const uint row0 = gl_WorkGroupID.x * BM;
  const uint tr = tid % TR, tc = tid / TR;

  float acc_a[4][CN];
  float acc_b[4][CN];
  [[unroll]] for (uint i = 0u; i < 4u; ++i)
    [[unroll]] for (uint j = 0u; j < CN; ++j) {
      acc_a[i][j] = 0.0;
      acc_b[i][j] = 0.0;
    }

  for (uint k0 = 0u; k0 < K; k0 += BK) {
    // Weights: BM rows x 32 columns = BM * 4 runs of 8; one run per thread.
    if (tid < BM * 4u) {
      const uint r = tid >> 2, c8 = (tid & 3u) * 8u;
      float v[8];
      const bool in_range = row0 + r < n_rows;
      if (in_range) {
        dequant8(sa, oa + (row0 + r) * rb, k0 + c8, v);
      } else {
        for (uint i = 0u; i < 8u; ++i) v[i] = 0.0;
      }
      for (uint i = 0u; i < 8u; ++i) w_a[(c8 + i) * BM4 + (r >> 2)][r & 3u] = v[i];
      if (!down) {
        if (in_range) {
          dequant8(sb, ob + (row0 + r) * rb, k0 + c8, v);
        }
        for (uint i = 0u; i < 8u; ++i) w_b[(c8 + i) * BM4 + (r >> 2)][r & 3u] = v[i];
      }
    }
    // Activations: TILE pairs x 32 columns = TILE * 8 vec4s; consecutive threads take
    // consecutive pairs (their stores hit consecutive banks).
    for (uint e = tid; e < TILE * 8u; e += 256u) {
      const uint c = e % TILE, q = e / TILE;
      vec4 a = vec4(0.0);
      if (c < n_pairs) {
        const uint src = down ? first + c : pairs[first + c].x;
        a = act[(src * K + k0) / 4u + q];
      }
      xs[(4u * q) * T4 + (c >> 2)][c & 3u] = a.x;
      xs[(4u * q + 1u) * T4 + (c >> 2)][c & 3u] = a.y;
      xs[(4u * q + 2u) * T4 + (c >> 2)][c & 3u] = a.z;
      xs[(4u * q + 3u) * T4 + (c >> 2)][c & 3u] = a.w;
    }
    barrier();
    [[unroll]] for (uint k = 0u; k < BK; ++k) {
      float xv[CN];
      if (CN >= 4u) {
        [[unroll]] for (uint j4 = 0u; j4 < CN / 4u; ++j4) {
          const vec4 t = xs[k * T4 + tc * (CN / 4u) + j4];
          xv[4u * j4] = t.x;
          xv[4u * j4 + 1u] = t.y;
          xv[4u * j4 + 2u] = t.z;
          xv[4u * j4 + 3u] = t.w;
        }
      } else {
        const vec4 t = xs[k * T4 + (tc * CN) / 4u];
        const uint b = (tc * CN) & 3u;
        [[unroll]] for (uint j = 0u; j < CN; ++j) xv[j] = t[b + j];
      }
      const vec4 wa = w_a[k * BM4 + tr];
      [[unroll]] for (uint i = 0u; i < 4u; ++i)
        [[unroll]] for (uint j = 0u; j < CN; ++j) acc_a[i][j] += wa[i] * xv[j];
      if (!down) {
        const vec4 wb = w_b[k * BM4 + tr];
        [[unroll]] for (uint i = 0u; i < 4u; ++i)
          [[unroll]] for (uint j = 0u; j < CN; ++j) acc_b[i][j] += wb[i] * xv[j];
      }
    }
    barrier();
  }

  [[unroll]] for (uint j = 0u; j < CN; ++j) {
    const uint c = tc * CN + j;
    if (c >= n_pairs) continue;
    const uvec2 pr = pairs[first + c];
    const uint dst_row = down ? pr.x * pc.top_k + pr.y : first + c;
    [[unroll]] for (uint i = 0u; i < 4u; ++i) {
      const uint r = row0 + 4u * tr + i;
      if (r >= n_rows) continue;
      dst[dst_row * n_rows + r] = down ? acc_a[i][j] : silu(acc_a[i][j]) * acc_b[i][j];
    }
  }
}
