// variants: Q4_K Q8_0 F16
// Prefill, one expert tile per workgroup row (y): the tile's TILE routed pairs times BM
// weight rows (x), K in steps of 32 columns. Each step dequantizes the BM x 32 weights once
// into shared memory and applies them to every pair of the tile (the reason wide tiles are
// faster). 256 threads as 16 x 16: thread (tr, tc) owns rows tr + 16 i and pairs tc + 16 j.
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
const uint RM = BM / 16u;    // rows per thread
const uint CN = TILE / 16u;  // pairs per thread

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

// Rows of the shared arrays are padded by one float so the stores (a thread per row run,
// a thread per pair) hit distinct banks.
const uint WS = BM + 1u;
const uint XS = TILE + 1u;
shared float w_a[BK * WS];                           // [k][row]: gate (or down)
shared float w_b[BK * (MODE_DOWN == 1u ? 1u : WS)];  // [k][row]: up
shared float xs[BK * XS];                            // [k][pair]

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
  const uint tr = tid & 15u, tc = tid >> 4;

  float acc_a[RM][CN];
  float acc_b[RM][CN];
  [[unroll]] for (uint i = 0u; i < RM; ++i)
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
      for (uint i = 0u; i < 8u; ++i) w_a[(c8 + i) * WS + r] = v[i];
      if (!down) {
        if (in_range) {
          dequant8(sb, ob + (row0 + r) * rb, k0 + c8, v);
        }
        for (uint i = 0u; i < 8u; ++i) w_b[(c8 + i) * WS + r] = v[i];
      }
    }
    // Activations: TILE pairs x 32 columns = TILE * 8 vec4s.
    for (uint e = tid; e < TILE * 8u; e += 256u) {
      const uint c = e >> 3, q = e & 7u;
      vec4 a = vec4(0.0);
      if (c < n_pairs) {
        const uint src = down ? first + c : pairs[first + c].x;
        a = act[(src * K + k0) / 4u + q];
      }
      xs[(4u * q) * XS + c] = a.x;
      xs[(4u * q + 1u) * XS + c] = a.y;
      xs[(4u * q + 2u) * XS + c] = a.z;
      xs[(4u * q + 3u) * XS + c] = a.w;
    }
    barrier();
    [[unroll]] for (uint k = 0u; k < BK; ++k) {
      float xv[CN];
      [[unroll]] for (uint j = 0u; j < CN; ++j) xv[j] = xs[k * XS + tc + 16u * j];
      [[unroll]] for (uint i = 0u; i < RM; ++i) {
        const float wa = w_a[k * WS + tr + 16u * i];
        [[unroll]] for (uint j = 0u; j < CN; ++j) acc_a[i][j] += wa * xv[j];
        if (!down) {
          const float wb = w_b[k * WS + tr + 16u * i];
          [[unroll]] for (uint j = 0u; j < CN; ++j) acc_b[i][j] += wb * xv[j];
        }
      }
    }
    barrier();
  }

  [[unroll]] for (uint j = 0u; j < CN; ++j) {
    const uint c = tc + 16u * j;
    if (c >= n_pairs) continue;
    const uvec2 pr = pairs[first + c];
    const uint dst_row = down ? pr.x * pc.top_k + pr.y : first + c;
    [[unroll]] for (uint i = 0u; i < RM; ++i) {
      const uint r = row0 + tr + 16u * i;
      if (r >= n_rows) continue;
      dst[dst_row * n_rows + r] = down ? acc_a[i][j] : silu(acc_a[i][j]) * acc_b[i][j];
    }
  }
}
