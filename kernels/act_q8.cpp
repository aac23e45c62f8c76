#include "kernels/act_q8.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moepool::kernels {

// v rounded to the nearest integer, ties to even (the GPU's roundEven), for |v| < 2^22:
// adding and subtracting 1.5 * 2^23 leaves no fraction bits, and the default rounding mode
// rounds to nearest even. Plain float arithmetic, so the loops below vectorize (std::nearbyint
// took 22 us per 7168 values on the 2-core VM).
inline float round_even(float v) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (v + kShift) - kShift;
}

Q8Block quantize_q8_block(const float* v) {
  // max |v| as the largest of the values' bit patterns without their sign bits (for finite
  // floats the order is the same): an integer reduction, which the compiler vectorizes.
  uint32_t mbits = 0;
  for (size_t i = 0; i < 32; ++i) {
    uint32_t b;
    std::memcpy(&b, v + i, 4);
    mbits = std::max(mbits, b & 0x7FFFFFFFu);
  }
  float amax;
  std::memcpy(&amax, &mbits, 4);
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  const float d = amax / 127.0f;
  int32_t qi[32];
  for (size_t i = 0; i < 32; ++i) {
    // |v * id| <= 127 up to rounding: clamped after rounding, as the kernels do.
    const float r = round_even(v[i] * id);
    qi[i] = static_cast<int32_t>(r < -127.0f ? -127.0f : (r > 127.0f ? 127.0f : r));
  }
  Q8Block b;
  int32_t sum[2] = {0, 0};
  for (size_t h = 0; h < 2; ++h) {
    for (size_t i = 0; i < 16; ++i) sum[h] += qi[16 * h + i];
  }
  for (size_t i = 0; i < 32; ++i) b.q[i] = static_cast<int8_t>(qi[i]);
  b.meta[0] = d;
  b.meta[1] = d * static_cast<float>(sum[0]);
  b.meta[2] = d * static_cast<float>(sum[1]);
  b.meta[3] = 0.0f;
  return b;
}

void round_to_q8_blocks(std::span<double> v) {
  float f[32];
  for (size_t b = 0; b + 32 <= v.size(); b += 32) {
    for (size_t i = 0; i < 32; ++i) f[i] = static_cast<float>(v[b + i]);
    const Q8Block q = quantize_q8_block(f);
    for (size_t i = 0; i < 32; ++i) v[b + i] = static_cast<double>(q.meta[0]) * q.q[i];
  }
}

#if defined(__x86_64__)
// quantize_q8_block with AVX2, bit-identical: the same float operations per value (max of
// |v|, 127 / amax, v * id rounded to nearest even by the current rounding mode, clamped),
// eight at a time.
__attribute__((target("avx2"))) Q8Block quantize_q8_block_avx2(const float* v) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 x[4];
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    x[k] = _mm256_loadu_ps(v + 8 * k);
    m = _mm256_max_ps(m, _mm256_and_ps(x[k], abs_mask));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const float amax = _mm_cvtss_f32(m4);
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  const float d = amax / 127.0f;
  const __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 r =
        _mm256_round_ps(_mm256_mul_ps(x[k], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
  }
  Q8Block b;
  // int32 -> int8 (|q| <= 127, so the saturating packs are exact), then back into order:
  // the packs interleave 128-bit lanes, leaving 4-byte groups q0a q1a q2a q3a q0b q1b q2b q3b.
  const __m256i p8 =
      _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.q), ordered);
  int32_t sum[2];
  for (int h = 0; h < 2; ++h) {
    const __m256i s8 = _mm256_add_epi32(q[2 * h], q[2 * h + 1]);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
    sum[h] = _mm_cvtsi128_si32(s4);
  }
  b.meta[0] = d;
  b.meta[1] = d * static_cast<float>(sum[0]);
  b.meta[2] = d * static_cast<float>(sum[1]);
  b.meta[3] = 0.0f;
  return b;
}
#endif

void quantize_q8_rows(std::span<const float> x, std::span<uint8_t> quants, std::span<float> meta) {
  const size_t n_blocks = std::min({x.size() / 32, quants.size() / 32, meta.size() / 4});
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
#else
  constexpr bool avx2 = false;
#endif
  for (size_t b = 0; b < n_blocks; ++b) {
#if defined(__x86_64__)
    const Q8Block q =
        avx2 ? quantize_q8_block_avx2(x.data() + b * 32) : quantize_q8_block(x.data() + b * 32);
#else
    const Q8Block q = quantize_q8_block(x.data() + b * 32);
#endif
    std::memcpy(quants.data() + b * 32, q.q, 32);
    std::memcpy(meta.data() + b * 4, q.meta, sizeof q.meta);
  }
}

}  // namespace moepool::kernels
