#include "kernels/q4k_cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dequant.h"

namespace moepool::kernels {
namespace {

constexpr uint32_t kBlock = kQ4_KBlockSize;  // 256 values per Q4_K and per Q8 block
constexpr uint32_t kSubBlocks = 8;           // of 32 values each

// One activation row quantized to int8 blocks of 256 (see the header).
struct Q8Row {
  std::vector<float> d;          // [n_blocks] scale: value ~= d * q
  std::vector<int8_t> q;         // [n_blocks * 256]
  std::vector<int32_t> sub_sum;  // [n_blocks * 8] sum of q over each 32-value sub-block
};

// Quantizes v[0..n) (n a multiple of 256) into `out`: q = round(v * 127 / max|v|), |q| <= 127.
void quantize_row_q8(const float* v, uint32_t n, Q8Row& out) {
  const uint32_t n_blocks = n / kBlock;
  out.d.resize(n_blocks);
  out.q.resize(n);
  out.sub_sum.resize(size_t{n_blocks} * kSubBlocks);
  for (uint32_t b = 0; b < n_blocks; ++b) {
    const float* src = v + size_t{b} * kBlock;
    int8_t* q = out.q.data() + size_t{b} * kBlock;
    float amax = 0.0f;
    bool finite = true;
    for (uint32_t i = 0; i < kBlock; ++i) {
      amax = std::max(amax, std::fabs(src[i]));
      finite = finite && std::isfinite(src[i]);
    }
    if (amax == 0.0f || !finite) {
      // All zero: d = 0. A NaN or infinity: d = NaN, so the dot products come out NaN as the
      // reference's would, instead of a finite value that hides the bad input.
      out.d[b] = finite ? 0.0f : std::nanf("");
      std::memset(q, 0, kBlock);
      std::fill_n(out.sub_sum.data() + size_t{b} * kSubBlocks, kSubBlocks, 0);
      continue;
    }
    const float iscale = 127.0f / amax;
    out.d[b] = amax / 127.0f;
    for (uint32_t j = 0; j < kSubBlocks; ++j) {
      int32_t sum = 0;
      for (uint32_t l = 0; l < 32; ++l) {
        const float r = std::nearbyint(src[32 * j + l] * iscale);
        const int qi = static_cast<int>(std::clamp(r, -127.0f, 127.0f));
        q[32 * j + l] = static_cast<int8_t>(qi);
        sum += qi;
      }
      out.sub_sum[size_t{b} * kSubBlocks + j] = sum;
    }
  }
}

// Unpacks a Q4_K block's 12 scale bytes into 8 six-bit scales and 8 six-bit mins, as
// q4_k_scale_min does one at a time: sub-blocks 0-3 sit in the low 6 bits of bytes 0-3
// (scales) and 4-7 (mins); sub-blocks 4-7 take their low 4 bits from bytes 8-11 and their
// high 2 bits from the top of bytes 0-3 (scales) and 4-7 (mins). Word-wise, four at a time.
inline void unpack_scales(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t w[3];
  std::memcpy(w, s, 12);
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  const uint32_t sc_lo = w[0] & kLow6;
  const uint32_t mn_lo = w[1] & kLow6;
  const uint32_t sc_hi = (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4);
  const uint32_t mn_hi = ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4);
  std::memcpy(sc, &sc_lo, 4);
  std::memcpy(sc + 4, &sc_hi, 4);
  std::memcpy(mn, &mn_lo, 4);
  std::memcpy(mn + 4, &mn_hi, 4);
}

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Returns one block's contribution given its exact integer sums: d8 * (d4 * sumi - dmin4 *
// summ). Shared by both paths so that they round identically (the library builds with
// -ffp-contract=off: no FMA fusing differs between them).
inline float combine(const uint8_t* blk, float d8, int32_t sumi, int32_t summ) {
  const float d4 = f16_to_f32(load_u16(blk));
  const float dmin4 = f16_to_f32(load_u16(blk + 2));
  const float a = d4 * static_cast<float>(sumi);
  const float b = dmin4 * static_cast<float>(summ);
  return d8 * (a - b);
}

// Returns summ = sum_j min_j * sub_sum_j for one block.
inline int32_t block_min_sum(const uint8_t mn[8], const int32_t* sub_sum) {
  int32_t s = 0;
  for (uint32_t j = 0; j < kSubBlocks; ++j) s += static_cast<int32_t>(mn[j]) * sub_sum[j];
  return s;
}

// Returns sum_j scale_j * sum_l q4 * q8 for one block: qs its 128 nibble bytes (chunk c of
// 32 bytes holds sub-block 2c in the low nibbles and 2c+1 in the high ones), q8 256 int8.
int32_t block_dot_scalar(const uint8_t* qs, const int8_t* q8, const uint8_t sc[8]) {
  int32_t sumi = 0;
  for (uint32_t c = 0; c < 4; ++c) {
    int32_t lo = 0, hi = 0;
    for (uint32_t l = 0; l < 32; ++l) {
      lo += (qs[32 * c + l] & 0x0f) * q8[64 * c + l];
      hi += (qs[32 * c + l] >> 4) * q8[64 * c + 32 + l];
    }
    sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
  }
  return sumi;
}

// Returns Q4_K row `row` (n_blocks blocks) times the quantized activation `a`.
float dot_row_scalar(const uint8_t* row, const Q8Row& a, uint32_t n_blocks) {
  float acc = 0.0f;
  for (uint32_t b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = row + size_t{b} * kQ4_KBlockBytes;
    uint8_t sc[8], mn[8];
    unpack_scales(blk + 4, sc, mn);
    const int32_t sumi =
        block_dot_scalar(blk + 4 + kQ4_KScaleBytes, a.q.data() + size_t{b} * kBlock, sc);
    const int32_t summ = block_min_sum(mn, a.sub_sum.data() + size_t{b} * kSubBlocks);
    acc += combine(blk, a.d[b], sumi, summ);
  }
  return acc;
}

// The AVX2 block dot: per 32-byte chunk, vpmaddubsw multiplies the unsigned nibbles by the
// signed q8 and adds pairs to int16 (|.| <= 2 * 15 * 127, no saturation), vpmaddwd multiplies
// by the sub-block scale and adds pairs to int32; one horizontal sum per block.
__attribute__((target("avx2,fma"))) int32_t block_dot_avx2(const uint8_t* qs, const int8_t* q8,
                                                           const uint8_t sc[8]) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  __m256i acc = _mm256_setzero_si256();
  for (uint32_t c = 0; c < 4; ++c) {
    const __m256i q4 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
    const __m256i lo = _mm256_and_si256(q4, m4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
    const __m256i y_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * c));
    const __m256i y_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * c + 32));
    const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y_lo),
                                           _mm256_set1_epi16(static_cast<int16_t>(sc[2 * c])));
    const __m256i p_hi = _mm256_madd_epi16(
        _mm256_maddubs_epi16(hi, y_hi), _mm256_set1_epi16(static_cast<int16_t>(sc[2 * c + 1])));
    acc = _mm256_add_epi32(acc, _mm256_add_epi32(p_lo, p_hi));
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2,fma"))) float dot_row_avx2(const uint8_t* row, const Q8Row& a,
                                                       uint32_t n_blocks) {
  float acc = 0.0f;
  for (uint32_t b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = row + size_t{b} * kQ4_KBlockBytes;
    uint8_t sc[8], mn[8];
    unpack_scales(blk + 4, sc, mn);
    const int32_t sumi =
        block_dot_avx2(blk + 4 + kQ4_KScaleBytes, a.q.data() + size_t{b} * kBlock, sc);
    const int32_t summ = block_min_sum(mn, a.sub_sum.data() + size_t{b} * kSubBlocks);
    acc += combine(blk, a.d[b], sumi, summ);
  }
  return acc;
}

