// Reading ggml weight rows in place from the bound segments (binding 0 of every MoE kernel):
// the segment buffers as one descriptor array (its size is specialization constant 1), indexed
// with a dynamically uniform segment number, at byte offsets from the expert table.
// Block layouts (little-endian) as in kernels/dequant.cpp:
//   Q4_K: 144 bytes per 256 weights: f16 d, f16 dmin, 12 scale bytes, 128 quant bytes.
//   Q8_0: 34 bytes per 32 weights: f16 d, int8 qs[32].
//   F16:  2 bytes per weight.
// Alignment the kernels rely on (moe_gpu.cpp checks it): Q4_K rows start 4-byte aligned
// (16-byte aligned ones take the uvec4 fast path), Q8_0/F16 rows 2-byte aligned.
// Variant Q4_K_I8: Q4_K weights with int8 activations (ACT_I8, below).
#if defined(VARIANT_Q4_K_I8)
#define VARIANT_Q4_K 1
#define ACT_I8 1
#endif

#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : enable

layout(constant_id = 1) const uint NSEG = 1;

layout(set = 0, binding = 0) readonly buffer Seg32 { uint w[]; } seg32[NSEG];
layout(set = 0, binding = 0) readonly buffer Seg128 { uvec4 w[]; } seg128[NSEG];

// The 32-bit word at byte offset `b` (4-aligned) of segment `s`.
uint ld32(uint s, uint b) { return seg32[s].w[b >> 2]; }

// The 4 bytes at byte offset `b` (2-aligned) of segment `s`.
uint ld32u2(uint s, uint b) {
  uint i = b >> 2;
  uint lo = seg32[s].w[i];
  if ((b & 2u) == 0u) return lo;
  uint hi = seg32[s].w[i + 1u];
  return (lo >> 16) | (hi << 16);
}

// Set by the host when every row a kernel reads starts 16-byte aligned (and its blocks are
// whole multiples of 16 bytes, as Q4_K's 144 are): ld128 is then one 16-byte load, no test.
layout(constant_id = 6) const bool ALIGN16 = false;
// Set by the host when the subgroup size is a multiple of 8: a lane's Q4_K units u then keep
// u & 7 (which sub-blocks of a block they cover) for the whole row, so it is decoded once.
layout(constant_id = 7) const bool SG8 = false;

// The 16 bytes at byte offset `b` (4-aligned) of segment `s`: one 16-byte load when aligned.
uvec4 ld128(uint s, uint b) {
  if (ALIGN16 || (b & 15u) == 0u) return seg128[s].w[b >> 4];
  uint i = b >> 2;
  return uvec4(seg32[s].w[i], seg32[s].w[i + 1u], seg32[s].w[i + 2u], seg32[s].w[i + 3u]);
}

// Integer -> float without a conversion instruction (those run at 1/8 rate on NVIDIA):
// OR-ing a value v < 2^23 into the mantissa of 2^23 gives the float 2^23 + v exactly.
const uint kMagic = 0x4B000000u;
const float kMagicF = 8388608.0;

float magic(uint bits) { return uintBitsToFloat(bits | kMagic) - kMagicF; }

#if defined(VARIANT_Q4_K)
const uint kBlockBytes = 144u;
const uint kBlockCols = 256u;

// Byte k (0..11) of a Q4_K block's scales; h is the block's first 16 bytes.
uint q4k_scale_byte(uvec4 h, uint k) {
  uint w = k < 4u ? h.y : (k < 8u ? h.z : h.w);
  return (w >> (8u * (k & 3u))) & 0xFFu;
}

// The 6-bit scale (x) and min (y) of sub-block j (0..7), as kernels/dequant.cpp q4_k_scale_min.
uvec2 q4k_scale_min(uvec4 h, uint j) {
  if (j < 4u) return uvec2(q4k_scale_byte(h, j) & 63u, q4k_scale_byte(h, j + 4u) & 63u);
  uint a = q4k_scale_byte(h, j + 4u);
  return uvec2((a & 0xFu) | ((q4k_scale_byte(h, j - 4u) >> 6) << 4),
               (a >> 4) | ((q4k_scale_byte(h, j) >> 6) << 4));
}
#elif defined(VARIANT_Q8_0)
const uint kBlockBytes = 34u;
const uint kBlockCols = 32u;
#elif defined(VARIANT_F16)
const uint kBlockBytes = 16u;  // a "block" of 8 halves (F16 has no blocks; rows are 2-aligned)
const uint kBlockCols = 8u;
#else
#error "build with -DVARIANT_Q4_K=1, -DVARIANT_Q8_0=1 or -DVARIANT_F16=1"
#endif

