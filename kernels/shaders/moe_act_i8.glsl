// int8 activations of the Q4_K decode kernels (moe_weights.glsl includes this for ACT_I8),
// quantized as kernels/act_q8.cpp does on the CPU: blocks of 32 values, q = roundEven(v * 127 /
// amax) (|q| <= 127), d = amax / 127. A quantized row is held as
//   uvec4 2b, 2b + 1   block b's 32 int8 values, 16 per uvec4, little-endian;
//   meta of block b    (d, d * sum q[0..16), d * sum q[16..32), 0): the half sums are what
//                      Q4_K's min term multiplies.
// The kernel defines where they are read from: load_aq (the uvec4s) and load_am (the meta).
// Dot products of 4 weight bytes with 4 activation bytes are OpSDot
// (SPV_KHR_integer_dot_product: one instruction on GPUs that have it).
#extension GL_EXT_spirv_intrinsics : require
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018],
                  id = 4450)
int spv_sdot(int a, int b, spirv_literal int packed_4x8bit);
int dot4(uint a, uint b) { return spv_sdot(int(a), int(b), 0); }

// |v| < 2^22 as a float without a conversion instruction (2^23 + 2^22 + v is exact).
float ifloat(int v) { return uintBitsToFloat(uint(v) + 0x4B400000u) - 12582912.0; }

uint pack4(ivec4 q) {
  return uint(q.x & 0xFF) | (uint(q.y & 0xFF) << 8) | (uint(q.z & 0xFF) << 16) |
         (uint(q.w & 0xFF) << 24);
}

// Quantizes the 32 values v (as 8 vec4) into (lo, hi) and meta. One invocation per block:
// spreading a block over 8 lanes with subgroup shuffles measured ~2 us slower on the H100.
void quantize_block(vec4 v[8], out uvec4 lo, out uvec4 hi, out vec4 meta) {
  float amax = 0.0;
  [[unroll]] for (uint m = 0u; m < 8u; ++m) {
    const vec4 a = abs(v[m]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  const float id = amax > 0.0 ? 127.0 / amax : 0.0;
  uint w[8];
  int sum[2] = int[2](0, 0);
  [[unroll]] for (uint m = 0u; m < 8u; ++m) {
    const ivec4 q = clamp(ivec4(roundEven(v[m] * id)), ivec4(-127), ivec4(127));
    sum[m >> 2] += q.x + q.y + q.z + q.w;
    w[m] = pack4(q);
  }
  const float d = amax / 127.0;
  lo = uvec4(w[0], w[1], w[2], w[3]);
  hi = uvec4(w[4], w[5], w[6], w[7]);
  meta = vec4(d, d * float(sum[0]), d * float(sum[1]), 0.0);
}

uvec4 load_aq(uint i);  // uvec4 i of the quantized activations
vec4 load_am(uint b);   // meta of block b

// What unit u multiplies: the 16 int8 values of each of its two sub-blocks (low nibbles:
// sub-block 2c, high: 2c + 1) and their blocks' (d, sum of d * q over these 16).
struct UnitAct {
  uvec4 xl, xh;
  vec2 ml, mh;
};

// x0: the index (a multiple of 32) of the row's first activation.
UnitAct unit_act(uint x0, uint u) {
  const uint half16 = u & 1u;
  const uint b = (x0 >> 5) + (u >> 3) * 8u + ((u >> 1) & 3u) * 2u;
  UnitAct a;
  a.xl = load_aq(2u * b + half16);
  a.xh = load_aq(2u * b + 2u + half16);
  const vec4 ml = load_am(b);
  const vec4 mh = load_am(b + 1u);
  a.ml = vec2(ml.x, half16 == 0u ? ml.y : ml.z);
  a.mh = vec2(mh.x, half16 == 0u ? mh.y : mh.z);
  return a;
}