using DotRow = float (*)(const uint8_t*, const Q8Row&, uint32_t);

Status check_q4k_args(const MoeShape& shape, std::span<const ExpertWeights> experts,
                      std::span<const float> x, std::span<const uint32_t> ids,
                      std::span<const float> weights, std::span<float> out) {
  const uint64_t embd = shape.n_embd, ff = shape.n_ff, k = shape.top_k;
  const std::string f = "moe_ffn_q4k_cpu";
  if (embd == 0 || ff == 0 || k == 0) {
    return InvalidArgument(f + ": n_embd, n_ff and top_k must be > 0");
  }
  if (embd % kBlock != 0 || ff % kBlock != 0) {
    return InvalidArgument(f + ": n_embd " + std::to_string(embd) + " and n_ff " +
                           std::to_string(ff) + " must be multiples of 256 (the Q4_K block)");
  }
  MOEPOOL_RETURN_IF_ERROR(check_moe_args(f.c_str(), shape, experts, x, ids, weights, out));
  for (uint64_t i = 0; i < ids.size(); ++i) {
    const ExpertWeights& e = experts[ids[i]];
    const std::pair<const ProjWeights*, const char*> projs[] = {
        {&e.gate, "gate"}, {&e.up, "up"}, {&e.down, "down"}};
    for (const auto& [p, what] : projs) {
      const std::string name = f + ": expert " + std::to_string(ids[i]) + " " + what;
      if (p->type != GgmlType::Q4_K) {
        return InvalidArgument(name + ": weight type " + std::string(ggml_type_name(p->type)) +
                               " is not q4_K (this path needs all three projections q4_K)");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const char* cpu_auto_path_name() { return cpu_has_avx2() ? "avx2" : "scalar"; }

Status moe_ffn_q4k_cpu(const MoeShape& shape, std::span<const ExpertWeights> experts,
                       std::span<const float> x, std::span<const uint32_t> ids,
                       std::span<const float> weights, std::span<float> out, CpuPath path) {
  MOEPOOL_RETURN_IF_ERROR(check_q4k_args(shape, experts, x, ids, weights, out));
  DotRow dot_row = dot_row_scalar;
  if (path == CpuPath::kAvx2 && !cpu_has_avx2()) {
    return FailedPrecondition("moe_ffn_q4k_cpu: the avx2 path needs AVX2 and FMA, which this "
                              "CPU lacks");
  }
  if (path == CpuPath::kAvx2 || (path == CpuPath::kAuto && cpu_has_avx2())) {
    dot_row = dot_row_avx2;
  }
  const uint32_t embd = shape.n_embd, ff = shape.n_ff, k = shape.top_k;
  const size_t n_tokens = x.size() / embd;
  const uint32_t embd_blocks = embd / kBlock, ff_blocks = ff / kBlock;
  const size_t gate_row_bytes = size_t{embd_blocks} * kQ4_KBlockBytes;
  const size_t down_row_bytes = size_t{ff_blocks} * kQ4_KBlockBytes;
  Q8Row xq, hq;
  std::vector<float> h(ff), acc(embd);
  for (size_t t = 0; t < n_tokens; ++t) {
    quantize_row_q8(x.data() + t * embd, embd, xq);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (uint32_t j = 0; j < k; ++j) {
      const ExpertWeights& e = experts[ids[t * k + j]];
      const float w = weights[t * k + j];
      const auto* gate = static_cast<const uint8_t*>(e.gate.data);
      const auto* up = static_cast<const uint8_t*>(e.up.data);
      const auto* down = static_cast<const uint8_t*>(e.down.data);
      for (uint32_t r = 0; r < ff; ++r) {
        const float g = dot_row(gate + r * gate_row_bytes, xq, embd_blocks);
        const float u = dot_row(up + r * gate_row_bytes, xq, embd_blocks);
        h[r] = g / (1.0f + std::exp(-g)) * u;
      }
      quantize_row_q8(h.data(), ff, hq);
      for (uint32_t r = 0; r < embd; ++r) {
        acc[r] += w * dot_row(down + r * down_row_bytes, hq, ff_blocks);
      }
    }
    std::copy(acc.begin(), acc.end(), out.begin() + static_cast<ptrdiff_t>(t * embd));
  }
  return Status::Ok();
}

}  // namespace moepool::kernels