// Bytes of one row of `cols` weights.
uint row_bytes(uint cols) { return cols / kBlockCols * kBlockBytes; }

// Dequantizes the 8 weights at columns [col, col + 8) (col a multiple of 8) of the row that
// starts at byte `row` of segment `s`, as kernels/dequant.cpp does.
void dequant8(uint s, uint row, uint col, out float v[8]) {
#if defined(VARIANT_Q4_K)
  uint blk = row + (col >> 8) * kBlockBytes;
  uint p = col & 255u;
  uint c = p >> 6;            // chunk of 64 weights
  uint hi = (p >> 5) & 1u;    // high nibbles: sub-block 2c + 1
  uint l = p & 31u;           // 0, 8, 16, 24
  uvec4 h = ld128(s, blk);
  vec2 dm = unpackHalf2x16(h.x);
  uvec2 sm = q4k_scale_min(h, 2u * c + hi);
  float d1 = dm.x * float(sm.x);
  float m1 = dm.y * float(sm.y);
  uint q0 = ld32(s, blk + 16u + 32u * c + l);
  uint q1 = ld32(s, blk + 20u + 32u * c + l);
  uint sh = 4u * hi;
  for (uint i = 0u; i < 4u; ++i) {
    v[i] = d1 * float((q0 >> (8u * i + sh)) & 15u) - m1;
    v[i + 4u] = d1 * float((q1 >> (8u * i + sh)) & 15u) - m1;
  }
#elif defined(VARIANT_Q8_0)
  uint blk = row + (col >> 5) * kBlockBytes;
  float d = unpackHalf2x16(ld32u2(s, blk)).x;
  uint part = (col & 31u) >> 3;
  uint q0 = ld32u2(s, blk + 2u + 8u * part);
  uint q1 = ld32u2(s, blk + 6u + 8u * part);
  for (uint i = 0u; i < 4u; ++i) {
    v[i] = d * float(bitfieldExtract(int(q0), int(8u * i), 8));
    v[i + 4u] = d * float(bitfieldExtract(int(q1), int(8u * i), 8));
  }
#else
  uint b = row + col * 2u;
  for (uint i = 0u; i < 4u; ++i) {
    vec2 f = unpackHalf2x16(ld32u2(s, b + 4u * i));
    v[2u * i] = f.x;
    v[2u * i + 1u] = f.y;
  }
#endif
}

// ---- decode: one row · x, split into "units" that the lanes of a subgroup share ----------
// Q4_K: a unit is 16 quant bytes of a block (8 per block: 32 weights, two sub-blocks' halves);
// Q8_0: half a block (16 weights); F16: 8 weights. XV is the vec4s of x one unit reads.
#if defined(VARIANT_Q4_K)
const uint XV = 8u;
uint units_per_row(uint cols) { return cols >> 5; }
// First x column of unit u's low-nibble weights (the high ones are 32 further).
uint unit_col(uint u) { return (u >> 3) * 256u + ((u >> 1) & 3u) * 64u + (u & 1u) * 16u; }
#elif defined(VARIANT_Q8_0)
const uint XV = 4u;
uint units_per_row(uint cols) { return cols >> 4; }
uint unit_col(uint u) { return u * 16u; }
#else
const uint XV = 2u;
uint units_per_row(uint cols) { return cols >> 3; }
uint unit_col(uint u) { return u * 8u; }
#endif

#if defined(ACT_I8)
#include "moe_act_i8.glsl"
#else
// The kernel defines it: vec4 i of its activation buffer (x or h).
vec4 load_xv(uint i);

// The activations unit u multiplies (for Q4_K, with the sums of the low and high halves:
// the min term).
struct UnitAct {
  vec4 xs[XV];
  vec2 sums;
};

// x0: the float index (a multiple of 4) where the row's activations start.
UnitAct unit_act(uint x0, uint u) {
  UnitAct a;
  uint c = (x0 + unit_col(u)) >> 2;
#if defined(VARIANT_Q4_K)
  for (uint m = 0u; m < 4u; ++m) {
    a.xs[m] = load_xv(c + m);
    a.xs[4u + m] = load_xv(c + 8u + m);
  }
  // The high half's sum carries 1/256: its min is read as 256 * m (q4_sel).
  const vec4 one = vec4(1.0);
  a.sums = vec2(dot(a.xs[0] + a.xs[1] + a.xs[2] + a.xs[3], one),
                dot(a.xs[4] + a.xs[5] + a.xs[6] + a.xs[7], one) * (1.0 / 256.0));
#else
  for (uint m = 0u; m < XV; ++m) a.xs[m] = load_xv(c + m);
  a.sums = vec2(0.0);
#endif
  return a;
}
#endif

// What a lane needs to know of unit u beyond its block: for Q4_K, where its 16 quant bytes
// sit and how to pick its two sub-blocks' (2c, 2c + 1, c = (u >> 1) & 3) 6-bit scales and
// mins out of the block's 12 scale bytes without a branch. Depends on u & 7 only.
struct UnitSel {
  uint s;     // 16 * (c & 1): bit offset of the sub-block pair's bytes in a scale word
  uint ma;    // masks of the low bits (both sub-blocks at once, bytes 0 and 1)
  uint mb;    // masks of the high 2 bits (sub-blocks 4..7 only)
  bool hi;    // sub-blocks 4..7
};

UnitSel unit_sel(uint u) {
  UnitSel r;
  const uint c = (u >> 1) & 3u;
  r.s = (c & 1u) * 16u;
  r.hi = c >= 2u;
  r.ma = r.hi ? 0x0F0Fu : 0x3F3Fu;
  r.mb = r.hi ? 0x3030u : 0u;
  return r;
}

// The weight bytes of unit u of the row at byte `row` of segment `s`.
struct UnitW {
  uvec4 h;  // Q4_K: the block's first 16 bytes (d, dmin, scales); Q8_0: .x = d bits
  uvec4 q;  // the unit's 16 bytes of quants (F16: 8 halves)
};

UnitW unit_load(uint s, uint row, uint u) {
  UnitW w;
#if defined(VARIANT_Q4_K)
  const uint blk = row + (u >> 3) * kBlockBytes;
  w.h = ld128(s, blk);
  w.q = ld128(s, blk + 16u + (u & 7u) * 16u);
#elif defined(VARIANT_Q8_0)
  const uint blk = row + (u >> 1) * kBlockBytes;
  const uint b = blk + 2u + (u & 1u) * 16u;
  w.h = uvec4(ld32u2(s, blk), 0u, 0u, 0u);
  w.q = uvec4(ld32u2(s, b), ld32u2(s, b + 4u), ld32u2(s, b + 8u), ld32u2(s, b + 12u));
#else
  const uint b = row + u * 16u;
  w.h = uvec4(0u);
  w.q = uvec4(ld32u2(s, b), ld32u2(s, b + 4u), ld32u2(s, b + 8u), ld32u2(s, b + 12u));
#endif
  return w;
}

// Unit u's share of row · x, from its loaded bytes.
float unit_dot(UnitW wt, UnitSel sel, UnitAct a) {
#if defined(VARIANT_Q4_K)
  const uvec4 h = wt.h;
  const uvec4 q = wt.q;
#if defined(ACT_I8)
  int il = 0, ih = 0;
  [[unroll]] for (uint m = 0u; m < 4u; ++m) {
    il += dot4(q[m] & 0x0F0F0F0Fu, a.xl[m]);
    ih += dot4((q[m] >> 4) & 0x0F0F0F0Fu, a.xh[m]);
  }
#else
  // Each 32-bit word holds 4 bytes = 4 low nibbles (sub-block 2c) and 4 high (2c + 1). The
  // nibbles are masked in place (never shifted down) so each is 2^23 + q * {1, 16, 256, 4096};
  // the powers of two are divided out once at the end (exact).
  float lo1 = 0.0, lo256 = 0.0, hi16 = 0.0, hi4096 = 0.0;
  [[unroll]] for (uint m = 0u; m < 4u; ++m) {
    const uint w = q[m];
    const uint w2 = w >> 16;
    const vec4 xl = a.xs[m];
    const vec4 xh = a.xs[4u + m];
    // One FMA per weight (a + b * x + c * z would be FMUL + FFMA + FADD for two).
    lo1 = fma(magic(w & 0xFu), xl.x, lo1);
    lo1 = fma(magic(w2 & 0xFu), xl.z, lo1);
    lo256 = fma(magic(w & 0xF00u), xl.y, lo256);
    lo256 = fma(magic(w2 & 0xF00u), xl.w, lo256);
    hi16 = fma(magic(w & 0xF0u), xh.x, hi16);
    hi16 = fma(magic(w2 & 0xF0u), xh.z, hi16);
    hi4096 = fma(magic(w & 0xF000u), xh.y, hi4096);
    hi4096 = fma(magic(w2 & 0xF000u), xh.w, hi4096);
  }
#endif
  // Scales/mins of sub-blocks 2c (byte 0) and 2c + 1 (byte 1), as dequant.cpp q4_k_scale_min:
  // j < 4: sc = b[j] & 63, m = b[j + 4] & 63; j >= 4: sc = (b[j + 4] & 15) | (b[j - 4] >> 6) << 4,
  // m = (b[j + 4] >> 4) | (b[j] >> 6) << 4 (h.y = bytes 0..3, h.z = 4..7, h.w = 8..11).
  const uint asc = sel.hi ? h.w : h.y;
  const uint am = sel.hi ? (h.w >> 4) : h.z;
  const uint scp = ((asc >> sel.s) & sel.ma) | ((h.y >> (sel.s + 2u)) & sel.mb);
  const uint mnp = ((am >> sel.s) & sel.ma) | ((h.z >> (sel.s + 2u)) & sel.mb);
  const vec2 dm = unpackHalf2x16(h.x);
#if defined(ACT_I8)
  return dm.x * (magic(scp & 0xFFu) * a.ml.x * ifloat(il) +
                 magic((scp >> 8) & 0xFFu) * a.mh.x * ifloat(ih)) -
         dm.y * (magic(mnp & 0xFFu) * a.ml.y + magic((mnp >> 8) & 0xFFu) * a.mh.y);
#else
  // magic(x & 0xFF00) is 256 * the byte-1 value; sums.y carries the matching 1/256.
  const float dot_lo = lo1 + lo256 * (1.0 / 256.0);
  const float dot_hi = hi16 * (1.0 / 4096.0) + hi4096 * (1.0 / 1048576.0);
  return dm.x * (magic(scp & 0xFFu) * dot_lo + magic(scp & 0xFF00u) * dot_hi) -
         dm.y * (magic(mnp & 0xFFu) * a.sums.x + magic(mnp & 0xFF00u) * a.sums.y);
#endif
#elif defined(VARIANT_Q8_0)
  const float d = unpackHalf2x16(wt.h.x).x;
  // int8 q + 128 is an unsigned byte: masked in place it gives 2^23 + (q + 128) * {1, 256}.
  float a1 = 0.0, a256 = 0.0;
  [[unroll]] for (uint m = 0u; m < 4u; ++m) {
    uint w = wt.q[m] ^ 0x80808080u;
    uint w2 = w >> 16;
    vec4 x = a.xs[m];
    a1 += (uintBitsToFloat((w & 0xFFu) | kMagic) - (kMagicF + 128.0)) * x.x +
          (uintBitsToFloat((w2 & 0xFFu) | kMagic) - (kMagicF + 128.0)) * x.z;
    a256 += (uintBitsToFloat((w & 0xFF00u) | kMagic) - (kMagicF + 32768.0)) * x.y +
            (uintBitsToFloat((w2 & 0xFF00u) | kMagic) - (kMagicF + 32768.0)) * x.w;
  }
  return d * (a1 + a256 * (1.0 / 256.0));
#else
  float acc = 0.0;
  [[unroll]] for (uint m = 0u; m < 2u; ++m) {
    vec2 f0 = unpackHalf2x16(wt.q[2u * m]);
    vec2 f1 = unpackHalf2x16(wt.q[2u * m + 1u]);
    acc += dot(vec4(f0, f1), a.xs[m]);
  }
  return acc;
#endif
}
